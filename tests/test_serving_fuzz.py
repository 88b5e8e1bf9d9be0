"""Hypothesis throws malformed requests at a real server process: never a 5xx, and it stays up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _serving import COLUMNS, Server, new_registry, register, serve_table, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from mlinfra.serving._app import LARGE_BODY_BYTES

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)
names = st.sampled_from([*COLUMNS, "x", "", "predict"]) | st.text(max_size=6)
rows = st.lists(st.lists(scalars, max_size=6) | json_values, max_size=6)
mlflow_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "dataframe_split": st.fixed_dictionaries(
                {"data": rows}, optional={"columns": st.lists(names, max_size=6) | json_values}
            )
        }
    ),  # fmt: skip
    st.fixed_dictionaries(
        {
            "dataframe_records": st.lists(
                st.dictionaries(names, scalars, max_size=6) | json_values, max_size=5
            )
        }
    ),  # fmt: skip
    st.fixed_dictionaries({"instances": rows | json_values}),
    st.fixed_dictionaries({"inputs": st.dictionaries(names, st.lists(scalars, max_size=4)) | rows}),
)
tensors = st.fixed_dictionaries(
    {
        "name": names | json_values,
        "shape": st.lists(st.integers(min_value=-2, max_value=10**12), max_size=3) | json_values,
        "datatype": st.sampled_from(
            ["FP64", "FP32", "FP16", "INT64", "INT8", "BOOL", "BYTES", "UINT8", "UINT64", "fp64"]
        ),
        "data": rows | st.lists(scalars, max_size=12),
    },
    optional={"parameters": json_values},
)
v2_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"inputs": st.lists(tensors, max_size=5)},
        optional={"id": json_values, "outputs": st.lists(json_values, max_size=3)},
    ),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    registry = new_registry(tmp_path_factory.mktemp("fuzz") / "registry")
    register(registry, LogisticRegression(max_iter=500))
    server = start_server(registry, extra=("--max-body-bytes", str(LARGE_BODY_BYTES * 2)))
    try:
        server.wait_generation(serve_table(registry, "dev", stable=1).generation)
        yield server
    finally:
        server.stop()


def _send(server: Server, path: str, body: object, large: bool) -> int:
    text = json.dumps(body)  # NaN and Infinity as Python writes them: JSON-ish, as clients err
    if large:  # the same JSON, answered in a worker thread
        text += " " * LARGE_BODY_BYTES
    return server.post(path, content=text, headers={"content-type": "application/json"}).status_code


@FUZZ
@given(body=mlflow_bodies, large=st.booleans())
def test_fuzzed_mlflow_requests_never_get_a_5xx(server: Server, body: object, large: bool) -> None:
    assert _send(server, "/invocations", body, large) < 500


@FUZZ
@given(
    body=v2_bodies,
    version=st.sampled_from(["", "/versions/1", "/versions/v1", "/versions/²"]),
    large=st.booleans(),
)
def test_fuzzed_v2_requests_never_get_a_5xx(
    server: Server, body: object, version: str, large: bool
) -> None:
    assert _send(server, f"/v2/models/iris{version}/infer", body, large) < 500


@FUZZ
@given(
    raw=st.binary(max_size=300),
    path=st.sampled_from(["/invocations", "/v2/models/iris/infer"]),
    large=st.booleans(),
)
def test_fuzzed_raw_bytes_never_get_a_5xx(
    server: Server, raw: bytes, path: str, large: bool
) -> None:
    content = raw + b" " * LARGE_BODY_BYTES if large else raw
    assert server.post(path, content=content).status_code < 500


def test_server_is_still_up_and_right_after_the_fuzzing(server: Server, tmp_path: Path) -> None:
    assert server.process.poll() is None
    assert server.get("/v2/health/ready").status_code == 200
    answer = server.post("/invocations", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.json() == {"predictions": [0]}
    metrics = server.get("/metrics").text
    assert 'code="500"' not in metrics
