"""Offline drift: the same detectors on two files (CSV or Parquet), for batch scoring and CI.

The reference is read whole (it is profiled once); the current file is read in batches and
summarised as it goes, so that its size is bounded by disk, not memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ._profile import ReferenceProfile, Summary, WindowSummary
from ._report import DriftReport, DriftSettings, drift_report

if TYPE_CHECKING:
    import pandas

__all__ = ["BATCH_ROWS", "compare_files", "read_table"]

BATCH_ROWS = 262_144
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path) -> pandas.DataFrame:
    """A whole CSV or Parquet file as a DataFrame."""
    import pandas as pd

    schema, *batches = _batches(path)
    if not batches:
        return schema
    return pd.concat(batches, ignore_index=True) if len(batches) > 1 else batches[0]


def compare_files(
    reference: Path,
    current: Path,
    settings: DriftSettings | None = None,
    *,
    categorical: Iterable[str] = (),
    prediction: str | None = None,
) -> DriftReport:
    """The drift report of `current` against `reference`, over the columns both hold."""
    reference_frame = read_table(reference)
    batches = _batches(current)
    first = next(batches)  # the columns, no rows
    shared = [name for name in reference_frame.columns if name in first.columns]
    if not shared:
        raise ValidationError(
            f"{current.name} and {reference.name} have no column in common; compare files of "
            "the same features"
        )
    wanted = list(categorical)
    named = [*wanted, *([prediction] if prediction else [])]
    unknown = [name for name in named if name not in shared]
    if unknown:
        raise ValidationError(
            f"column {unknown[0]!r} is not in both files (they share: {', '.join(shared)})"
        )
    profile = ReferenceProfile.build(
        reference_frame[shared], categorical=wanted, prediction=prediction
    )
    only = sorted(set(reference_frame.columns) ^ set(first.columns))
    del reference_frame
    if _FORMATS[current.suffix.lower()] == "parquet":
        window = _parquet_window(profile, current)
    else:
        window = profile.empty()
        for batch in batches:
            window = window + profile.summarise(batch[shared])
    report = drift_report(profile, window, settings)
    if only:
        report.notes.append(f"not compared (in one file only): {', '.join(only)}")
    return report


def _batches(path: Path) -> Iterator[pandas.DataFrame]:
    """The file's columns (an empty DataFrame), then its rows in batches of at most
    BATCH_ROWS."""
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValidationError(
            f"{path}: not a .csv or .parquet file; convert it, or name it for its format"
        )
    if not path.is_file():
        raise ValidationError(f"{path}: no such file")
    try:
        if kind == "parquet":
            yield from _parquet(path)
        else:
            yield from _csv(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise ValidationError(f"{path}: cannot be read as {kind}: {_first_line(exc)}") from exc


def _parquet(path: Path) -> Iterator[pandas.DataFrame]:
    """The schema first (an empty frame), then the rows in batches."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    yield file.schema_arrow.empty_table().to_pandas()
    for batch in file.iter_batches(batch_size=BATCH_ROWS):
        yield batch.to_pandas()


def _parquet_window(profile: ReferenceProfile, path: Path) -> WindowSummary:
    """A Parquet file summarised column by column: a row group (often the whole file) is
    decoded one column at a time, so memory holds one column's batch, not the rows."""
    import pyarrow.parquet as pq

    def column(name: str) -> Summary:
        alone = ReferenceProfile(rows=profile.rows, features={name: profile.features[name]})
        window = alone.empty()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=[name]):
            window = window + alone.summarise(batch.to_pandas())
        return window.features[name]

    try:
        with ThreadPoolExecutor(2) as pool:  # decoding and sorting release the GIL
            summaries = list(pool.map(column, profile.features))
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot be read as parquet: {_first_line(exc)}") from exc
    return WindowSummary(rows, dict(zip(profile.features, summaries, strict=True)))


def _csv(path: Path) -> Iterator[pandas.DataFrame]:
    import pyarrow.csv as csv

    reader = csv.open_csv(
        path,
        read_options=csv.ReadOptions(block_size=1 << 24),
        # an empty cell is a missing value, as in Parquet, not a category ""
        convert_options=csv.ConvertOptions(strings_can_be_null=True),
    )
    yield reader.schema.empty_table().to_pandas()
    for batch in reader:
        yield batch.to_pandas()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
