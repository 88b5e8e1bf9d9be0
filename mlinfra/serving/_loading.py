"""A registered version made ready to serve: verified, loaded, given the fastest safe input path.

scikit-learn spends most of a one-row predict checking its input: the iris pipeline takes about
0.7 ms on a one-row DataFrame and 0.2 ms on a numpy array with the checks we already made (finite
values) switched off. For numeric inputs we therefore serve a "twin": a copy of the model that has
forgotten its training column names, with a Pipeline's steps called in turn, fed a numpy array in
the schema's order. It is used only after predicting exactly like the original on the version's
reference sample.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ._http import PIECE_ITEMS
from ._protocols import OUTPUTS, Columns
from ._schema import InputSchema

__all__ = ["ServedModel", "load_served_model", "value_counts"]

log = logging.getLogger("mlinfra.serving")
_MAX_CLASSES = 50  # distinct predicted values tracked per variant before the rest count as "other"
_PROBE_ROWS = 64


class ServedModel:
    """One version as the server uses it: input checks, prediction, and what it predicted."""

    def __init__(
        self,
        *,
        name: str,
        version: int,
        estimator: Any,
        schema: InputSchema,
        reference: Any | None = None,
        task: str = "classification",
    ) -> None:
        self.name = name
        self.version = version
        self.task = task
        self.estimator = estimator
        self.schema = schema
        self.reference = reference
        self.output_names = tuple(o for o in OUTPUTS if hasattr(estimator, o))
        self._fast = _array_twin(estimator, schema, reference)
        self._all_floats = all(column.kind == "float" for column in schema.columns)

    def inputs(self, columns: Columns, matrix: list[Any] | None = None) -> Any:
        """The request's checked columns in the form the model predicts fastest on. `matrix`,
        the same values row after row (`Decoded.matrix`), is read in one call where it can be."""
        if matrix is not None and self._fast is not None and self._all_floats:
            array = _finite_matrix(matrix, len(self.schema.columns))
            if array is not None:
                return array
        arrays = self.schema.arrays(columns)
        if self._fast is not None:
            return np.column_stack(arrays) if arrays else np.empty((0, 0))
        return self.schema.frame(arrays)

    def infer(self, inputs: Any, outputs: Sequence[str], columns: Columns) -> dict[str, np.ndarray]:
        """Run the model once for all rows; a refusal caused by the input is a 422, not a 5xx."""
        if isinstance(inputs, np.ndarray):
            estimator = self._fast
            _assume_finite_here()
        else:
            estimator = self.estimator
        try:
            return {name: np.asarray(getattr(estimator, name)(inputs)) for name in outputs}
        except Exception:
            problem = self.schema.unknown_category(columns)
            if problem is not None:
                raise problem from None
            raise

    def decile_edges(self) -> np.ndarray | None:
        """Edges splitting this model's predictions on its reference sample into ten bins."""
        if self.reference is None:
            return None
        predictions = np.asarray(self.estimator.predict(self.reference[self.schema.names]))
        if predictions.dtype.kind != "f" or predictions.size < 10:
            return None
        return np.unique(np.quantile(predictions, np.linspace(0.1, 0.9, 9)))


def value_counts(outputs: dict[str, np.ndarray], bin_edges: np.ndarray | None) -> dict[str, int]:
    """Predicted values for the distribution check: classes, or bins of a regression.

    Regression bins come from the stable version's deciles, so both variants count alike.
    """
    predictions = outputs.get("predict")
    if predictions is None or predictions.size == 0:
        return {}
    values = predictions.ravel()
    if values.dtype.kind == "f":
        if bin_edges is None:
            return {"all": int(values.size)}
        counts = np.bincount(np.searchsorted(bin_edges, values, side="right"))
        return {f"q{bin_}": int(count) for bin_, count in enumerate(counts) if count}
    tracked: Counter[str] = Counter()
    for start in range(0, values.size, PIECE_ITEMS):  # a few ms of GIL each (large answers)
        tracked.update(map(str, values[start : start + PIECE_ITEMS].tolist()))
    if len(tracked) > _MAX_CLASSES:
        kept = dict(sorted(tracked.items())[:_MAX_CLASSES])
        kept["other"] = sum(tracked.values()) - sum(kept.values())
        return kept
    return dict(tracked)


def _finite_matrix(values: list[Any], width: int) -> np.ndarray | None:
    """`values` as a `[rows, width]` float64 array, if all are finite numbers; else None, and
    the columns are checked one by one, which names the bad one. The values are numbers
    already (a v2 FP tensor's datatype check), so each converts as it would in its column."""
    if len(values) > PIECE_ITEMS or width == 0:
        return None  # a long one is converted a piece at a time, column by column
    try:
        array = np.asarray(values, dtype=np.float64)
    except (OverflowError, TypeError, ValueError):
        return None
    if array.ndim != 1 or not np.isfinite(array).all():
        return None
    return array.reshape(-1, width)


_FINITE_THREADS: set[int] = set()


def _assume_finite_here() -> None:
    """Skip scikit-learn's finiteness checks in this thread: `_schema` refused NaN and infinity.

    scikit-learn's configuration is per thread, hence once per thread that predicts.
    """
    thread = threading.get_ident()
    if thread not in _FINITE_THREADS:
        import sklearn

        sklearn.set_config(assume_finite=True)
        _FINITE_THREADS.add(thread)


class _Steps:
    """A fitted Pipeline called step by step, without its per-call routing and tag checks."""

    def __init__(self, pipeline: Any) -> None:
        steps = [step for _, step in pipeline.steps if step not in (None, "passthrough")]
        self.transforms = [step.transform for step in steps[:-1]]
        self.final = steps[-1]

    def _transformed(self, X: np.ndarray) -> Any:
        for transform in self.transforms:
            X = transform(X)
        return X

    def predict(self, X: np.ndarray) -> Any:
        return self.final.predict(self._transformed(X))

    def predict_proba(self, X: np.ndarray) -> Any:
        return self.final.predict_proba(self._transformed(X))


def _array_twin(estimator: Any, schema: InputSchema, reference: Any | None) -> Any | None:
    """A copy of `estimator` that predicts on numpy arrays, if it provably predicts the same."""
    if reference is None or any(c.kind not in ("float", "int", "bool") for c in schema.columns):
        return None
    from sklearn.pipeline import Pipeline

    twin = copy.deepcopy(estimator)
    _forget_column_names(twin, set())
    if type(twin) is Pipeline and twin.steps[-1][1] not in (None, "passthrough"):
        twin = _Steps(twin)
    probe = reference[schema.names].head(_PROBE_ROWS)
    try:
        same = np.array_equal(
            np.asarray(estimator.predict(probe)),
            np.asarray(twin.predict(probe.to_numpy(dtype=np.float64))),
        )
    except Exception as exc:  # e.g. a ColumnTransformer that selects columns by name
        log.info("serving %s on DataFrames: %s", type(estimator).__name__, exc)
        return None
    return twin if same else None


def _forget_column_names(obj: Any, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, list | tuple):
        for item in obj:
            _forget_column_names(item, seen)
        return
    if isinstance(obj, dict):
        for item in obj.values():
            _forget_column_names(item, seen)
        return
    if not hasattr(obj, "get_params"):
        return
    attributes = vars(obj)
    attributes.pop("feature_names_in_", None)
    for value in attributes.values():
        _forget_column_names(value, seen)


def load_served_model(registry_root: Path, model: str, version: int) -> ServedModel:
    """Load a version through the registry, which verifies its sha256 and its types."""
    from ..registry import Registry

    with Registry.open(registry_root) as registry:
        record = registry.get(model, version)
        estimator = registry.load(record)
        schema_document = registry.schema(record)
        reference = registry.reference_sample(record)
    if schema_document is None:
        raise ValidationError(f"{record.ref} has no stored input schema; it cannot be served")
    schema = InputSchema.from_document(schema_document)
    return ServedModel(
        name=model,
        version=version,
        estimator=estimator,
        schema=schema,
        reference=reference,
        task=record.task,
    )
