"""Per-variant numbers read from the server's `/metrics`, as Flagger reads them from Prometheus.

Counters only grow, so the traffic of one analysis step is the difference of two scrapes. A
counter that went down means the server restarted in between; then the later scrape alone is
the window, as Prometheus' `increase()` treats a reset.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DeploymentError

__all__ = ["Snapshot", "VariantStats", "psi", "scrape"]

_PREFIX = "mlinfra_"
_FEEDBACK = {
    "mlinfra_feedback_rows_total": "rows",
    "mlinfra_feedback_correct_total": "correct",
    "mlinfra_feedback_abs_error_total": "abs_error",
}


@dataclass
class VariantStats:
    """What one (variant, version) did: requests, model failures, latency buckets, predictions."""

    requests: int = 0
    errors: int = 0
    latency: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    predictions: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, float] = field(default_factory=dict)  # rows, correct, abs_error

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def labelled(self) -> int:
        return int(self.feedback.get("rows", 0))

    def accuracy(self) -> float | None:
        """Share of fed-back classifications that were right (None: no labels, or a regression)."""
        if not self.labelled or "correct" not in self.feedback:
            return None
        return self.feedback["correct"] / self.labelled

    def mean_abs_error(self) -> float | None:
        if not self.labelled or "abs_error" not in self.feedback:
            return None
        return self.feedback["abs_error"] / self.labelled

    def p99(self) -> float | None:
        """The 99th percentile latency in seconds, interpolated within its bucket."""
        return self.quantile(0.99)

    def quantile(self, q: float) -> float | None:
        """The `q` quantile of latency in seconds (None: no requests), interpolated."""
        return _quantile(q, self.latency)

    def minus(self, earlier: VariantStats) -> VariantStats:
        if self.requests < earlier.requests:
            return self  # the server restarted between the two scrapes
        return VariantStats(
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            latency=_subtract(self.latency, earlier.latency),
            predictions=_subtract(self.predictions, earlier.predictions),
            feedback=_subtract(self.feedback, earlier.feedback),
        )

    def summary(self, tail_quantile: float = 0.99) -> dict[str, float | int | None]:
        """The numbers a step shows, with latency at p99 and at the quantile the analysis judged."""
        p99, tail = self.p99(), self.quantile(tail_quantile)
        accuracy, mae = self.accuracy(), self.mean_abs_error()
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p99_ms": _milliseconds(p99),
            "tail_quantile": tail_quantile,
            "tail_ms": _milliseconds(tail),
            "labelled": self.labelled,
            "accuracy": None if accuracy is None else round(accuracy, 6),
            "mean_abs_error": None if mae is None else round(mae, 6),
        }


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _subtract(later: dict, earlier: dict) -> dict:
    return {key: value - earlier.get(key, 0) for key, value in later.items()}


def _quantile(q: float, buckets: dict[float, float]) -> float | None:
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # as Prometheus does: the highest finite bound
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Snapshot:
    """Every variant's totals at one moment, keyed by (variant, version)."""

    variants: dict[tuple[str, int], VariantStats]

    def get(self, variant: str, version: int) -> VariantStats:
        return self.variants.get((variant, version), VariantStats())

    def minus(self, earlier: Snapshot) -> Snapshot:
        return Snapshot(
            {key: stats.minus(earlier.get(*key)) for key, stats in self.variants.items()}
        )

    def to_json(self) -> dict[str, Any]:
        """As JSON-friendly data (`"canary/3": {...}`), for a driver to pick up after a restart."""
        return {
            f"{variant}/{version}": {**asdict(stats), "latency": _keyed(stats.latency)}
            for (variant, version), stats in self.variants.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        variants = {}
        for key, stats in data.items():
            variant, version = key.rsplit("/", 1)
            latency = {float(bound): count for bound, count in stats["latency"].items()}
            variants[(variant, int(version))] = VariantStats(**{**stats, "latency": latency})
        return cls(variants)


def _keyed(buckets: dict[float, float]) -> dict[str, float]:
    return {repr(bound): count for bound, count in buckets.items()}  # "inf" reads back as inf


def scrape(url: str, *, model: str, token: str | None = None, timeout: float = 5.0) -> Snapshot:
    """Read the server's counters for `model`, summed over all its workers."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeploymentError(f"cannot read metrics from the server at {url}: {exc}") from exc
    if response.status_code != 200:
        raise DeploymentError(
            f"the server at {url} answered {response.status_code} for /metrics: "
            f"{response.text[:200]}"
        )
    variants: dict[tuple[str, int], VariantStats] = defaultdict(VariantStats)
    for family in text_string_to_metric_families(response.text):
        if not family.name.startswith(_PREFIX):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or not labels.get("version", "").isdigit():
                continue
            if "variant" not in labels:  # per model, not per variant (batch sizes)
                continue
            stats = variants[(labels["variant"], int(labels["version"]))]
            _add_sample(stats, sample.name, labels, sample.value)
    return Snapshot(dict(variants))


def _add_sample(stats: VariantStats, name: str, labels: dict[str, str], value: float) -> None:
    if name == "mlinfra_requests_total":
        stats.requests += int(value)
    elif name == "mlinfra_request_errors_total":
        stats.errors += int(value)
    elif name == "mlinfra_predict_latency_seconds_bucket":
        bound = float(labels["le"])
        stats.latency[bound] = stats.latency.get(bound, 0) + value
    elif name == "mlinfra_predictions_total":
        stats.predictions[labels["value"]] = stats.predictions.get(labels["value"], 0) + value
    elif name in _FEEDBACK:
        key = _FEEDBACK[name]
        stats.feedback[key] = stats.feedback.get(key, 0) + value


def psi(expected: dict[str, float], actual: dict[str, float]) -> float | None:
    """Population stability index of `actual` against `expected` (0: same; over 0.25: shifted)."""
    total_e, total_a = sum(expected.values()), sum(actual.values())
    if total_e <= 0 or total_a <= 0:
        return None
    keys = expected.keys() | actual.keys()
    # Half a count in empty bins keeps the log finite without favouring either side.
    e_sum = total_e + 0.5 * len(keys)
    a_sum = total_a + 0.5 * len(keys)
    value = 0.0
    for key in keys:
        e = (expected.get(key, 0) + 0.5) / e_sum
        a = (actual.get(key, 0) + 0.5) / a_sum
        value += (a - e) * math.log(a / e)
    return value
