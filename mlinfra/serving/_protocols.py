"""Request and response bodies of the two protocols, turned into named columns and back.

Open Inference Protocol v2 (KServe, Seldon MLServer): one tensor per column, or a single
`[rows, columns]` tensor in the schema's column order. MLflow scoring: `dataframe_split`,
`dataframe_records`, `instances` and `inputs`; plain rows of values are taken in the schema's
column order, as KServe v1 clients send them. Structure errors are 400/422 naming the field;
the values themselves are checked against the schema by `_schema`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..monitoring._ids import REQUEST_ID_RULE, valid_request_id
from ._http import HTTPProblem, shortened

if TYPE_CHECKING:
    from ._loading import ServedModel

__all__ = [
    "Decoded",
    "LabelsById",
    "decode_feedback",
    "decode_mlflow",
    "decode_v2",
    "encode_mlflow",
    "encode_v2",
    "v2_datatype",
    "v2_metadata",
    "version_number",
]

Columns = dict[str, list[Any]]
_MAX_VERSION_DIGITS = 18  # any registry number fits; int() of a 5,000-digit string would raise
OUTPUTS = ("predict", "predict_proba")
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass(frozen=True)
class _Datatype:
    """What a tensor's values may be: the JSON types that fit and, if bounded, the range."""

    types: tuple[type, ...]
    low: float = -math.inf
    high: float = math.inf
    bounded: bool = False  # integers, and FP16 and FP32 (finite, within range)
    numeric: bool = True  # its values convert to float64 as a float column's do

    def check(self, data: list[Any], name: str, datatype: str) -> None:
        """A 422 naming the input and datatype for the first value that does not fit."""
        types, low, high = self.types, self.low, self.high
        if self.bounded:  # a hot path: one inline test per value
            bad = (v for v in data if type(v) not in types or not low <= v <= high)
        else:
            bad = (v for v in data if type(v) not in types)
        value = next(bad, _NONE)
        if value is _NONE:
            return
        if type(value) not in types:
            raise _problem(f"input {name!r}: {shortened(value)} is not {datatype}", name)
        raise _problem(
            f"input {name!r}: {shortened(value)} is outside the range of {datatype} "
            f"({low} to {high})",
            name,
        )


_NONE = object()
_NUMBERS = (int, float)
_V2_TYPES = {
    "BOOL": _Datatype((bool,), numeric=False),
    **{f"UINT{b}": _Datatype((int,), 0, 2**b - 1, True) for b in (8, 16, 32, 64)},
    **{
        f"INT{b}": _Datatype((int,), -(2 ** (b - 1)), 2 ** (b - 1) - 1, True)
        for b in (8, 16, 32, 64)
    },
    "FP16": _Datatype(_NUMBERS, -65504.0, 65504.0, True),
    "FP32": _Datatype(_NUMBERS, -3.4028234663852886e38, 3.4028234663852886e38, True),
    "FP64": _Datatype(_NUMBERS),  # NaN, infinity and huge integers are refused by the schema
    "BYTES": _Datatype((str,), numeric=False),
}


@dataclass(frozen=True)
class Decoded:
    """A request's rows as named columns, which outputs the caller asked for, and the id it
    gave itself (v2 `id`), if any."""

    columns: Columns
    rows: int
    outputs: tuple[str, ...] = ("predict",)
    id: str | None = None
    matrix: list[Any] | None = None
    """A v2 `[rows, columns]` tensor's values, row after row, when its datatype is a number's
    (checked): what `ServedModel.inputs` turns into one array at once where every column is a
    float."""


def _problem(message: str, field: str | None = None) -> HTTPProblem:
    return HTTPProblem(422, message, field=field) if field else HTTPProblem(422, message)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HTTPProblem(400, f"{what} must be a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _problem(f"{what} must be a JSON array", what)
    return value


# --- MLflow scoring ------------------------------------------------------------------------


def _rows_required(decoded: Decoded) -> Decoded:
    if decoded.rows == 0:
        raise _problem("the request has no rows to predict")
    return decoded


def decode_mlflow(body: Any, model: ServedModel) -> Decoded:
    return _rows_required(_decode_mlflow(body, model))


def _decode_mlflow(body: Any, model: ServedModel) -> Decoded:
    body = _mapping(body, "the request body")
    keys = [key for key in body if key in _MLFLOW_KEYS]
    unknown = sorted(set(body) - set(_MLFLOW_KEYS))
    if unknown:
        hint = "; params are not supported for scikit-learn models" if "params" in unknown else ""
        raise HTTPProblem(
            400, f"unknown field {unknown[0]!r}: use one of {', '.join(_MLFLOW_KEYS)}{hint}"
        )
    if len(keys) != 1:
        raise HTTPProblem(400, f"the body needs exactly one of {', '.join(_MLFLOW_KEYS)}")
    key = keys[0]
    value = body[key]
    names = model.schema.names
    if key == "dataframe_split":
        split = _mapping(value, "dataframe_split")
        data = _list(split.get("data"), "dataframe_split.data")
        columns = split.get("columns", names)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise _problem("dataframe_split.columns must be an array of names", "columns")
        return Decoded(_from_rows(data, columns, "dataframe_split.data"), len(data))
    if key == "dataframe_records":
        records = _list(value, "dataframe_records")
        return Decoded(_from_records(records, names, "dataframe_records"), len(records))
    if isinstance(value, dict):  # columnar: {"column": [values...]}
        return _from_columnar(value, names, key)
    rows = _list(value, key)
    if rows and all(isinstance(row, dict) for row in rows):
        return Decoded(_from_records(rows, names, key), len(rows))
    if len(names) == 1 and all(not isinstance(row, list | dict) for row in rows):
        return Decoded({names[0]: rows}, len(rows))
    return Decoded(_from_rows(rows, names, key), len(rows))


def encode_mlflow(
    _body: Any, _model: ServedModel, outputs: dict[str, Any], _request_id: str
) -> dict[str, Any]:
    return {"predictions": outputs["predict"]}  # the id is in the x-request-id header


# --- Open Inference Protocol v2 -------------------------------------------------------------


def decode_v2(body: Any, model: ServedModel) -> Decoded:
    return _rows_required(_decode_v2(body, model))


def _decode_v2(body: Any, model: ServedModel) -> Decoded:
    body = _mapping(body, "the request body")
    request_id = body.get("id")
    if request_id is not None and not (
        isinstance(request_id, str) and valid_request_id(request_id)
    ):
        raise _problem(f"id must be a string of {REQUEST_ID_RULE}", "id")
    tensors = _list(body.get("inputs"), "inputs")
    if not tensors:
        raise _problem("inputs is empty", "inputs")
    decoded = [_tensor(t, i) for i, t in enumerate(tensors)]
    outputs = _requested_outputs(body.get("outputs"), model)
    names = model.schema.names
    by_name = {name: (shape, data) for name, shape, data, _ in decoded}
    if len(decoded) == 1 and decoded[0][0] not in names:
        name, shape, data, numeric = decoded[0]
        if len(shape) != 2 or shape[1] != len(names):
            raise _problem(
                f"input {name!r} has shape {shape}; a single tensor must be "
                f"[rows, {len(names)}] with columns {', '.join(names)}",
                name,
            )
        width = shape[1]
        split = {column: data[i::width] for i, column in enumerate(names)}
        matrix = data if numeric else None  # BOOL and BYTES values are checked column by column
        return Decoded(split, shape[0], outputs, request_id, matrix=matrix)
    columns: Columns = {}
    count = None
    for column in names:
        if column not in by_name:
            raise _problem(f"missing input {column!r}", column)
        shape, data = by_name[column]
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise _problem(
                f"input {column!r} has shape {shape}; expected [rows] or [rows, 1]", column
            )
        if count is not None and shape[0] != count:
            raise _problem(f"input {column!r} has {shape[0]} rows, others have {count}", column)
        count = shape[0]
        columns[column] = data
    return Decoded(columns, count or 0, outputs, request_id)


def _tensor(tensor: Any, index: int) -> tuple[str, list[int], list[Any], bool]:
    """One input tensor checked for structure: (name, shape, flat data of the declared type,
    whether that type is a number's)."""
    where = f"inputs[{index}]"
    tensor = _mapping(tensor, where)
    name = tensor.get("name")
    if not isinstance(name, str):
        raise _problem(f"{where}.name must be a string", f"{where}.name")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _problem(f"input {name!r}: shape must be an array of non-negative integers", name)
    datatype = tensor.get("datatype")
    kind = _V2_TYPES.get(datatype) if isinstance(datatype, str) else None
    if kind is None:
        raise _problem(f"input {name!r}: datatype must be one of {', '.join(_V2_TYPES)}", name)
    data = _flatten(tensor.get("data"), name)
    if len(data) != math.prod(shape):
        raise _problem(
            f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {len(data)}", name
        )
    kind.check(data, name, datatype)
    return name, shape, data, kind.numeric


def _flatten(data: Any, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise _problem(f"input {name!r}: data must be an array", name)
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative, so that deeply nested junk cannot exhaust the stack
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _requested_outputs(requested: Any, model: ServedModel) -> tuple[str, ...]:
    if requested is None:
        return ("predict",)
    names = []
    for index, item in enumerate(_list(requested, "outputs")):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in model.output_names:
            raise _problem(
                f"outputs[{index}]: unknown output {name!r}; this model has "
                f"{', '.join(model.output_names)}",
                "outputs",
            )
        names.append(name)
    return tuple(names) or ("predict",)


def encode_v2(
    _body: dict[str, Any], model: ServedModel, outputs: dict[str, Any], request_id: str
) -> dict[str, Any]:
    tensors = []
    for name, values in outputs.items():
        tensors.append(
            {
                "name": name,
                "shape": list(values.shape),
                "datatype": v2_datatype(values.dtype),
                "data": values.ravel(),  # json_response turns it into a list
            }
        )
    return {
        "model_name": model.name,
        "model_version": str(model.version),
        "id": request_id,  # the request's own, or the one the server gave it
        "outputs": tensors,
    }


def v2_datatype(dtype: Any) -> str:
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'U' if kind == 'u' else ''}INT{size * 8}"
    if kind == "f":
        return f"FP{size * 8}"
    return "BYTES"


def v2_metadata(model: ServedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": "sklearn",
        "inputs": [
            {"name": column.name, "datatype": column.v2_datatype, "shape": [-1]}
            for column in model.schema.columns
        ],
        "outputs": [
            {"name": name, "datatype": _output_datatype(model, name), "shape": [-1]}
            for name in model.output_names
        ],
    }


def _output_datatype(model: ServedModel, output: str) -> str:
    classes = getattr(model.estimator, "classes_", None)
    if output == "predict" and classes is not None:
        return v2_datatype(classes.dtype)
    return "FP64"


# --- labels fed back ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelsById:
    """`{"request_ids": [...], "labels": [...]}`: the truth for logged predictions, joined by id
    (a row of a multi-row request is `<id>/<row>`)."""

    request_ids: list[str]
    labels: list[Any]


def decode_feedback(body: Any) -> tuple[int, list[Any], list[Any]] | LabelsById:
    """`{"version": 3, "predictions": [...], "labels": [...]}`: what a version said, and the truth;
    or labels by request id (`LabelsById`).

    The version is the `x-model-version` header (or `model_version`) of the answer being judged.
    """
    body = _mapping(body, "the request body")
    if "request_ids" in body:
        return _labels_by_id(body)
    version = version_number(str(body.get("version", "")))
    if version is None:
        raise _problem("version must be the version number that answered", "version")
    predictions = _list(body.get("predictions"), "predictions")
    labels = _list(body.get("labels"), "labels")
    if len(predictions) != len(labels) or not labels:
        raise _problem("predictions and labels must be equally long, and not empty", "labels")
    for name, values in (("predictions", predictions), ("labels", labels)):
        _plain(values, name)
    return version, predictions, labels


def _labels_by_id(body: dict[str, Any]) -> LabelsById:
    extra = sorted(set(body) - {"request_ids", "labels"})
    if extra:
        raise HTTPProblem(
            400,
            f"unknown field {shortened(extra[0])!r}: labels by id take request_ids and labels "
            "only; or send version, predictions and labels",
        )
    ids = _list(body.get("request_ids"), "request_ids")
    labels = _list(body.get("labels"), "labels")
    if len(ids) != len(labels) or not labels:
        raise _problem("request_ids and labels must be equally long, and not empty", "labels")
    if not all(isinstance(i, str) and valid_request_id(i) for i in ids):
        raise _problem(f"request_ids must be strings of {REQUEST_ID_RULE}", "request_ids")
    _plain(labels, "labels")
    return LabelsById(ids, labels)


def _plain(values: list[Any], name: str) -> None:
    if not all(isinstance(value, str | int | float) for value in values):
        raise _problem(f"{name} must hold plain values", name)


def version_number(text: str) -> int | None:
    """`3` or `v3` as a number; None for anything else."""
    digits = text.removeprefix("v")
    if digits.isascii() and digits.isdigit() and len(digits) <= _MAX_VERSION_DIGITS:
        return int(digits)
    return None


# --- shared shapes ---------------------------------------------------------------------------


def _from_rows(rows: list[Any], names: list[str], where: str) -> Columns:
    if len(set(names)) != len(names):
        raise _problem(f"{where}: column names repeat", "columns")
    width = len(names)
    columns: Columns = {name: [] for name in names}
    appenders = [columns[name].append for name in names]
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise _problem(
                f"{where}[{index}] has {got}; expected {width} values for {', '.join(names)}",
                where,
            )
        for append, value in zip(appenders, row, strict=True):
            append(value)
    return columns


def _from_records(records: list[Any], names: list[str], where: str) -> Columns:
    columns: Columns = {name: [] for name in names}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _problem(f"{where}[{index}] must be an object of column: value", where)
        for name in names:
            if name not in record:
                raise _problem(f"{where}[{index}] has no column {name!r}", name)
            columns[name].append(record[name])
    return columns


def _from_columnar(value: dict[str, Any], names: list[str], where: str) -> Decoded:
    columns: Columns = {}
    count = None
    for name in names:
        if name not in value:
            raise _problem(f"{where} has no column {name!r}", name)
        data = _list(value[name], f"{where}.{name}")
        if count is not None and len(data) != count:
            raise _problem(f"{where}.{name} has {len(data)} values, others have {count}", name)
        count = len(data)
        columns[name] = data
    return Decoded(columns, count or 0)
