"""Live traffic per variant: requests/s, latency and errors between two reads of a server's
counters, as the TUI draws them and `rollout status` could print them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rollout import Snapshot

__all__ = ["VariantTraffic", "traffic_between"]


@dataclass(frozen=True)
class VariantTraffic:
    """What one (variant, version) served between two reads of the server's counters."""

    variant: str
    """stable, canary or shadow"""
    version: int
    requests: int
    requests_per_second: float
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None


def traffic_between(earlier: Snapshot, later: Snapshot, seconds: float) -> list[VariantTraffic]:
    """Per variant, what changed between two snapshots `seconds` apart (stable first); a
    version that served nothing in between (one served earlier) is left out."""
    delta = later.minus(earlier)
    rows = []
    for (variant, version), stats in sorted(delta.variants.items(), key=_stable_first):
        if stats.requests == 0:
            continue
        p50, p99 = stats.quantile(0.5), stats.quantile(0.99)
        rows.append(
            VariantTraffic(
                variant=variant,
                version=version,
                requests=stats.requests,
                requests_per_second=stats.requests / seconds if seconds > 0 else 0.0,
                error_rate=stats.error_rate,
                p50_ms=None if p50 is None else p50 * 1000,
                p99_ms=None if p99 is None else p99 * 1000,
            )
        )
    return rows


def _stable_first(item: tuple[tuple[str, int], object]) -> tuple[int, str, int]:
    (variant, version), _ = item
    return (0 if variant == "stable" else 1, variant, version)
