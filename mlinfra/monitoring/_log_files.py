"""An env's prediction log on disk: its layout, the segment files and how they are named,
reading them back (`PredictionLog`), and appending labels from a file (`record_labels`).

A log directory, which every worker of a server (and `record_labels`) writes into:

    predictions/<first>_<last>_w<pid>-<seq>_<rows>.parquet   segments; times UTC, to the ms
    labels/<same pattern>.parquet                             at, request_id, label
    status/<pid>-<started>.json                               each worker's row counts

A segment is written whole to a hidden temporary name and renamed, so every file that matches
the pattern is complete. A prediction row has `at`, `request_id`, `model`, `version`, `variant`,
each feature as its schema type, and `prediction` (the class as text, or the regression's
number). Rows carry their request's id, `<id>/<row>` for the rows of a multi-row request (see
`_ids`); labels are text (2.0 reads "2", like the class 2).
"""

from __future__ import annotations

import calendar
import itertools
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from .._fs import atomic_write_bytes
from ..errors import StateError, ValidationError
from ._ids import REQUEST_ID_RULE, valid_request_id

if TYPE_CHECKING:
    import pandas

__all__ = [
    "KINDS",
    "LABELS_SCHEMA",
    "STATUS_DIR",
    "UTC_MICROS",
    "LogCounts",
    "LogKind",
    "PredictionLog",
    "RowCounts",
    "Segment",
    "WorkerLogStatus",
    "feature_column",
    "label_text",
    "record_labels",
    "text_array",
    "write_segment",
]

LogKind = Literal["predictions", "labels"]
KINDS: tuple[LogKind, ...] = ("predictions", "labels")
STATUS_DIR = "status"
UTC_MICROS = pa.timestamp("us", tz="UTC")
LABELS_SCHEMA = pa.schema([("at", UTC_MICROS), ("request_id", pa.string()), ("label", pa.string())])
# Columns of a prediction row besides the features; a feature of one of these names is logged as
# `feature:<name>` (`feature_column`). "label", "correct" and "error" are added by `labelled`.
_RESERVED = frozenset(
    {"at", "request_id", "model", "version", "variant", "prediction", "label", "correct", "error"}
)
_NAME = re.compile(
    r"^(?P<first>\d{8}T\d{6}\.\d{3})Z_(?P<last>\d{8}T\d{6}\.\d{3})Z"
    r"_w(?P<pid>\d+)-(?P<seq>\d+)_(?P<rows>\d+)\.parquet$"
)
_ROW_GROUP_ROWS = 65_536


class RowCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    written: int = 0
    dropped: int = 0
    """Never logged: the queue was full (the disk did not keep up with the traffic)."""
    failed: int = 0
    """Never logged: writing their segment failed (disk full, unwritable directory)."""

    @property
    def lost(self) -> int:
        return self.dropped + self.failed

    def __add__(self, other: RowCounts) -> RowCounts:
        return RowCounts(
            written=self.written + other.written,
            dropped=self.dropped + other.dropped,
            failed=self.failed + other.failed,
        )


class WorkerLogStatus(BaseModel):
    """One worker's counts since it started, in `status/` for commands that run without it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int
    started_at: float
    updated_at: float
    predictions: RowCounts = RowCounts()
    labels: RowCounts = RowCounts()


@dataclass(frozen=True)
class LogCounts:
    """Totals over every worker that logged into a directory (within the retention)."""

    predictions: RowCounts
    labels: RowCounts
    workers: int


def feature_column(feature: str) -> str:
    """The log's column for a feature: its name, unless a column of the log has that name."""
    return f"feature:{feature}" if feature in _RESERVED else feature


def write_segment(directory: Path, table: pa.Table, pid: int, sequence: int) -> Path:
    """`table` as a closed segment named for its time span; OSError if it cannot be written."""
    import pyarrow.compute as pc

    span = pc.min_max(table.column("at").cast(pa.int64())).as_py()
    name = (
        f"{_stamp(math.floor(span['min'] / 1000))}_{_stamp(math.ceil(span['max'] / 1000))}"
        f"_w{pid}-{sequence}_{table.num_rows}.parquet"
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=_ROW_GROUP_ROWS)
    path = directory / name
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def _stamp(millis: int) -> str:
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def _parse_stamp(text: str) -> float:
    fields = (text[0:4], text[4:6], text[6:8], text[9:11], text[11:13], text[13:15])
    year, month, day, hour, minute, second = map(int, fields)
    epoch = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return epoch + int(text[16:19]) / 1000


def text_array(values: Sequence[str | None]) -> pa.Array:
    """Text as Arrow takes it: a lone surrogate (JSON can carry one, UTF-8 cannot) becomes "?"."""
    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError:
        return pa.array(
            [None if v is None else v.encode("utf-8", "replace").decode() for v in values],
            pa.string(),
        )


def label_text(value: Any) -> str:
    """A label as the log keeps it: what a prediction of that class reads as (2.0 is "2")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Segment:
    """A closed (complete) segment of the log."""

    path: Path
    kind: LogKind
    first_at: float
    """Time of its first row (seconds since the epoch, rounded down to the ms)."""
    last_at: float
    """Time of its last row (rounded up to the ms)."""
    rows: int
    pid: int
    """The server worker (or `record_labels` process) that wrote it."""


class PredictionLog:
    """Read a prediction log directory: its closed segments, labels, and counts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def status_dir(self) -> Path:
        return self.directory / STATUS_DIR

    def segments(
        self, since: float | None = None, *, kind: LogKind = "predictions"
    ) -> list[Segment]:
        """Closed segments holding rows from `since` on (all when None), oldest first."""
        try:
            names = os.listdir(self.directory / kind)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            match = _NAME.match(name)
            if match is None:
                continue  # a temporary file being written, or a stranger
            last = _parse_stamp(match["last"])
            if since is not None and last < since:
                continue
            found.append(
                Segment(
                    path=self.directory / kind / name,
                    kind=kind,
                    first_at=_parse_stamp(match["first"]),
                    last_at=last,
                    rows=int(match["rows"]),
                    pid=int(match["pid"]),
                )
            )
        return sorted(found, key=lambda segment: (segment.first_at, segment.path.name))

    def read(self, segment: Segment, columns: Sequence[str] | None = None) -> pa.Table:
        """A segment's rows; of `columns` those it has (another version may have others).
        FileNotFoundError if retention deleted it meanwhile."""
        with pq.ParquetFile(segment.path) as file:
            if columns is None:
                return file.read()
            present = set(file.schema_arrow.names)
            return file.read(columns=[name for name in columns if name in present])

    def labels(self, since: float | None = None) -> pa.Table:
        """Labels received from `since` on (request_id, label, at); of several labels for one
        request id the latest."""
        tables = []
        for segment in self.segments(since, kind="labels"):
            try:
                tables.append(self.read(segment).cast(LABELS_SCHEMA))
            except FileNotFoundError:
                continue
        if not tables:
            return LABELS_SCHEMA.empty_table()
        table = pa.concat_tables(tables).sort_by("at")
        latest = table.group_by("request_id", use_threads=False).aggregate(
            [("label", "last"), ("at", "last")]
        )
        return latest.select(["at_last", "request_id", "label_last"]).rename_columns(
            LABELS_SCHEMA.names
        )

    def labelled(self, predictions: pa.Table, labels: pa.Table | None = None) -> pa.Table:
        """The predictions that have a label, with `label` (typed like `prediction`) and either
        `correct` (classes) or `error` (prediction - label, regressions). Labels of a regression
        that are not numbers are left out."""
        import pyarrow.compute as pc

        labels = self.labels() if labels is None else labels
        joined = _as_text(predictions, "request_id").join(
            _as_text(labels.select(["request_id", "label"]), "request_id", "label"),
            "request_id",
            join_type="inner",
        )
        prediction = joined.column("prediction")
        if pa.types.is_floating(prediction.type):
            import pandas as pd

            numbers = pd.to_numeric(joined.column("label").to_pandas(), errors="coerce")
            joined = joined.set_column(
                joined.schema.get_field_index("label"),
                "label",
                pa.array(numbers.to_numpy(np.float64), from_pandas=True),
            )
            joined = joined.filter(pc.is_valid(joined.column("label")))
            return joined.append_column(
                "error", pc.subtract(joined.column("prediction"), joined.column("label"))
            )
        return joined.append_column("correct", pc.equal(prediction, joined.column("label")))

    def statuses(self) -> dict[Path, WorkerLogStatus]:
        """Each worker's status file; one being replaced or damaged is skipped."""
        found = {}
        for path in sorted(self.status_dir.glob("*.json")):
            try:
                found[path] = WorkerLogStatus.model_validate_json(path.read_bytes())
            except (OSError, PydanticValidationError):
                continue
        return found

    def counts(self) -> LogCounts:
        """Rows written, dropped and failed by all workers, from their status files."""
        statuses = self.statuses().values()
        return LogCounts(
            predictions=sum((s.predictions for s in statuses), RowCounts()),
            labels=sum((s.labels for s in statuses), RowCounts()),
            workers=len(statuses),
        )


def _as_text(table: pa.Table, *names: str) -> pa.Table:
    """`table` with these columns as plain strings (pandas gives large ones): a join needs one
    type on both sides."""
    for name in names:
        index = table.schema.get_field_index(name)
        if table.schema.field(index).type != pa.string():
            table = table.set_column(index, name, table.column(index).cast(pa.string()))
    return table


_LABEL_SEQUENCE = itertools.count()


def record_labels(
    directory: Path, frame: pandas.DataFrame, *, clock: Callable[[], float] = time.time
) -> int:
    """Append labels (columns `request_id` and `label`, e.g. read from a CSV or Parquet file)
    to the log in `directory` as one segment; the number of labels."""
    missing = [name for name in ("request_id", "label") if name not in frame.columns]
    if missing:
        raise ValidationError(
            f"labels need the columns request_id and label; {' and '.join(missing)} missing "
            f"(columns: {', '.join(map(str, frame.columns)) or 'none'})"
        )
    if frame.empty:
        raise ValidationError("there are no labels: the file has no rows")
    for name in ("request_id", "label"):
        empty = frame[name].isna().to_numpy().nonzero()[0]
        if len(empty):
            raise ValidationError(f"row {int(empty[0]) + 1}: {name} is empty; every row needs one")
    ids = frame["request_id"].astype(str)
    bad = next((row for row, text in enumerate(ids) if not valid_request_id(text)), None)
    if bad is not None:
        raise ValidationError(f"row {bad + 1}: request_id must be {REQUEST_ID_RULE}")
    at = int(clock() * 1e6)
    table = pa.Table.from_arrays(
        [
            pa.array(np.full(len(ids), at, dtype=np.int64), UTC_MICROS),
            pa.array(ids.tolist(), pa.string()),
            pa.array([label_text(label) for label in frame["label"].tolist()], pa.string()),
        ],
        schema=LABELS_SCHEMA,
    )
    target = directory / "labels"
    try:
        write_segment(target, table, os.getpid(), next(_LABEL_SEQUENCE))
    except OSError as exc:
        raise StateError(
            f"cannot write labels to {target}: {exc.strerror or exc}; check that the directory "
            "is writable and the disk has room"
        ) from exc
    return table.num_rows
