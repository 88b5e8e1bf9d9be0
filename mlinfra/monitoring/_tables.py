"""Offline drift: the same detectors on two files (CSV or Parquet), for batch scoring and CI.

The reference is read whole (it is profiled once); the current file is read in batches and
summarised as it goes, so that its size is bounded by disk, not memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ._profile import ReferenceProfile, WindowSummary
from ._report import DriftReport, DriftSettings, drift_report

if TYPE_CHECKING:
    import pandas

__all__ = ["BATCH_ROWS", "compare_files", "read_table"]

BATCH_ROWS = 262_144
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path) -> pandas.DataFrame:
    """A whole CSV or Parquet file as a DataFrame."""
    import pandas as pd

    batches = list(_batches(path))
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
    first = next(batches)
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
    window: WindowSummary = profile.summarise(first[shared])
    for batch in batches:
        window = window + profile.summarise(batch[shared])
    report = drift_report(profile, window, settings)
    if only:
        report.notes.append(f"not compared (in one file only): {', '.join(only)}")
    return report


def _batches(path: Path) -> Iterator[pandas.DataFrame]:
    """The file's rows in batches of at most BATCH_ROWS, as DataFrames; at least one."""
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
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    empty = True
    for batch in file.iter_batches(batch_size=BATCH_ROWS):
        empty = False
        yield batch.to_pandas()
    if empty:
        yield file.schema_arrow.empty_table().to_pandas()


def _csv(path: Path) -> Iterator[pandas.DataFrame]:
    import pyarrow.csv as csv

    reader = csv.open_csv(
        path,
        read_options=csv.ReadOptions(block_size=1 << 24),
        # an empty cell is a missing value, as in Parquet, not a category ""
        convert_options=csv.ConvertOptions(strings_can_be_null=True),
    )
    empty = True
    for batch in reader:
        empty = False
        yield batch.to_pandas()
    if empty:
        yield reader.schema.empty_table().to_pandas()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
