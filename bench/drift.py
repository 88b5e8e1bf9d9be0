"""Benchmark drift detection: one large report against Evidently, and alarms and detection delay
of `DriftWatch` on simulated streams.

    python bench/drift.py                                      # mlinfra alone
    python bench/drift.py --evidently-python VENV/bin/python   # and Evidently, side by side
    python bench/drift.py --days 2 --seeds 3                   # a shorter stream part

(a) 1,000,000 live rows x 20 numeric features against a 100,000-row reference, generated as
../shared/anchors/evidently_drift.py does (`default_rng(0)`, standard normal, f3 shifted by 0.5):
the full report (profile built, live rows summarised, report) timed, its tracemalloc peak, and
the process's peak RSS, each side in a child process of its own so that imports do not mix;
and `mlinfra drift` on the same data as Parquet files, a whole process (start-up included);
Evidently's DataDriftPreset (`Report.run` and `.dict()`) in the interpreter given, skipped with a
note otherwise; scipy's `ks_2samp` over the 20 columns for scale. Imports are not timed.

(b) `DriftWatch` at the default settings (interval 60 s, window 3600 s, min_samples 200,
significance 0.05) on a simulated clock, one interval's rows added at a time: alarms per day of
stable traffic (each day a fresh 1000-row reference, as the registry keeps, and two windows of
warm-up not counted), and the delay to detect a 0.5-sd shift of one feature (median over seeds).

Prints markdown tables; copy them into docs/benchmarks.md under "Drift" with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from mlinfra.monitoring import (
    DriftReport,
    DriftSettings,
    DriftWatch,
    ReferenceProfile,
)

ROOT = Path(__file__).resolve().parent.parent

# Both children generate the data the same way, and report peak RSS with `resource` (kilobytes on
# Linux, bytes on macOS) before the report (imports and data) and after it.
GENERATE = """
import resource, sys, time
import numpy as np
import pandas as pd

def peak_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024

n_cur, n_ref, n_cols = (int(value) for value in sys.argv[1:4])
rng = np.random.default_rng(0)
cols = [f"f{i}" for i in range(n_cols)]
ref = pd.DataFrame(rng.normal(size=(n_ref, n_cols)), columns=cols)
cur = pd.DataFrame(rng.normal(size=(n_cur, n_cols)), columns=cols)
cur["f3"] += 0.5
"""

OURS = (
    GENERATE
    + """
import json, tracemalloc
from scipy.stats import ks_2samp
from mlinfra.monitoring import ReferenceProfile, drift_report
from scipy.spatial.distance import jensenshannon  # imported untimed, as the report does

def full_report():
    started = time.perf_counter()
    profile = ReferenceProfile.build(ref)
    built = time.perf_counter()
    window = profile.summarise(cur)
    summarised = time.perf_counter()
    report = drift_report(profile, window)
    report.model_dump()
    done = time.perf_counter()
    return report, (built - started, summarised - built, done - summarised, done - started)

before = peak_mb()
report, seconds = full_report()
after = peak_mb()
tracemalloc.start()
full_report()
traced = tracemalloc.get_traced_memory()[1] / (1 << 20)
tracemalloc.stop()
started = time.perf_counter()
for col in cols:
    ks_2samp(ref[col].to_numpy(), cur[col].to_numpy(), method="asymp")
ks = time.perf_counter() - started
print(json.dumps({
    "build": seconds[0], "summarise": seconds[1], "report": seconds[2], "seconds": seconds[3],
    "traced_mb": traced, "rss_before_mb": before, "rss_peak_mb": after, "ks_2samp": ks,
    "drifted": report.drifted_features, "f3_wasserstein": report.feature("f3").wasserstein,
}))
"""
)

EVIDENTLY = (
    GENERATE
    + """
import json
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset

before = peak_mb()
started = time.perf_counter()
result = Report([DataDriftPreset()]).run(cur, ref).dict()
seconds = time.perf_counter() - started
after = peak_mb()
metrics = result["metrics"]
count = next(m["value"]["count"] for m in metrics if m["metric_name"].startswith("DriftedColumns"))
f3 = next(m["value"] for m in metrics if m["metric_name"].startswith("ValueDrift(column=f3,"))
print(json.dumps({
    "version": evidently.__version__, "seconds": seconds, "rss_before_mb": before,
    "rss_peak_mb": after, "drifted_count": count, "f3_wasserstein": f3,
}))
"""
)


# The same data as Parquet files, for `mlinfra drift --reference --current` as a user runs it.
WRITE_FILES = (
    GENERATE
    + """
ref.to_parquet(sys.argv[4], index=False)
cur.to_parquet(sys.argv[5], index=False)
print("{}")
"""
)

# A whole process and its peak RSS: a wrapper whose only child is the command.
WHOLE_PROCESS = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peak_mb = peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
print(json.dumps({"code": done.returncode, "seconds": seconds, "rss_peak_mb": peak_mb,
                  "stdout": done.stdout, "stderr": done.stderr[-2000:]}))
"""


def from_files(args: argparse.Namespace, env: dict[str, str]) -> dict:
    """`mlinfra drift` on Parquet files of the same data: a whole process, reading the current
    file in batches, so its peak is imports, the reference and one batch."""
    with tempfile.TemporaryDirectory(prefix="mlinfra-bench-drift-") as folder:
        ref, cur = Path(folder) / "reference.parquet", Path(folder) / "current.parquet"
        subprocess.run(
            [sys.executable, "-c", WRITE_FILES, str(args.rows), str(args.reference_rows),
             str(args.columns), str(ref), str(cur)],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
        command = [str(Path(sys.executable).parent / "mlinfra"), "drift", "--reference", str(ref),
                   "--current", str(cur), "--json"]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", WHOLE_PROCESS, *command],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
    run = json.loads(done.stdout)
    if run["code"] != 0:
        raise SystemExit(f"mlinfra drift failed (exit {run['code']}):\n{run['stderr']}")
    report = json.loads(run["stdout"])
    run["drifted"] = report["drifted_features"]
    return run


def _child(python: str, code: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    sizes = [str(args.rows), str(args.reference_rows), str(args.columns)]
    done = subprocess.run(
        [python, "-c", code, *sizes], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def large_report(args: argparse.Namespace) -> None:
    ours = _child(sys.executable, OURS, args, {**os.environ, "PYTHONPATH": str(ROOT)})
    theirs = (
        _child(args.evidently_python, EVIDENTLY, args, dict(os.environ))
        if args.evidently_python
        else None
    )
    files = from_files(args, {**os.environ, "PYTHONPATH": str(ROOT)})
    shape = f"{args.rows:,} x {args.columns} vs {args.reference_rows:,}"
    print(f"\n### (a) one report, {shape} (f3 shifted by 0.5 sd)\n")
    print("| | time | tracemalloc peak | peak RSS (before the report) | drifted |")
    print("|---|---|---|---|---|")
    print(
        f"| mlinfra `drift_report` (build {ours['build']:.2f} s, summarise "
        f"{ours['summarise']:.2f} s, report {ours['report']:.2f} s) | {ours['seconds']:.2f} s "
        f"| {ours['traced_mb']:.0f} MB | {ours['rss_peak_mb']:.0f} MB "
        f"({ours['rss_before_mb']:.0f} MB) | {', '.join(ours['drifted']) or 'none'} |"
    )
    if theirs:
        print(
            f"| Evidently {theirs['version']} DataDriftPreset | {theirs['seconds']:.2f} s | - "
            f"| {theirs['rss_peak_mb']:.0f} MB ({theirs['rss_before_mb']:.0f} MB) "
            f"| {theirs['drifted_count']:.0f} column(s) |"
        )
    print(
        f"| `mlinfra drift --reference --current` on Parquet files, the whole process "
        f"| {files['seconds']:.2f} s | - | {files['rss_peak_mb']:.0f} MB "
        f"| {', '.join(files['drifted']) or 'none'} |"
    )
    print(
        f"| scipy `ks_2samp` (asymp), {args.columns} columns, for scale | {ours['ks_2samp']:.2f} s "
        "| - | - | - |"
    )
    if theirs:
        extra_ours = ours["rss_peak_mb"] - ours["rss_before_mb"]
        extra_theirs = theirs["rss_peak_mb"] - theirs["rss_before_mb"]
        print(
            f"\nEvidently / mlinfra: time {theirs['seconds'] / ours['seconds']:.1f}x, peak RSS "
            f"{theirs['rss_peak_mb'] / ours['rss_peak_mb']:.1f}x, RSS added by the report "
            f"{extra_theirs:.0f} MB / {extra_ours:.0f} MB. f3's normed Wasserstein: mlinfra "
            f"{ours['f3_wasserstein']:.4f}, Evidently {theirs['f3_wasserstein']:.4f}."
        )
    else:
        print("\n(no --evidently-python given: Evidently skipped)")


# -- (b) streams ------------------------------------------------------------------------------

INTERVAL, WINDOW = 60.0, 3600.0


def _traffic(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """Four numeric features and one categorical (as tests/test_drift_over_time.py has them);
    `shift` moves `b` by that many standard deviations."""
    return pd.DataFrame(
        {
            "a": rng.normal(0.0, 1.0, rows),
            "b": rng.normal(5.0, 2.0, rows) + 2.0 * shift,
            "c": rng.exponential(1.0, rows),
            "d": rng.poisson(4.0, rows).astype(float),
            "e": rng.choice(["x", "y", "z"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def _watch(rng: np.random.Generator) -> DriftWatch:
    profile = ReferenceProfile.build(_traffic(rng, 1000))
    return DriftWatch(profile, DriftSettings(), interval_seconds=INTERVAL, window_seconds=WINDOW)


def _alarms(report: DriftReport) -> bool:
    return report.verdict == "drift" or any(feature.counts for feature in report.features)


def stable_day(seed: int, rate: int) -> dict:
    """One day of stable traffic after two windows of warm-up: checks that alarm, that would
    without confirmation (the same flags), and with any Holm-significant feature (no floor)."""
    rng = np.random.default_rng(seed)
    watch = _watch(rng)
    warm_up = int(2 * WINDOW / INTERVAL)
    counts = {"alarms": 0, "unconfirmed": 0, "significant": 0}
    for k in range(warm_up + int(86_400 / INTERVAL)):
        at = k * INTERVAL
        watch.add(_traffic(rng, int(INTERVAL) * rate), at)
        report = watch.check(at + INTERVAL - 1)
        if k < warm_up:
            continue
        significance = report.settings.significance
        counts["alarms"] += _alarms(report)
        counts["unconfirmed"] += any(feature.drifted for feature in report.features)
        counts["significant"] += any(
            (feature.adjusted_p_value or 1.0) < significance for feature in report.features
        )
    return counts


def detection_delay(seed: int, rate: int) -> float | None:
    """Seconds from a 0.5-sd shift of `b` (after two stable windows) to the first alarm."""
    rng = np.random.default_rng(seed)
    watch = _watch(rng)
    shift_at = 2 * WINDOW
    k = 0
    while k * INTERVAL < shift_at + 4 * WINDOW:
        at = k * INTERVAL
        watch.add(_traffic(rng, int(INTERVAL) * rate, 0.5 if at >= shift_at else 0.0), at)
        if _alarms(watch.check(at + INTERVAL - 1)) and at >= shift_at:
            return at + INTERVAL - shift_at
        k += 1
    return None


def streams(args: argparse.Namespace) -> None:
    print(f"\n### (b) DriftWatch, default settings, {args.days} simulated days per rate\n")
    print(
        "| rows/s | alarms/day (mean, max) | days with an alarm | unconfirmed checks/day "
        "| checks/day with a significant feature (no floor) | 0.5-sd shift: delay, median "
        "(min-max) | run time |"
    )
    print("|---|---|---|---|---|---|---|")
    for rate in args.rates:
        started = time.perf_counter()
        days = [stable_day(10_000 + seed, rate) for seed in range(args.days)]
        delays = [detection_delay(20_000 + seed, rate) for seed in range(args.seeds)]
        found = [delay / 60 for delay in delays if delay is not None]
        alarms = [day["alarms"] for day in days]
        missed = f", {len(delays) - len(found)} missed" if len(found) < len(delays) else ""
        delay = (
            f"{statistics.median(found):.0f} min ({min(found):.0f}-{max(found):.0f}){missed}"
            if found
            else "never"
        )
        print(
            f"| {rate} | {statistics.mean(alarms):.2f}, {max(alarms)} "
            f"| {sum(a > 0 for a in alarms)} of {len(days)} "
            f"| {statistics.mean(d['unconfirmed'] for d in days):.1f} "
            f"| {statistics.mean(d['significant'] for d in days):.1f} "
            f"| {delay} | {time.perf_counter() - started:.0f} s |"
        )
    checks = math.floor(86_400 / INTERVAL)
    print(f"\n{checks} checks a day; each day and each delay seed has its own reference.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="live rows in (a)")
    parser.add_argument("--reference-rows", type=int, default=100_000, help="reference rows in (a)")
    parser.add_argument("--columns", type=int, default=20, help="numeric features in (a)")
    parser.add_argument("--evidently-python", help="python of a virtualenv with evidently")
    parser.add_argument("--days", type=int, default=14, help="simulated stable days per rate")
    parser.add_argument("--rates", type=int, nargs="+", default=[1, 10], help="rows per second")
    parser.add_argument("--seeds", type=int, default=9, help="streams for the detection delay")
    parser.add_argument("--skip-report", action="store_true", help="skip (a)")
    parser.add_argument("--skip-streams", action="store_true", help="skip (b)")
    args = parser.parse_args()
    print(
        f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the start"
    )
    if not args.skip_report:
        large_report(args)
    if not args.skip_streams:
        streams(args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
