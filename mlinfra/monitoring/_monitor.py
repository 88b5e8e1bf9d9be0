"""The drift monitor of one env: every interval, the served version's live traffic (from the
prediction log) against the reference sample stored with it; alerts raised and delivered, and
the env's policy applied.

`Monitor.check` is one pass; `run_monitor` repeats it for `python -m mlinfra.monitoring`,
writing a heartbeat after each, so that the supervisor and `mlinfra status` can tell a monitor
that watches from one that hangs. What must survive a restart (cool-downs, alerts not yet
delivered) is on disk; the windows are rebuilt from the log when it starts.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._code_paths import put_first_on_path
from .._durations import format_duration
from .._fs import atomic_write_text, read_record
from .._process import ProcessIdentity
from ._alerts import AlertCandidate, AlertStore, Window
from ._log_files import PredictionLog, feature_column
from ._spec import MonitoringDirectory, MonitorSpec, MonitorStatus

if TYPE_CHECKING:
    import pyarrow as pa

    from ._report import DriftReport
    from ._watch import DriftWatch

__all__ = ["FRESH_SECONDS", "Monitor", "observe_now", "read_report", "run_monitor"]

log = logging.getLogger("mlinfra.monitoring")

FRESH_SECONDS = 24 * 3600.0
"""A version stable for less than this (or two windows, if longer) is "freshly deployed": the
rollback policy acts on its prediction or performance drift."""
PERFORMANCE_TOLERANCE = 0.02
"""Live accuracy may fall this much below the test accuracy before it is tested as a drop."""
ERROR_RATIO_LIMIT = 1.25
"""Live RMSE may be this many times the test RMSE before a regression's performance alerts."""
_PREDICTION = "prediction"


@dataclass
class _Watched:
    """The served version the monitor watches, with its reference and its live windows."""

    model: str
    version: int
    task: str
    stable_since: float
    watch: DriftWatch
    columns: dict[str, str]
    """Log column to feature name, for the features and the prediction."""
    test_metrics: dict[str, Any]
    folded: dict[str, float] = field(default_factory=dict)
    """Segments already in the windows (path to the time of their last row)."""
    labelled: dict[str, pa.Table] = field(default_factory=dict)
    """Request id and prediction of the segments in the window, for labels to join."""

    @property
    def name(self) -> str:
        return f"{self.model} v{self.version}"


class Monitor:
    """One env's monitor; `check()` is one pass."""

    def __init__(
        self, spec: MonitorSpec, *, clock: Callable[[], float] = time.time, status: MonitorStatus
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.status = status
        self.directory = MonitoringDirectory(Path(spec.directory))
        self.log = PredictionLog(self.directory.log)
        self.alerts = AlertStore(self.directory.alerts)
        self._watched: _Watched | None = None
        self._lost_seen: int | None = None
        self._cycle: subprocess.Popen[bytes] | None = None

    # -- one pass ----------------------------------------------------------------------------

    def observe(self, now: float) -> dict[str, Any]:
        """The drift report (and performance) of the window ending now, with nothing raised,
        delivered or acted on: what `mlinfra drift --env E` shows."""
        document: dict[str, Any] = {
            "env": self.spec.env,
            "checked_at": _iso(now),
            "window": format_duration(self.spec.window_seconds),
            "policy": self.spec.policy,
        }
        watched = self._refresh_watched(now)
        if watched is None:
            document.update(watching=None, report=None, performance=None)
            document["notes"] = [f"nothing is deployed in env {self.spec.env!r}"]
            return document
        self._fold(watched, now)
        report = watched.watch.check(datetime.fromtimestamp(now, UTC))
        document["watching"] = {"model": watched.model, "version": watched.version}
        document["report"] = report
        document["performance"] = self._performance(watched, now)
        counts = self.log.counts()
        document["log"] = {
            "written": counts.predictions.written,
            "dropped": counts.predictions.dropped,
            "failed": counts.predictions.failed,
        }
        return document

    def check(self) -> dict[str, Any]:
        """Observe, raise and deliver alerts, apply the policy; the document, as written to
        report.json."""
        from ._webhook import deliver_due

        now = self.clock()
        document = self.observe(now)
        report: DriftReport | None = document["report"]
        candidates: list[AlertCandidate] = []
        document["actions"] = []
        if report is not None and self._watched is not None:
            performance = document["performance"]
            candidates = self._drift_alerts(report, performance, now)
            document["actions"] = self._apply_policy(self._watched, report, performance, now)
            document["report"] = report.model_dump(mode="json")
        lost = self._lost_rows(now)
        if lost is not None:
            candidates.append(lost)
        document["alerts"] = [self._raise(candidate, now) for candidate in candidates]
        delivered = deliver_due(self.alerts, self.spec.webhook, now=now)
        document["delivery"] = {
            "delivered": delivered.delivered,
            "failed": delivered.failed,
            "pending": delivered.pending,
        }
        atomic_write_text(self.directory.report, _json(document))
        return document

    def _raise(self, candidate: AlertCandidate, now: float) -> dict[str, Any]:
        raised = self.alerts.raise_alert(
            candidate, now=now, cooldown_seconds=self.spec.cooldown_seconds
        )
        if raised.new:
            log.warning("alert %s: %s", raised.alert.id, candidate.message)
        return {"id": raised.alert.id, "new": raised.new, "kind": candidate.kind}

    # -- what is watched -----------------------------------------------------------------------

    def _refresh_watched(self, now: float) -> _Watched | None:
        """The stable version served now; a new one starts new windows, filled from the log."""
        from ..serving import deployment_dir, read_deployment

        table = read_deployment(deployment_dir(self.spec.registry, self.spec.env))
        if table is None:
            self._watched = None
            self.status.watching = None
            return None
        current = self._watched
        if current is not None and (current.model, current.version) == (table.model, table.stable):
            return current
        self._watched = self._start_watching(table.model, table.stable, table.updated_at)
        self.status.watching = self._watched.name
        log.info("watching %s in env %s", self._watched.name, self.spec.env)
        return self._watched

    def _start_watching(self, model: str, version: int, since: datetime) -> _Watched:
        from ._report import DriftSettings
        from ._watch import DriftWatch

        profile, columns, task, metrics = _reference(Path(self.spec.registry), model, version)
        settings = DriftSettings(
            significance=self.spec.significance, min_samples=self.spec.min_samples
        )
        watch = DriftWatch(
            profile,
            settings,
            interval_seconds=self.spec.interval_seconds,
            window_seconds=self.spec.window_seconds,
        )
        return _Watched(
            model=model,
            version=version,
            task=task,
            stable_since=since.timestamp(),
            watch=watch,
            columns=columns,
            test_metrics=metrics,
        )

    def _fold(self, watched: _Watched, now: float) -> None:
        """Add the rows of closed segments not folded yet (of the watched version) to the
        windows; segments older than two windows are forgotten."""
        import pyarrow.compute as pc

        horizon = now - 2 * self.spec.window_seconds - self.spec.interval_seconds
        for path, last_at in list(watched.folded.items()):
            if last_at < horizon:
                del watched.folded[path]
                watched.labelled.pop(path, None)
        wanted = ["at", "version", "request_id", *watched.columns]
        for segment in self.log.segments(since=horizon):
            key = str(segment.path)
            if key in watched.folded:
                continue
            watched.folded[key] = segment.last_at
            try:
                table = self.log.read(segment, wanted)
            except FileNotFoundError:
                continue  # retention removed it meanwhile
            except Exception as exc:  # a damaged file must not stop the monitor
                log.warning("skipping %s: %s", segment.path.name, exc)
                continue
            if "version" not in table.column_names or table.num_rows == 0:
                continue
            table = table.filter(pc.equal(table.column("version"), watched.version))
            if table.num_rows == 0:
                continue
            if _PREDICTION in table.column_names:
                watched.labelled[key] = table.select(["request_id", _PREDICTION])
            self._add_rows(watched, table)

    def _add_rows(self, watched: _Watched, table: pa.Table) -> None:
        """Rows into the buckets of their interval (a segment can span two)."""
        import pandas as pd

        frame = table.to_pandas()
        seconds = (frame["at"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        bucket = (seconds // self.spec.interval_seconds).astype("int64")
        features = frame.rename(columns=watched.columns)
        for start, rows in features.groupby(bucket.to_numpy(), sort=True):
            at = datetime.fromtimestamp(float(start) * self.spec.interval_seconds, UTC)
            watched.watch.add(rows, at)

    # -- performance, where labels came back ----------------------------------------------

    def _performance(self, watched: _Watched, now: float) -> dict[str, Any] | None:
        """Live accuracy (or RMSE) on the labelled predictions of the window, against the test
        split's; None when no labels came back."""
        import pyarrow as pa

        if not watched.labelled:
            return None
        labels = self.log.labels(since=now - self.spec.window_seconds)
        if labels.num_rows == 0:
            return None
        predictions = pa.concat_tables(watched.labelled.values(), promote_options="permissive")
        joined = self.log.labelled(predictions, labels)
        rows = joined.num_rows
        result: dict[str, Any] = {"rows": rows, "min_samples": self.spec.min_samples}
        if "correct" in joined.column_names:
            right = int(sum(1 for value in joined.column("correct").to_pylist() if value))
            expected = watched.test_metrics.get("accuracy")
            result.update(statistic="accuracy", value=right / rows if rows else None)
            result["reference"] = expected
            if isinstance(expected, int | float):
                result["limit"] = float(expected) - PERFORMANCE_TOLERANCE
            result["drifted"] = _accuracy_dropped(right, rows, expected, self.spec)
        else:
            errors = joined.column("error").to_numpy(zero_copy_only=False)
            rmse = float(math.sqrt(float((errors**2).mean()))) if rows else None
            expected = watched.test_metrics.get("rmse")
            result.update(statistic="rmse", value=rmse, reference=expected)
            if isinstance(expected, int | float):
                result["limit"] = ERROR_RATIO_LIMIT * float(expected)
            result["drifted"] = bool(
                rows >= self.spec.min_samples
                and rmse is not None
                and isinstance(expected, int | float)
                and rmse > ERROR_RATIO_LIMIT * expected
            )
        if rows < self.spec.min_samples:
            result["verdict"] = "not enough data"
        else:
            result["verdict"] = "drift" if result["drifted"] else "no drift"
        return result

    # -- alerts ----------------------------------------------------------------------------

    def _window(self, report: DriftReport | None, now: float) -> Window:
        start = now - self.spec.window_seconds
        if report is not None and report.window_start is not None:
            start = report.window_start.timestamp()
        return Window(label=format_duration(self.spec.window_seconds), start=start, end=now)

    def _drift_alerts(
        self, report: DriftReport, performance: dict[str, Any] | None, now: float
    ) -> list[AlertCandidate]:
        window = self._window(report, now)
        env = self.spec.env
        found = []
        for feature in report.features:
            if not (feature.drifted and feature.confirmed is not False):
                continue
            p_value = feature.adjusted_p_value if feature.adjusted_p_value is not None else 0.0
            major = feature.psi is not None and feature.psi >= report.settings.psi_major
            statistic, value, threshold = (
                f"{feature.test}_p_adjusted",
                p_value,
                self.spec.significance,
            )
            if feature.missing_rose and feature.missing_share is not None:
                statistic, value = "missing_share", feature.missing_share
                threshold = (feature.reference_missing_share or 0.0) + (
                    report.settings.min_missing_increase
                )
            found.append(
                AlertCandidate(
                    env=env,
                    severity="critical" if major or feature.missing_rose else "warning",
                    kind="feature_drift",
                    feature=feature.feature,
                    statistic=statistic,
                    value=value,
                    threshold=threshold,
                    window=window,
                    message=f"feature {feature.feature} drifted: {_describe(feature)}",
                )
            )
        prediction = report.prediction
        if prediction is not None and prediction.drifted and prediction.confirmed is not False:
            found.append(
                AlertCandidate(
                    env=env,
                    severity="critical",
                    kind="prediction_drift",
                    feature=None,
                    statistic=f"{prediction.test}_p",
                    value=prediction.p_value or 0.0,
                    threshold=self.spec.significance,
                    window=window,
                    message=f"predictions drifted: {_describe(prediction)}",
                )
            )
        if report.tested and report.weighted_share >= report.settings.drift_share:
            found.append(
                AlertCandidate(
                    env=env,
                    severity="critical",
                    kind="dataset_drift",
                    feature=None,
                    statistic="weighted_share_drifted",
                    value=report.weighted_share,
                    threshold=report.settings.drift_share,
                    window=window,
                    message=(
                        f"dataset drift: {len(report.drifted_features)} of "
                        f"{len(report.features)} features drifted "
                        f"({', '.join(report.drifted_features)}), weighted by importance "
                        f"{report.weighted_share:.0%}"
                    ),
                )
            )
        if performance is not None and performance["drifted"]:
            statistic = performance["statistic"]
            found.append(
                AlertCandidate(
                    env=env,
                    severity="critical",
                    kind="performance",
                    feature=None,
                    statistic=statistic,
                    value=float(performance["value"]),
                    threshold=float(performance["limit"]),
                    window=window,
                    message=(
                        f"{statistic} on {performance['rows']} labelled predictions is "
                        f"{performance['value']:.4g}, against {performance['reference']:.4g} "
                        "on the test split"
                    ),
                )
            )
        return found

    def _lost_rows(self, now: float) -> AlertCandidate | None:
        """An alert when the log lost rows since the last check (queue full, disk full)."""
        lost = self.log.counts().predictions.lost
        before, self._lost_seen = self._lost_seen, lost
        if before is None or lost <= before:
            return None
        return AlertCandidate(
            env=self.spec.env,
            severity="warning",
            kind="log_dropped",
            feature=None,
            statistic="lost_rows",
            value=float(lost - before),
            threshold=0.0,
            window=self._window(None, now),
            message=(
                f"the prediction log lost {lost - before} rows since the last check "
                "(queue full or disk not writable); drift statistics see fewer rows"
            ),
        )

    # -- policies --------------------------------------------------------------------------

    def _apply_policy(
        self,
        watched: _Watched,
        report: DriftReport,
        performance: dict[str, Any] | None,
        now: float,
    ) -> list[str]:
        policy = self.spec.policy
        if policy == "retrain":
            return self._retrain(report, now)
        if policy == "rollback":
            return self._roll_back(watched, report, performance, now)
        return []

    def _retrain(self, report: DriftReport, now: float) -> list[str]:
        """Run `mlinfra cycle` when drift is confirmed, at most once per retrain cool-down."""
        running = self._cycle
        if running is not None:
            code = running.poll()
            if code is None:
                return ["a retraining cycle is running"]
            self._cycle = None
            outcome = "succeeded" if code == 0 else f"failed (exit {code}, see cycle.log)"
            log.info("retraining cycle %s", outcome)
        if report.verdict != "drift":
            return []
        last = self.status.last_retrain_at
        if last is not None and now - last < self.spec.retrain_cooldown_seconds:
            wait = format_duration(self.spec.retrain_cooldown_seconds - (now - last))
            return [f"drift confirmed; retraining waits for its cool-down ({wait} left)"]
        if self.spec.project_dir is None:
            return ["drift confirmed; cannot retrain: the monitor was not told the project"]
        self._cycle = _start_cycle(self.spec, self.directory.root / "cycle.log")
        self.status.last_retrain_at = now
        return [f"drift confirmed; retraining cycle started (pid {self._cycle.pid})"]

    def _roll_back(
        self,
        watched: _Watched,
        report: DriftReport,
        performance: dict[str, Any] | None,
        now: float,
    ) -> list[str]:
        """Roll a freshly deployed version back when its predictions or its performance drift."""
        from ..errors import MlinfraError
        from ..rollout import Target, rollback

        prediction = report.prediction
        why = None
        if prediction is not None and prediction.drifted and prediction.confirmed is not False:
            why = "its predictions drifted"
        elif performance is not None and performance["drifted"]:
            why = f"its {performance['statistic']} dropped to {performance['value']:.4g}"
        if why is None:
            return []
        fresh_for = max(FRESH_SECONDS, 2 * self.spec.window_seconds)
        if now - watched.stable_since > fresh_for:
            return [f"{watched.name} {why}, but it is not freshly deployed: alert only"]
        target = Target(
            registry=Path(self.spec.registry),
            env=self.spec.env,
            url=self.spec.url,
            token=self.spec.token,
        )
        restored_by = _how_it_became_stable(target, watched.version)
        if restored_by in ("rollback", "abort"):
            # the version a rollback went back to is the known-good one: rolling it back too
            # would swap two versions for as long as the inputs drift
            return [f"{watched.name} {why}, but a {restored_by} restored it: alert only"]
        reason = f"drift monitor: {watched.name} {why}"
        try:
            table = rollback(target, reason=reason, actor="mlinfra-monitor")
        except MlinfraError as exc:
            return [f"{watched.name} {why}; rollback failed: {exc}"]
        self.status.last_rollback_at = now
        return [f"{watched.name} {why}; rolled back to v{table.stable}"]


def _how_it_became_stable(target: Any, version: int) -> str | None:
    """The action (deploy, promote, rollback, abort) of the latest event that left `version`
    serving as stable, from the env's deployment history."""
    for event in reversed(target.store.history()):
        if event.get("to") == version and event.get("action") in _STABLE_ACTIONS:
            return str(event["action"])
    return None


_STABLE_ACTIONS = ("deploy", "promote", "rollback", "abort")


# -- the reference of a version --------------------------------------------------------------


def _reference(
    registry_root: Path, model: str, version: int
) -> tuple[Any, dict[str, str], str, dict[str, Any]]:
    """The profile of a version's reference sample (with its own predictions on it), the log
    column of each feature, the task and the test metrics."""
    from ..data import DatasetSchema
    from ..registry import Registry
    from ..serving._loading import load_served_model
    from ._log_files import label_text
    from ._profile import ReferenceProfile

    with Registry.open(registry_root) as registry:
        record = registry.get(model, version)
        schema = DatasetSchema.model_validate(registry.schema(record) or {"rows": 0, "columns": []})
        importances = registry.importances(record) or {}
    served = load_served_model(registry_root, model, version)
    reference = served.reference
    if reference is None or len(reference) == 0:
        from ..errors import ValidationError

        raise ValidationError(
            f"{model} v{version} has no reference sample: drift cannot be measured for it; "
            "train it again with this mlinfra"
        )
    kinds = {column.name: column.kind for column in schema.columns}
    features = [name for name in schema.names if kinds[name] != "datetime"]
    frame = reference[features].copy()
    predicted = served.estimator.predict(reference[schema.names])
    prediction = _PREDICTION if _PREDICTION not in features else "__prediction__"
    if record.task == "classification":
        frame[prediction] = [label_text(value) for value in predicted]
    else:
        frame[prediction] = predicted.astype(float)
    categorical = [name for name in features if kinds[name] in ("category", "string", "bool")]
    if record.task == "classification":
        categorical.append(prediction)
    weights = {
        entry["feature"]: max(float(entry.get("mean", 0.0)), 0.0)
        for entry in importances.get("features", [])
    }
    profile = ReferenceProfile.build(
        frame, categorical=categorical, importances=weights or None, prediction=prediction
    )
    columns = {feature_column(name): name for name in features}
    columns[_PREDICTION] = prediction
    return profile, columns, record.task, dict(record.metrics)


def _accuracy_dropped(right: int, rows: int, expected: Any, spec: MonitorSpec) -> bool:
    """Whether live accuracy is significantly below the test accuracy less the tolerance
    (one-sided binomial test at the env's significance)."""
    if rows < spec.min_samples or not isinstance(expected, int | float):
        return False
    from scipy.stats import binomtest

    floor = max(float(expected) - PERFORMANCE_TOLERANCE, 1e-9)
    if right / rows >= floor:
        return False
    return bool(binomtest(right, rows, floor, alternative="less").pvalue < spec.significance)


def _describe(feature: Any) -> str:
    parts = []
    if feature.statistic is not None:
        parts.append(f"{feature.test} {feature.statistic:.3f}")
    if feature.adjusted_p_value is not None:
        parts.append(f"p {feature.adjusted_p_value:.2g} (adjusted)")
    elif feature.p_value is not None:
        parts.append(f"p {feature.p_value:.2g}")
    if feature.psi is not None:
        parts.append(f"PSI {feature.psi:.2f}")
    if feature.jensen_shannon is not None:
        parts.append(f"JS {feature.jensen_shannon:.3f}")
    if feature.missing_rose:
        parts.append(
            f"nulls {feature.reference_missing_share or 0.0:.1%} -> {feature.missing_share:.1%}"
        )
    return ", ".join(parts) or "see the drift report"


def _start_cycle(spec: MonitorSpec, log_file: Path) -> subprocess.Popen[bytes]:
    """`mlinfra cycle --env E --yes` in the project, its output appended to cycle.log."""
    command = [sys.executable, "-m", "mlinfra", "cycle", "--env", spec.env, "--yes"]
    log.info("drift confirmed: running %s in %s", " ".join(command[2:]), spec.project_dir)
    with open(log_file, "ab") as output:
        output.write(f"\n--- {_iso(time.time())} {' '.join(command[2:])}\n".encode())
        output.flush()
        return subprocess.Popen(
            command,
            cwd=spec.project_dir,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )


# -- the process -------------------------------------------------------------------------------


def observe_now(spec: MonitorSpec) -> dict[str, Any]:
    """The env's drift report computed now from its prediction log, as its monitor would,
    without raising alerts or acting (for `mlinfra drift --env E`)."""
    put_first_on_path(spec.code_paths)  # the served version may hold the project's own classes
    return Monitor(spec, status=_status(spec)).observe(time.time())


def _status(spec: MonitorSpec) -> MonitorStatus:
    """A new status for this process, keeping what a previous monitor remembered."""
    now = time.time()
    previous = read_record(MonitoringDirectory(Path(spec.directory)).status, MonitorStatus)
    return MonitorStatus(
        process=ProcessIdentity.current(),
        started_at=now,
        heartbeat_at=now,
        last_retrain_at=previous.last_retrain_at if previous else None,
        last_rollback_at=previous.last_rollback_at if previous else None,
    )


def run_monitor(
    spec: MonitorSpec, *, stop: threading.Event | None = None, once: bool = False
) -> int:
    """Check every interval until SIGTERM (or `stop`); a failed check is logged and retried
    at the next interval, never the end of the monitor. With `once`, one check: the exit
    code says whether it failed (1), for a scheduler that runs it again."""
    put_first_on_path(spec.code_paths)  # the served versions may hold the project's own classes
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    directory = MonitoringDirectory(Path(spec.directory))
    directory.root.mkdir(parents=True, exist_ok=True)
    status = _status(spec)
    _beat(directory, status)  # first: the provider waits for it
    monitor = Monitor(spec, status=status)
    while not stop.is_set():
        started = time.monotonic()
        try:
            monitor.check()
            status.last_error = None
        except Exception as exc:
            status.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("check failed; next at the next interval")
        status.checks += 1
        _beat(directory, status)
        if once:
            return 1 if status.last_error else 0
        stop.wait(max(0.0, spec.interval_seconds - (time.monotonic() - started)))
    return 0


def _beat(directory: MonitoringDirectory, status: MonitorStatus) -> None:
    status.heartbeat_at = time.time()
    atomic_write_text(directory.status, status.model_dump_json(indent=2))


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _json(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document, indent=2, allow_nan=False, default=str)


def read_report(directory: Path) -> dict[str, Any] | None:
    """The monitor's last report.json, or None before its first check."""
    import json

    path = MonitoringDirectory(directory).report
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
