"""A v2 `[rows, columns]` tensor is read into the model's array in one call where every column
is a float: the same array, bit for bit, and the same refusals, as checking it column by column.
In process, on a real registered model (the server's routes are tested in test_serving)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _serving import COLUMNS, new_registry, register
from hypothesis import event, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from mlinfra.serving._http import HTTPProblem
from mlinfra.serving._loading import ServedModel, load_served_model
from mlinfra.serving._protocols import decode_v2


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    root = new_registry(tmp_path_factory.mktemp("inputs") / "registry")
    register(root, LogisticRegression(max_iter=500))
    return load_served_model(root, "iris", 1)


numbers = st.floats(-1e4, 1e4) | st.integers(-128, 127)
values = (
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, 2**70, -0.0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
)
datatypes = st.sampled_from(["FP64", "FP32", "FP16", "INT64", "INT8", "UINT8", "BOOL", "BYTES"])


def outcome(call):  # noqa: ANN001, ANN201
    """The array `call()` gives, as bytes, or the refusal it raises."""
    try:
        array = call()
    except HTTPProblem as problem:
        return ("refused", problem.status, problem.body["error"])
    return ("array", array.dtype.str, array.shape, np.ascontiguousarray(array).tobytes())


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(min_value=1, max_value=5),
    datatype=datatypes,
    data=st.data(),
)
def test_one_array_path_equals_the_column_path(
    model: ServedModel, rows: int, datatype: str, data: st.DataObject
) -> None:
    flat = data.draw(st.lists(numbers, min_size=rows * 4, max_size=rows * 4))
    if data.draw(st.booleans()):  # one value that may be refused, anywhere
        flat[data.draw(st.integers(0, len(flat) - 1))] = data.draw(values)
    body = {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": datatype, "data": flat}]}
    try:
        decoded = decode_v2(body, model)
    except HTTPProblem:
        return  # refused before any column is read, whichever path follows
    assert (decoded.matrix is not None) == (datatype not in ("BOOL", "BYTES"))
    fast = outcome(lambda: model.inputs(decoded.columns, decoded.matrix))
    by_column = outcome(lambda: model.inputs(decoded.columns))
    event(f"{fast[0]}, matrix {'given' if decoded.matrix is not None else 'none'}")
    assert fast == by_column


def test_the_one_array_path_is_taken_for_finite_numbers(model: ServedModel) -> None:
    flat = [5.1, 3.5, 1.4, 0.2, 6, 2.9, 4.5, 1.5]
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": flat}]}
    decoded = decode_v2(body, model)
    assert decoded.matrix is flat and list(decoded.columns) == COLUMNS
    array = model.inputs(decoded.columns, decoded.matrix)
    assert array.shape == (2, 4) and array.tolist() == [flat[:4], [float(v) for v in flat[4:]]]
    refused = [5.1, 3.5, math.inf, 0.2]
    body["inputs"][0].update(shape=[1, 4], data=refused)
    decoded = decode_v2(body, model)
    with pytest.raises(HTTPProblem, match="row 0"):
        model.inputs(decoded.columns, decoded.matrix)
