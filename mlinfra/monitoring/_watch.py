"""Drift over time: live traffic folded into interval summaries, and every check the window
ending now against the reference, confirmed by the window before it.

A monitor that tests a sliding window every minute tests nearly the same rows sixty times an
hour: if each check could alarm on its own, a stable stream would page someone sooner or later
("peeking"). A feature counts as drifting only when it drifts in the current window and in the
preceding, disjoint one; with the effect-size floor of the report, the measured rate on stable
traffic is in docs/benchmarks.md, next to the delay to detect a shift.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import reduce
from typing import TYPE_CHECKING

from ._profile import ReferenceProfile, WindowSummary
from ._report import DriftReport, DriftSettings, drift_report

if TYPE_CHECKING:
    import pandas

__all__ = ["DriftWatch"]


class DriftWatch:
    """Interval summaries of the last two windows of one served version's traffic."""

    def __init__(
        self,
        profile: ReferenceProfile,
        settings: DriftSettings | None = None,
        *,
        interval_seconds: float,
        window_seconds: float,
    ) -> None:
        if interval_seconds <= 0 or window_seconds < interval_seconds:
            raise ValueError("the window must hold at least one positive interval")
        self.profile = profile
        self.settings = settings or DriftSettings()
        self.interval_seconds = interval_seconds
        self.intervals_per_window = math.ceil(window_seconds / interval_seconds - 1e-9)
        self._buckets: dict[int, WindowSummary] = {}

    @property
    def window_seconds(self) -> float:
        return self.intervals_per_window * self.interval_seconds

    def add(self, rows: pandas.DataFrame, at: datetime | float) -> None:
        """Rows that arrived at `at` (a datetime, or seconds since the epoch)."""
        if len(rows) == 0:
            return
        bucket = self._bucket(at)
        summary = self.profile.summarise(rows, start=bucket * self.interval_seconds)
        before = self._buckets.get(bucket)
        self._buckets[bucket] = summary if before is None else before + summary

    def check(self, now: datetime | float) -> DriftReport:
        """The window ending now (its last interval is the one holding `now`), confirmed
        by the one before; intervals older than both are forgotten."""
        last = self._bucket(now)
        span = self.intervals_per_window
        for bucket in [b for b in self._buckets if b <= last - 2 * span]:
            del self._buckets[bucket]
        preceding = drift_report(
            self.profile, self._sum(last - 2 * span + 1, last - span), self.settings
        )
        start = self._at(last - span + 1)
        return drift_report(
            self.profile,
            self._sum(last - span + 1, last),
            self.settings,
            confirm_with=preceding,
            window_start=start,
            window_end=self._at(last + 1),
        )

    def rows(self) -> int:
        """Rows held (both windows)."""
        return sum(summary.rows for summary in self._buckets.values())

    def _sum(self, first: int, last: int) -> WindowSummary:
        held = [summary for bucket, summary in self._buckets.items() if first <= bucket <= last]
        return reduce(lambda a, b: a + b, held, self.profile.empty())

    def _bucket(self, at: datetime | float) -> int:
        seconds = at.timestamp() if isinstance(at, datetime) else float(at)
        return math.floor(seconds / self.interval_seconds)

    def _at(self, bucket: int) -> datetime:
        return datetime.fromtimestamp(bucket * self.interval_seconds, UTC)
