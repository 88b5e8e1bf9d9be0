"""`DriftWatch` on simulated streams (a clock passed in, nothing sleeps): alarms on stable traffic,
the delay to detect a shift, and what confirmation by the preceding window is for. Rows arrive
one bucket per interval; day-long and longer streams are in bench/drift.py."""

from __future__ import annotations

from collections import deque
from functools import reduce

import numpy as np
import pandas as pd
import pytest

from mlinfra.monitoring import (
    DriftReport,
    DriftSettings,
    DriftWatch,
    ReferenceProfile,
    drift_report,
)

INTERVAL = 60.0
WINDOW = 3600.0
RATE = 1  # rows per second
SETTINGS = DriftSettings()  # significance 0.05, min_samples 200
START = 1_800_000_000.0  # a Unix time on an interval boundary
HOURS = 4  # of stable traffic; bench/drift.py runs days


def traffic(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """Four numeric features and one categorical; `shift` moves `b` by that many of its
    standard deviations."""
    return pd.DataFrame(
        {
            "a": rng.normal(0.0, 1.0, rows),
            "b": rng.normal(5.0, 2.0, rows) + 2.0 * shift,
            "c": rng.exponential(1.0, rows),
            "d": rng.poisson(4.0, rows).astype(float),
            "e": rng.choice(["x", "y", "z"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def alarms(report: DriftReport) -> bool:
    """What pages someone: a feature that counts (drifted and confirmed), or a drift verdict."""
    return report.verdict == "drift" or any(feature.counts for feature in report.features)


def watch_for(rng: np.random.Generator) -> DriftWatch:
    profile = ReferenceProfile.build(traffic(rng, 1000))  # the registry keeps 1000 rows
    return DriftWatch(profile, SETTINGS, interval_seconds=INTERVAL, window_seconds=WINDOW)


def test_window_spans_and_forgetting() -> None:
    watch = watch_for(np.random.default_rng(0))
    assert (watch.intervals_per_window, watch.window_seconds) == (60, 3600.0)
    rng = np.random.default_rng(1)
    for k in range(130):
        watch.add(traffic(rng, 60), START + k * INTERVAL + 5)
    report = watch.check(START + 129 * INTERVAL + 30)
    assert report.rows == 3600 and watch.rows() == 2 * 3600  # older intervals forgotten
    assert report.window_start is not None and report.window_end is not None
    assert report.window_start.timestamp() == START + 70 * INTERVAL
    assert report.window_end.timestamp() == START + 130 * INTERVAL
    with pytest.raises(ValueError):
        DriftWatch(watch.profile, interval_seconds=60, window_seconds=30)


def test_stable_stream_rarely_alarms_and_confirmation_removes_lone_windows() -> None:
    """Four simulated hours at 1 row/s, checked every minute at the default settings. Each check
    is also run without confirmation (`drift_report` on the window alone). A confirmed alarm
    needs the current window flagged, and on a stable stream a window is flagged with a chance
    of at most the significance (Holm; an average over reference samples: one unlucky
    reference can sit off the population for good, bench/drift.py counts that), so alarming
    checks stay within that share; confirmed alarms are a subset of unconfirmed ones."""
    rng = np.random.default_rng(20)
    watch = watch_for(rng)
    profile = watch.profile
    recent: deque = deque(maxlen=watch.intervals_per_window)
    checks = confirmed = unconfirmed = 0
    for k in range(HOURS * 60):
        rows = traffic(rng, int(INTERVAL) * RATE)
        watch.add(rows, START + k * INTERVAL)
        recent.append(profile.summarise(rows))
        report = watch.check(START + (k + 1) * INTERVAL - 1)
        alone = drift_report(profile, reduce(lambda a, b: a + b, recent), SETTINGS)
        assert alone.rows == report.rows
        if report.rows < SETTINGS.min_samples:
            continue
        checks += 1
        confirmed += alarms(report)
        unconfirmed += alarms(alone)
        # the same flags, bar confirmation
        assert [f.drifted for f in report.features] == [f.drifted for f in alone.features]
    print(f"stable: {checks} checks, {confirmed} alarms, {unconfirmed} without confirmation")
    assert checks == HOURS * 60 - 3  # the first three minutes hold fewer than 200 rows
    assert confirmed <= unconfirmed
    assert confirmed <= SETTINGS.significance * checks


def test_half_a_standard_deviation_shift_is_detected_after_one_to_two_windows() -> None:
    """Two stable hours, then `b` moves by 0.5 sd. An alarm needs the preceding, disjoint window
    to drift as well, so none can come before one window has passed; once both windows hold
    only shifted rows (two windows after the shift) the shift is far beyond both the
    significance and the Wasserstein floor, so it comes by then."""
    rng = np.random.default_rng(30)
    watch = watch_for(rng)
    shift_at = START + 2 * WINDOW
    delay = None
    k = 0
    while delay is None and k * INTERVAL < 2 * WINDOW + 2 * WINDOW + INTERVAL:
        at = START + k * INTERVAL
        watch.add(traffic(rng, int(INTERVAL) * RATE, shift=0.5 if at >= shift_at else 0.0), at)
        report = watch.check(at + INTERVAL - 1)
        if alarms(report):
            if at < shift_at:
                pytest.fail(f"alarm on stable traffic at {at - START:.0f} s")
            delay = at + INTERVAL - shift_at
            assert [f.feature for f in report.features if f.counts] == ["b"]
            assert report.feature("b").confirmed is True
        k += 1
    assert delay is not None, "the shift was never detected"
    assert WINDOW < delay <= 2 * WINDOW
    print(f"0.5 sd shift at 1 row/s detected after {delay / 60:.0f} min")


def test_a_burst_in_one_window_alone_does_not_count() -> None:
    """One hour of shifted traffic between stable hours: while the preceding window is stable,
    the shift is flagged in the current window but does not count, and says why."""
    rng = np.random.default_rng(40)
    watch = watch_for(rng)
    for k in range(60):  # one stable hour
        watch.add(traffic(rng, 60), START + k * INTERVAL)
    for k in range(60, 120):  # one shifted hour
        watch.add(traffic(rng, 60, shift=3.0), START + k * INTERVAL)
    report = watch.check(START + 120 * INTERVAL - 1)
    b = report.feature("b")
    assert b.drifted and b.confirmed is False and not b.counts and not alarms(report)
    assert b.note == "drifted in this window only (the preceding window did not drift)"


def test_a_shift_at_start_up_waits_for_a_preceding_window() -> None:
    """A monitor started on traffic that has already drifted has no preceding window for the
    first hour: it waits rather than alarm on one window."""
    rng = np.random.default_rng(50)
    watch = watch_for(rng)
    for k in range(60):
        watch.add(traffic(rng, 60, shift=3.0), START + k * INTERVAL)
    report = watch.check(START + 60 * INTERVAL - 1)
    b = report.feature("b")
    assert b.drifted and b.confirmed is False and not alarms(report)
    assert b.note == "drifted in this window only (the preceding window had not enough data)"
    for k in range(60, 120):
        watch.add(traffic(rng, 60, shift=3.0), START + k * INTERVAL)
    assert alarms(watch.check(START + 120 * INTERVAL - 1))
