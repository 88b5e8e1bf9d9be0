"""A dataset's schema, inferred from a DataFrame and stored as plain JSON with each model version.

The serving stack validates requests against it and the drift monitor reads ranges and categories,
so it stays a simple structure: columns in order, each with kind, pandas dtype, range, categories
and nulls, plus the label's distribution.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas

__all__ = [
    "MAX_CATEGORIES",
    "ColumnSchema",
    "DatasetSchema",
    "Kind",
    "TargetSchema",
    "column_kind",
    "infer_schema",
]

Kind = Literal["bool", "int", "float", "category", "string", "datetime"]
Scalar = str | int | float | bool
# Text columns with more distinct values than this are free text, not categories.
MAX_CATEGORIES = 50


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnSchema(_Frozen):
    name: str
    kind: Kind
    dtype: str
    nullable: bool
    null_count: int
    min: Scalar | None = None
    max: Scalar | None = None
    categories: list[Scalar] | None = None


class TargetSchema(_Frozen):
    name: str
    kind: Kind
    dtype: str
    classes: dict[str, int] | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


class DatasetSchema(_Frozen):
    rows: int
    columns: list[ColumnSchema]
    target: TargetSchema | None = None

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> ColumnSchema | None:
        return next((column for column in self.columns if column.name == name), None)


def column_kind(series: pandas.Series) -> Kind:
    """What a column holds, read from its dtype (and from its values when the dtype is object)."""
    import pandas as pd
    from pandas.api import types

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if types.is_bool_dtype(dtype):
        return "bool"
    if types.is_integer_dtype(dtype):
        return "int"
    if types.is_float_dtype(dtype):
        return "float"
    if types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if str(dtype) == "object":  # plain Python objects: judge by the values
        inferred = types.infer_dtype(series, skipna=True)
        if inferred == "integer":
            return "int"
        if inferred in ("floating", "mixed-integer-float"):
            return "float"
        if inferred == "boolean":
            return "bool"
    return "string"


def infer_schema(
    features: pandas.DataFrame,
    target: pandas.Series | None = None,
    *,
    task: Literal["classification", "regression"] | None = None,
) -> DatasetSchema:
    columns = [
        _infer_column(str(name), features.iloc[:, position])  # by position: names may repeat
        for position, name in enumerate(features.columns)
    ]
    label = None if target is None else _infer_target(target, task)
    return DatasetSchema(rows=len(features), columns=columns, target=label)


def _infer_column(name: str, series: pandas.Series) -> ColumnSchema:
    kind = column_kind(series)
    nulls = int(series.isna().sum())
    present = series.dropna()
    low = high = None
    categories = None
    if kind in ("int", "float") and len(present):
        low, high = _native(present.min()), _native(present.max())
    elif kind == "datetime" and len(present):
        low, high = present.min().isoformat(), present.max().isoformat()
    elif kind == "category":
        categories = [_native(value) for value in series.dtype.categories]
    elif kind == "string":
        distinct = present.astype(str).unique()
        if len(distinct) <= MAX_CATEGORIES:
            categories = sorted(distinct.tolist())
    return ColumnSchema(
        name=name,
        kind=kind,
        dtype=str(series.dtype),
        nullable=nulls > 0,
        null_count=nulls,
        min=low,
        max=high,
        categories=categories,
    )


def _infer_target(target: pandas.Series, task: str | None) -> TargetSchema:
    kind = column_kind(target)
    name = str(target.name) if target.name is not None else "target"
    base: dict[str, Any] = {"name": name, "kind": kind, "dtype": str(target.dtype)}
    present = target.dropna()
    if task == "regression" or (task is None and kind == "float"):
        if len(present) == 0:
            return TargetSchema(**base)
        values = present.astype(float)
        return TargetSchema(
            **base,
            mean=_native(values.mean()),
            std=_native(values.std(ddof=0)),
            min=_native(values.min()),
            max=_native(values.max()),
        )
    counts = present.astype(str).value_counts().sort_index()
    return TargetSchema(**base, classes={str(key): int(count) for key, count in counts.items()})


def _native(value: Any) -> Any:
    """A numpy scalar as a plain JSON value; infinities and NaN become None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
