"""The input schema stored with a model version, and the check of a request's columns against it.

Everything a request can get wrong is caught here with a 422 naming the column and row, before the
model sees it: a model raising on bad input would otherwise be a 5xx.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._http import PIECE_ITEMS, HTTPProblem, shortened
from ._protocols import Columns

__all__ = ["Column", "InputSchema"]

Kind = Literal["float", "int", "bool", "string", "category", "datetime"]
_V2 = {"float": "FP64", "int": "INT64", "bool": "BOOL"}
_INT_LIMIT = 2**63
_DESCRIBED = {
    "float": "a number",
    "int": "an integer",
    "bool": "true or false",
    "string": "a string",
    "datetime": "an ISO 8601 date-time string",
    "category": "a string or number",
}
_SCALARS = (str, int, float, bool)
_LISTED = 20  # categories an error names


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False
    categories: tuple[Any, ...] | None = None

    @property
    def v2_datatype(self) -> str:
        return _V2.get(self.kind, "BYTES")

    def array(self, values: list[Any]) -> np.ndarray:
        """The column as a numpy array, or a 422 naming the first bad row."""
        kind = self.kind
        if kind in ("float", "int"):
            if all(type(v) is float or type(v) is int for v in values):
                try:
                    array = _floats(values)
                except OverflowError:  # an integer beyond float range: named by _checked
                    return self._checked(values)
                if np.isfinite(array).all() and (kind == "float" or _integral(array)):
                    return array if kind == "float" else array.astype(np.int64)
            return self._checked(values)
        if kind == "bool" and all(type(v) is bool for v in values):
            return np.asarray(values, dtype=np.bool_)
        if kind in ("string", "datetime") and all(type(v) is str for v in values):
            return _objects(values)
        return self._checked(values)

    def _checked(self, values: list[Any]) -> np.ndarray:
        """The slow path: nulls where allowed, and the first bad value named."""
        known = frozenset(self.categories or ()) if self.kind == "category" else None
        for row, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                if not self.nullable:
                    raise self._refuse(row, "is null; the model was trained without nulls here")
            elif not self._accepts(value):
                raise self._refuse(row, f"{shortened(value, 40)} is not {_DESCRIBED[self.kind]}")
            elif known and value not in known:
                # pandas would make it NaN, which some models predict on without a word
                raise self.unknown(row, value)
        if self.kind not in ("float", "int", "bool"):
            return _objects(values)
        floats = [math.nan if v is None else float(v) for v in values]
        dtype = np.bool_ if self.kind == "bool" and not self.nullable else np.float64
        return np.asarray(floats, dtype=dtype)

    def _accepts(self, value: Any) -> bool:
        kind = self.kind
        if kind in ("string", "datetime"):
            return isinstance(value, str)
        if kind == "category":
            return isinstance(value, _SCALARS)
        if kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if isinstance(value, int):
            return abs(value) < _INT_LIMIT
        return math.isfinite(value) and (kind == "float" or value.is_integer())

    def _refuse(self, row: int, why: str) -> HTTPProblem:
        return HTTPProblem(422, f"column {self.name!r} row {row}: {why}", field=self.name)

    def unknown(self, row: int, value: Any) -> HTTPProblem:
        """A 422 for a value outside the categories the model was trained on, naming them."""
        categories = self.categories or ()
        named = ", ".join(shortened(c, 40) for c in categories[:_LISTED])
        if len(categories) > _LISTED:
            named += f" and {len(categories) - _LISTED} more"
        why = f"{shortened(value, 40)} is not a category the model knows ({named})"
        return self._refuse(row, why)


def _floats(values: list[Any]) -> np.ndarray:
    """`np.asarray(values, float64)`, a piece at a time for a long column (a few ms of GIL each)."""
    if len(values) <= PIECE_ITEMS:
        return np.asarray(values, dtype=np.float64)
    array = np.empty(len(values), dtype=np.float64)
    for start in range(0, len(values), PIECE_ITEMS):
        array[start : start + PIECE_ITEMS] = values[start : start + PIECE_ITEMS]
    return array


def _integral(array: np.ndarray) -> bool:
    return bool((array == np.floor(array)).all() and (np.abs(array) < _INT_LIMIT).all())


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass(frozen=True)
class InputSchema:
    """The columns a model takes, in the order it was trained on."""

    columns: tuple[Column, ...]

    @functools.cached_property
    def names(self) -> list[str]:
        """The column names in order (read on every request: made once; never to be changed)."""
        return [column.name for column in self.columns]

    @classmethod
    def from_document(cls, document: Any) -> InputSchema:
        """Read the "schema" document the registry stores with a version."""
        columns = []
        for entry in document["columns"]:
            categories = entry.get("categories")
            columns.append(
                Column(
                    name=str(entry["name"]),
                    kind=entry["kind"],
                    nullable=bool(entry.get("nullable", False)),
                    categories=tuple(categories) if categories else None,
                )
            )
        return cls(tuple(columns))

    def arrays(self, columns: Columns) -> list[np.ndarray]:
        """The request's columns in schema order, each checked; extra columns are ignored."""
        arrays = []
        for column in self.columns:
            values = columns.get(column.name)
            if values is None:
                raise HTTPProblem(422, f"missing column {column.name!r}", field=column.name)
            arrays.append(column.array(values))
        return arrays

    def frame(self, arrays: list[np.ndarray]) -> Any:
        """A DataFrame with the training dtypes, for models that need column names or categories."""
        import pandas as pd

        data = {}
        for column, array in zip(self.columns, arrays, strict=True):
            if column.kind == "category":
                data[column.name] = pd.Categorical(array, categories=column.categories)
            elif column.kind == "datetime":
                try:
                    data[column.name] = pd.to_datetime(array, format="ISO8601")
                except (ValueError, TypeError) as exc:
                    raise HTTPProblem(
                        422, f"column {column.name!r}: {exc}", field=column.name
                    ) from None
            else:
                data[column.name] = array
        return pd.DataFrame(data, copy=False)

    def unknown_category(self, columns: Columns) -> HTTPProblem | None:
        """Why a model refused valid-looking input, if a value is a category it never saw."""
        for column in self.columns:
            if column.categories is None:
                continue
            for row, value in enumerate(columns.get(column.name, ())):
                if value is not None and value not in column.categories:
                    return column.unknown(row, value)
        return None
