"""Summaries of a reference sample and of live traffic that the drift tests need, small and
additive, so that a window of any length is the sum of its intervals and a day of traffic never
sits in memory.

A numeric feature is summarised on its reference's grid (the sorted distinct reference values):
for each reference value, how many values equal it, and how many (and their sum) fall strictly
between it and the next. That is enough for the exact two-sample Kolmogorov-Smirnov statistic
(both empirical CDFs only step at sample points, and between two reference values the
reference's is flat), for PSI and histograms on bins whose edges are reference values, and for
the Wasserstein distance (exact unless the two CDFs cross between two neighbouring reference
values). A categorical feature is summarised by its counts per reference category, with unseen
categories counted apart (and the most frequent of them named).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas

__all__ = [
    "CategoricalReference",
    "CategoricalSummary",
    "NumericReference",
    "NumericSummary",
    "ReferenceProfile",
    "WindowSummary",
    "category_text",
]

UNSEEN_NAMES_KEPT = 20
"""Unseen categories named in a summary; the others are only counted."""
_PARALLEL_ROWS = 100_000  # from this many rows, numeric columns are summarised on two threads


def category_text(value: Any) -> str:
    """A category as the profiles compare it: 2.0 reads as "2", so that a category sent as a
    number matches the one the reference holds as an integer."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class NumericSummary:
    """One numeric feature over some rows: counts and sums per slot of the reference's grid.

    Slot 2i+1 holds values equal to grid[i]; slot 2i those strictly between grid[i-1] and
    grid[i] (slot 0 below the grid, the last slot above it)."""

    counts: np.ndarray
    sums: np.ndarray
    """Per slot, the sum of (value - the reference mean)."""
    missing: int
    """Nulls and non-finite values (NaN, inf): not tested, counted."""

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    def __add__(self, other: NumericSummary) -> NumericSummary:
        return NumericSummary(
            self.counts + other.counts, self.sums + other.sums, self.missing + other.missing
        )


@dataclass(frozen=True)
class CategoricalSummary:
    """One categorical feature over some rows: counts per reference category, then unseen."""

    counts: np.ndarray
    unseen: int
    unseen_names: Counter[str]
    missing: int

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.unseen

    def __add__(self, other: CategoricalSummary) -> CategoricalSummary:
        names = self.unseen_names + other.unseen_names
        return CategoricalSummary(
            self.counts + other.counts,
            self.unseen + other.unseen,
            Counter(dict(names.most_common(UNSEEN_NAMES_KEPT))),
            self.missing + other.missing,
        )


Summary = NumericSummary | CategoricalSummary


@dataclass(frozen=True)
class NumericReference:
    name: str
    grid: np.ndarray
    """The sorted distinct finite reference values."""
    summary: NumericSummary
    """The reference itself on its grid."""
    mean: float
    std: float

    @property
    def slots(self) -> int:
        return 2 * len(self.grid) + 1

    def summarise(self, values: np.ndarray) -> NumericSummary:
        """Values (float64, NaN for nulls) on this grid, through one sort: a million rows on a
        grid of 100,000 values take about 50 ms."""
        finite = np.isfinite(values)
        missing = int(len(values) - np.count_nonzero(finite))
        ordered = np.sort(values[finite] if missing else values)
        grid = self.grid
        bounds = np.empty(self.slots + 1, dtype=np.int64)
        bounds[0] = 0
        bounds[1:-1:2] = np.searchsorted(ordered, grid, "left")
        bounds[2:-1:2] = np.searchsorted(ordered, grid, "right")
        bounds[-1] = len(ordered)
        # sums of offsets from the reference mean: a cumulative sum of raw values near 1e12
        # would lose the digits the Wasserstein distance needs
        running = np.concatenate(([0.0], np.cumsum(ordered - self.mean)))
        return NumericSummary(np.diff(bounds), np.diff(running[bounds]), missing)

    def empty(self) -> NumericSummary:
        return NumericSummary(np.zeros(self.slots, np.int64), np.zeros(self.slots), 0)


@dataclass(frozen=True)
class CategoricalReference:
    name: str
    categories: tuple[str, ...]
    """The reference's categories, most frequent first."""
    summary: CategoricalSummary

    def summarise(self, values: pandas.Series) -> CategoricalSummary:
        import pandas as pd

        missing_mask = values.isna().to_numpy()
        text = _texts(values[~missing_mask])
        codes = pd.Index(list(self.categories)).get_indexer(text)
        counts = np.bincount(codes[codes >= 0], minlength=len(self.categories))
        unseen = text[codes < 0]
        names = Counter(dict(unseen.value_counts().head(UNSEEN_NAMES_KEPT).items()))
        return CategoricalSummary(
            counts.astype(np.int64), int(len(unseen)), names, int(missing_mask.sum())
        )

    def empty(self) -> CategoricalSummary:
        return CategoricalSummary(np.zeros(len(self.categories), np.int64), 0, Counter(), 0)


FeatureReference = NumericReference | CategoricalReference


@dataclass(frozen=True)
class WindowSummary:
    """Live traffic over some span: per-feature summaries and the row count. Windows add up."""

    rows: int
    features: dict[str, Summary]
    start: float | None = None
    """Time of the earliest interval in it (seconds since the epoch), when known."""

    def __add__(self, other: WindowSummary) -> WindowSummary:
        features = {name: summary + other.features[name] for name, summary in self.features.items()}  # type: ignore[operator]
        starts = [at for at in (self.start, other.start) if at is not None]
        return WindowSummary(self.rows + other.rows, features, min(starts) if starts else None)


@dataclass(frozen=True)
class ReferenceProfile:
    """What drift is measured against: the served version's reference sample, summarised once."""

    rows: int
    features: dict[str, FeatureReference]
    """The input features and, when given, the prediction (under its own name)."""
    importances: dict[str, float] | None = None
    """Permutation importance per feature (from training), weighting the dataset's verdict."""
    prediction: str | None = None
    """The column holding the model's prediction, tested on its own (no correction)."""
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def build(
        cls,
        frame: pandas.DataFrame,
        *,
        categorical: Iterable[str] = (),
        importances: Mapping[str, float] | None = None,
        prediction: str | None = None,
    ) -> ReferenceProfile:
        """The profile of a reference frame. Columns named in `categorical`, and those of
        non-numeric dtype, are categorical; the others numeric."""
        import pandas as pd

        wanted = set(categorical)
        features: dict[str, FeatureReference] = {}
        notes = []
        for name in frame.columns:
            column = frame[name]
            numeric = name not in wanted and (
                pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
            )
            if numeric:
                features[name] = _numeric_reference(str(name), _floats(column))
            else:
                features[name] = _categorical_reference(str(name), column)
            if features[name].summary.rows == 0:
                notes.append(f"{name}: the reference holds no values (all null), not tested")
        if prediction is not None and prediction not in features:
            raise ValueError(f"prediction column {prediction!r} is not in the reference")
        return cls(
            rows=len(frame),
            features=features,
            importances=dict(importances) if importances else None,
            prediction=prediction,
            notes=tuple(notes),
        )

    def summarise(self, frame: pandas.DataFrame, *, start: float | None = None) -> WindowSummary:
        """Rows of live traffic summarised; a feature the frame lacks counts as missing."""
        rows = len(frame)
        numeric = [
            (name, reference)
            for name, reference in self.features.items()
            if isinstance(reference, NumericReference) and name in frame.columns
        ]

        def one(item: tuple[str, NumericReference]) -> NumericSummary:
            name, reference = item
            return reference.summarise(_floats(frame[name]))

        if rows >= _PARALLEL_ROWS and len(numeric) > 1:
            with ThreadPoolExecutor(2) as pool:  # numpy sorts without the GIL
                summaries = list(pool.map(one, numeric))
        else:
            summaries = [one(item) for item in numeric]
        names = [name for name, _ in numeric]
        features: dict[str, Summary] = dict(zip(names, summaries, strict=True))
        for name, reference in self.features.items():
            if name in features:
                continue
            if name not in frame.columns:
                empty = reference.empty()
                features[name] = _all_missing(empty, rows)
            elif isinstance(reference, CategoricalReference):
                features[name] = reference.summarise(frame[name])
        return WindowSummary(rows, {name: features[name] for name in self.features}, start)

    def empty(self) -> WindowSummary:
        return WindowSummary(0, {name: ref.empty() for name, ref in self.features.items()})


def _floats(column: pandas.Series) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce")
    return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)


def _numeric_reference(name: str, values: np.ndarray) -> NumericReference:
    finite = values[np.isfinite(values)]
    grid = np.unique(finite)
    mean = float(finite.mean()) if len(finite) else 0.0
    std = float(finite.std()) if len(finite) else 0.0
    unsummarised = NumericSummary(np.zeros(0), np.zeros(0), 0)
    summary = NumericReference(name, grid, unsummarised, mean, std).summarise(values)
    return NumericReference(name, grid, summary, mean, std)


def _categorical_reference(name: str, column: pandas.Series) -> CategoricalReference:
    text = _texts(column.dropna())
    ordered = tuple(str(value) for value in text.value_counts().index)
    unsummarised = CategoricalSummary(np.zeros(0), 0, Counter(), 0)
    summary = CategoricalReference(name, ordered, unsummarised).summarise(column)
    return CategoricalReference(name, ordered, summary)


def _texts(values: pandas.Series) -> pandas.Series:
    """Non-null values as category text (`category_text`), element by element only where
    a value's type decides its text (floats, mixed objects)."""
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(values.cat.categories.dtype)
    if values.dtype.kind in "fO":
        return values.map(category_text)
    return values.astype(str)


def _all_missing(summary: Summary, rows: int) -> Summary:
    if isinstance(summary, NumericSummary):
        return NumericSummary(summary.counts, summary.sums, rows)
    return CategoricalSummary(summary.counts, 0, Counter(), rows)
