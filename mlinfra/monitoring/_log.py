"""The prediction log's writer: what each server worker predicted (features, prediction, model
version, variant, request id, time), written off the request path as Parquet segments
(`_log_files` says where and how, and reads them), and the labels fed back to /feedback.

`PredictionLogWriter.record` only queues what the request already decoded, in a queue bounded by
rows: when it is full, rows are dropped and counted, never waited for. A thread of the worker
turns the queue into Arrow batches and writes a segment once its first row is `segment_seconds`
old or it holds `segment_bytes`. A clean stop writes the open segments; a worker killed without
one loses them (at most `segment_seconds` of its rows). Writes that fail (disk full, unwritable
directory) count their rows as failed, warn once, and are tried again with the next segment.
Retention deletes the oldest segments beyond `max_bytes` (the whole log, every worker) and those
older than `retention_seconds`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .._fs import atomic_write_text
from ..errors import ConfigError
from ._ids import row_ids
from ._log_files import (
    KINDS,
    LABELS_SCHEMA,
    STATUS_DIR,
    UTC_MICROS,
    LogKind,
    PredictionLog,
    RowCounts,
    Segment,
    WorkerLogStatus,
    feature_column,
    label_text,
    text_array,
    write_segment,
)

if TYPE_CHECKING:
    from ..serving._loading import ServedModel
    from ..serving._schema import Column

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_QUEUE_ROWS",
    "DEFAULT_RETENTION_SECONDS",
    "DEFAULT_SEGMENT_SECONDS",
    "LogSettings",
    "PredictionLogWriter",
]

log = logging.getLogger("mlinfra.monitoring")

DEFAULT_SEGMENT_SECONDS = 60.0
DEFAULT_MAX_BYTES = 1024**3
DEFAULT_RETENTION_SECONDS = 7 * 86400.0
# About 35 MB of queued one-row requests: 10 s of the fastest traffic one worker answers.
DEFAULT_QUEUE_ROWS = 50_000
_SEGMENT_BYTES_RANGE = (64 * 1024, 32 * 1024 * 1024)
_TICK_SECONDS = 0.25  # how often the writer takes the queue
_RETENTION_EVERY_SECONDS = 60.0
_STATUS_EVERY_SECONDS = 1.0
_CLOSE_TIMEOUT_SECONDS = 5.0
_STALE_PARTIAL_SECONDS = 600.0  # a temporary file no write has touched for this long was orphaned
_FREE_AT_ONCE = 16_384  # rows of a request freed in one go; more, a piece at a time


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    """How a server worker logs its predictions (see the module docstring)."""

    directory: Path
    sample_rate: float = 1.0
    """Share of requests logged, each drawn at random."""
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    max_bytes: int = DEFAULT_MAX_BYTES
    """Size of the whole log (all workers, predictions and labels) beyond which the oldest
    segments are deleted."""
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    queue_rows: int = DEFAULT_QUEUE_ROWS
    segment_bytes: int | None = None
    """Largest segment (in memory, as Arrow) before it is written; None: an eighth of
    `max_bytes`, within 64 KiB to 32 MiB, so that retention by size has segments to delete."""

    def __post_init__(self) -> None:
        checks = (
            ("sample_rate", 0 <= self.sample_rate <= 1, "between 0 and 1"),
            ("segment_seconds", self.segment_seconds > 0, "a positive number of seconds"),
            ("max_bytes", self.max_bytes > 0, "a positive number of bytes"),
            ("retention_seconds", self.retention_seconds > 0, "a positive number of seconds"),
            ("queue_rows", self.queue_rows > 0, "a positive number of rows"),
            ("segment_bytes", (self.segment_bytes or 1) > 0, "a positive number of bytes"),
        )
        for name, valid, what in checks:
            if not valid:
                raise ConfigError(
                    f"prediction log {name} must be {what}, not {getattr(self, name)}"
                )

    @property
    def largest_segment(self) -> int:
        if self.segment_bytes is not None:
            return self.segment_bytes
        low, high = _SEGMENT_BYTES_RANGE
        return min(high, max(low, self.max_bytes // 8))


# (time, request id, id(model), variant, rows, predictions, then each schema column's value, or
# values when rows > 1). Flat: a one-row request's tuple holds atomic values only, which the
# garbage collector stops tracking at its first pass. Containers held for the quarter second
# until the writer takes them (nested tuples too) were promoted to its oldest generation, and the
# full collections that followed (100 ms each, every few seconds at 2,000 requests/s, measured)
# cost 10% of the throughput and tripled the p99.
_Prediction = tuple[Any, ...]
_VALUES = 6  # where an entry's column values start
_Labels = tuple[float, list[str], list[str]]
CountHook = Callable[[str, str, int], None]
"""Called by the writer with (kind, outcome, rows) as its counts grow: Prometheus, in the server."""


class PredictionLogWriter:
    """The prediction log of one server worker: `record` on the request path, a thread writing."""

    def __init__(
        self,
        settings: LogSettings,
        *,
        count: CountHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._count = count
        self._clock = clock
        self._rate = settings.sample_rate
        self._capacity = settings.queue_rows
        self._lock = threading.Lock()
        self._predictions: list[_Prediction] = []
        self._models: dict[int, ServedModel] = {}  # the versions the queued entries name
        self._labels: list[_Labels] = []
        self._queued = {kind: 0 for kind in KINDS}
        self._dropped = {kind: 0 for kind in KINDS}  # under the lock: request threads add
        self._written = {kind: 0 for kind in KINDS}  # the writer thread's alone
        self._failed = {kind: 0 for kind in KINDS}
        self._published: dict[tuple[str, str], int] = {}
        self._open: dict[tuple[LogKind, pa.Schema], _OpenSegment] = {}
        self._pid = os.getpid()
        self._started_at = clock()
        self._sequence = itertools.count()
        self._failing = False
        self._next_retention = 0.0
        self._next_status = 0.0
        self._status_due = True  # a first status file, so that commands see the worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def status_path(self) -> Path:
        started = int(self._started_at * 1000)
        return self.settings.directory / STATUS_DIR / f"{self._pid}-{started}.json"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mlinfra-prediction-log", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = _CLOSE_TIMEOUT_SECONDS) -> None:
        """Write what is queued and the open segments, waiting at most `timeout` (a hung disk
        must not hold up the worker's exit: those rows are then lost)."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "prediction log: the open segments were not written within %.0f s; lost", timeout
            )

    def record(
        self,
        model: ServedModel,
        variant: str,
        request_id: str,
        columns: dict[str, list[Any]],
        rows: int,
        outputs: dict[str, Any],
    ) -> None:
        """Queue one answered request, or count it dropped: no conversion, no I/O, no waiting."""
        if self._rate < 1.0 and random.random() >= self._rate:
            return
        names = model.schema.names
        key = id(model)
        head = (self._clock(), request_id, key, variant, rows, outputs.get("predict"))
        if rows == 1:
            entry = (*head, *[columns[name][0] for name in names])
        else:  # copies of the lists, not of the values: a large body is emptied once answered
            entry = (*head, *[columns[name][:] for name in names])
        with self._lock:
            if self._queued["predictions"] + rows > self._capacity:
                self._dropped["predictions"] += rows
                return
            self._models[key] = model
            self._predictions.append(entry)
            self._queued["predictions"] += rows

    def record_labels(self, request_ids: list[str], labels: list[Any]) -> bool:
        """Queue labels fed back; False (nothing queued) when the queue has no room for them."""
        entry = (self._clock(), list(request_ids), [label_text(label) for label in labels])
        rows = len(request_ids)
        with self._lock:
            if self._queued["labels"] + rows > self._capacity:
                self._dropped["labels"] += rows
                return False
            self._labels.append(entry)
            self._queued["labels"] += rows
        return True

    def counts(self) -> dict[LogKind, RowCounts]:
        with self._lock:
            dropped = dict(self._dropped)
        return {
            kind: RowCounts(
                written=self._written[kind], dropped=dropped[kind], failed=self._failed[kind]
            )
            for kind in KINDS
        }

    def _run(self) -> None:
        tick = min(_TICK_SECONDS, self.settings.segment_seconds / 4)
        while True:
            stopping = self._stop.wait(tick)
            try:
                self._step(final=stopping)
            except Exception:  # a bug here must not end logging for the worker's lifetime
                log.exception("prediction log: unexpected error in the writer")
            if stopping:
                return

    def _step(self, *, final: bool) -> None:
        with self._lock:
            predictions, self._predictions = self._predictions, []
            models, self._models = self._models, {}
            labels, self._labels = self._labels, []
            self._queued = {kind: 0 for kind in KINDS}
        now = self._clock()
        self._add_predictions(predictions, models)
        if labels:
            self._add(_labels_batch(labels), "labels")
        wrote = False
        for key, segment in list(self._open.items()):
            if final or segment.due(now, self.settings):
                del self._open[key]
                self._write(segment)
                wrote = True
        if final or wrote or now >= self._next_retention:
            self._next_retention = now + _RETENTION_EVERY_SECONDS
            self._retain(now)
        self._publish(now, force=final)

    def _add_predictions(self, entries: list[_Prediction], models: dict[int, ServedModel]) -> None:
        by_model: dict[int, list[_Prediction]] = {}
        for entry in entries:
            by_model.setdefault(entry[2], []).append(entry)
        for key, group in by_model.items():
            model = models[key]
            try:
                batch = _predictions_batch(model, group)
            except Exception as exc:  # values the schema accepted convert; never stop logging
                rows = sum(entry[4] for entry in group)
                self._fail("predictions", rows, f"rows of {model.name} v{model.version}", exc)
            else:
                self._add(batch, "predictions")
            finally:
                _free(group)

    def _add(self, batch: pa.RecordBatch, kind: LogKind) -> None:
        key = (kind, batch.schema)
        segment = self._open.get(key)
        if segment is None:
            first_at = batch.column(0)[0].value / 1e6  # "at", in arrival order
            segment = self._open[key] = _OpenSegment(kind, batch.schema, first_at)
        segment.add(batch)
        if segment.nbytes >= self.settings.largest_segment:
            del self._open[key]
            self._write(segment)

    def _write(self, segment: _OpenSegment) -> None:
        directory = self.settings.directory / segment.kind
        try:
            write_segment(directory, segment.table(), self._pid, next(self._sequence))
        except (OSError, pa.ArrowException) as exc:
            self._fail(segment.kind, segment.rows, str(directory), exc)
            return
        self._written[segment.kind] += segment.rows
        if self._failing:
            self._failing = False
            log.warning("prediction log: writing to %s again", self.settings.directory)

    def _fail(self, kind: LogKind, rows: int, where: str, exc: BaseException) -> None:
        """Count the rows lost; warn on the first failure of a run of them, not on each."""
        self._failed[kind] += rows
        if not self._failing:
            self._failing = True
            log.warning(
                "prediction log: cannot write %s (%s: %s); rows are counted as failed and "
                "writing is tried again with the next segment",
                where,
                type(exc).__name__,
                exc,
            )

    def _retain(self, now: float) -> None:
        try:
            _retain(self.settings, now, protect=self.status_path)
        except OSError as exc:
            log.debug("prediction log retention: %s", exc)

    def _publish(self, now: float, *, force: bool) -> None:
        """Hand the counts' growth to `count`; rewrite the status file (at most once a second)
        when they changed."""
        counts = self.counts()
        for kind, rows in counts.items():
            for outcome in ("written", "dropped", "failed"):
                total = getattr(rows, outcome)
                grown = total - self._published.get((kind, outcome), 0)
                if grown:
                    self._status_due = True
                    self._published[kind, outcome] = total
                    if self._count is not None:
                        self._count(kind, outcome, grown)
        if now >= self._next_status + self.settings.retention_seconds / 2:
            self._status_due = True  # kept fresh: other workers' retention deletes stale ones
        if not self._status_due or not (force or now >= self._next_status):
            return
        self._status_due = False
        self._next_status = now + _STATUS_EVERY_SECONDS
        status = WorkerLogStatus(
            pid=self._pid,
            started_at=self._started_at,
            updated_at=now,
            predictions=counts["predictions"],
            labels=counts["labels"],
        )
        try:
            atomic_write_text(self.status_path, status.model_dump_json())
        except OSError:
            self._status_due = True  # the segments' failure has been said; Prometheus counts


class _OpenSegment:
    """Batches of one schema, held until the segment is old or large enough to write."""

    def __init__(self, kind: LogKind, schema: pa.Schema, first_at: float) -> None:
        self.kind = kind
        self.schema = schema
        self.first_at = first_at
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0
        self.nbytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.rows += batch.num_rows
        self.nbytes += batch.nbytes

    def due(self, now: float, settings: LogSettings) -> bool:
        """Whether its first row is `segment_seconds` old."""
        return now - self.first_at >= settings.segment_seconds

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, self.schema)


def _retain(settings: LogSettings, now: float, *, protect: Path) -> None:
    """Delete segments older than the retention, then the oldest beyond `max_bytes`; orphaned
    temporary files; status files of workers gone for longer than the retention."""
    oldest = now - settings.retention_seconds
    reader = PredictionLog(settings.directory)
    kept: list[tuple[Segment, int]] = []
    for segment in [*reader.segments(kind="predictions"), *reader.segments(kind="labels")]:
        try:
            size = segment.path.stat().st_size
        except FileNotFoundError:
            continue  # another worker's retention was first
        if segment.last_at < oldest:
            segment.path.unlink(missing_ok=True)
        else:
            kept.append((segment, size))
    total = sum(size for _, size in kept)
    for segment, size in sorted(kept, key=lambda item: item[0].last_at):
        if total <= settings.max_bytes:
            break
        segment.path.unlink(missing_ok=True)
        total -= size
    for kind in KINDS:
        for partial in (settings.directory / kind).glob(".*.partial"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_mtime < time.time() - _STALE_PARTIAL_SECONDS:
                    partial.unlink()
    for path, status in reader.statuses().items():
        if status.updated_at < oldest and path != protect:
            path.unlink(missing_ok=True)


def _predictions_batch(model: ServedModel, group: list[_Prediction]) -> pa.RecordBatch:
    """The rows of one model version's requests as one Arrow batch."""
    counts = np.fromiter((entry[4] for entry in group), dtype=np.int64, count=len(group))
    total = int(counts.sum())
    at = np.repeat(np.fromiter((entry[0] for entry in group), np.float64, len(group)), counts)
    ids: list[str] = []
    for entry in group:
        ids.extend(row_ids(entry[1], entry[4]))
    variants = np.repeat(np.array([entry[3] for entry in group], dtype=object), counts)
    names = ["at", "request_id", "model", "version", "variant"]
    arrays: list[pa.Array] = [
        pa.array((at * 1e6).astype(np.int64), UTC_MICROS),
        text_array(ids),
        pa.repeat(pa.scalar(model.name, pa.string()), total),
        pa.repeat(pa.scalar(model.version, pa.int64()), total),
        pa.array(variants, pa.string()),
    ]
    for index, column in enumerate(model.schema.columns, start=_VALUES):
        values: list[Any] = []
        for entry in group:
            if entry[4] == 1:
                values.append(entry[index])
            else:
                values.extend(entry[index])
        names.append(feature_column(column.name))
        arrays.append(_feature_array(column, values))
    names.append("prediction")
    arrays.append(_prediction_array(model.task == "regression", group))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _feature_array(column: Column, values: list[Any]) -> pa.Array:
    """A feature as its schema's type: float64, int64, bool, string, timestamp (UTC) or, for a
    category, the type all its categories share (string when they mix)."""
    array = column.array(values)  # the server's own conversion: these values passed it
    kind = column.kind
    if kind == "datetime":
        import pandas as pd

        stamps = pd.to_datetime(pd.Series(array), utc=True, format="ISO8601", errors="coerce")
        return pa.array(stamps).cast(UTC_MICROS, safe=False)
    target = _category_type(column.categories) if kind == "category" else _KIND_TYPES[kind]
    if target == pa.string():
        return text_array([None if v is None else str(v) for v in array])
    converted = pa.array(array, from_pandas=True)  # NaN of a nullable column: null
    return converted if converted.type == target else converted.cast(target)


_KIND_TYPES = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def _category_type(categories: Sequence[Any] | None) -> pa.DataType:
    kinds = {type(category) for category in categories or ("",)}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _prediction_array(regression: bool, group: list[_Prediction]) -> pa.Array:
    """The class as text, or the regression's number; null where the request did not ask for
    `predict` (only `predict_proba`) or the model predicts several values per row."""
    parts = [entry[5] for entry in group]
    whole = all(
        part is not None and part.ndim == 1 and len(part) == entry[4]
        for part, entry in zip(parts, group, strict=True)
    )
    if whole:
        values = np.concatenate(parts)
        if regression:
            return pa.array(values.astype(np.float64))
        return pa.array(values.astype(str), pa.string())
    rows: list[Any] = []
    for part, entry in zip(parts, group, strict=True):
        if part is None or part.ndim != 1 or len(part) != entry[4]:
            rows.extend([None] * entry[4])
        else:
            rows.extend(float(v) if regression else str(v) for v in part.tolist())
    return pa.array(rows, pa.float64() if regression else pa.string())


def _labels_batch(entries: Iterable[_Labels]) -> pa.RecordBatch:
    at: list[int] = []
    ids: list[str] = []
    labels: list[str] = []
    for seconds, request_ids, texts in entries:
        at.extend([int(seconds * 1e6)] * len(request_ids))
        ids.extend(request_ids)
        labels.extend(texts)
    return pa.RecordBatch.from_arrays(
        [pa.array(at, UTC_MICROS), text_array(ids), text_array(labels)],
        schema=LABELS_SCHEMA,
    )


def _free(group: list[_Prediction]) -> None:
    """Let go of a group's values, a large request's a piece at a time: a million values freed
    at once hold the GIL for 20 ms, stalling the worker's requests meanwhile."""
    for entry in group:
        if entry[4] > _FREE_AT_ONCE:
            from ..serving._http import release  # only the server writes: no web stack to read

            for values in entry[_VALUES:]:
                release(values)
    group.clear()
