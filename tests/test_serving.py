"""The model server as a real process on loopback, serving real scikit-learn models from a real
registry: both protocols, validation, limits, metrics, auth, hot swaps of the deployment table."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from _serving import (
    COLUMNS,
    FEATURES,
    ROW,
    TARGET,
    Server,
    new_registry,
    register,
    serve_table,
    start_server,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from mlinfra.registry import Registry
from mlinfra.serving import deployment_dir, read_acks
from mlinfra.serving._app import LARGE_BODY_BYTES

MAX_BODY = 200_000
ROWS = FEATURES.iloc[[0, 60, 120]].to_numpy().tolist()  # one of each class


COLOURED = FEATURES.assign(colour=["red", "green", "blue"] * 50)
KINDS = FEATURES.assign(colour=pd.Categorical(["red", "green", "blue"] * 50))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_registry(tmp_path_factory.mktemp("serving") / "registry")
    register(root, LogisticRegression(max_iter=500))  # iris v1
    register(root, DecisionTreeClassifier(max_depth=2, random_state=0))  # iris v2
    register(root, DecisionTreeClassifier(max_depth=3, random_state=0))  # iris v3, to tamper with
    encoder = make_column_transformer(
        (OneHotEncoder(handle_unknown="error"), ["colour"]), remainder="passthrough"
    )
    pipeline = make_pipeline(encoder, LogisticRegression(max_iter=1000))
    register(root, pipeline, name="colours", features=COLOURED)  # colours v1
    lenient = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["colour"]), remainder="passthrough"
    )
    # A pandas category column, and a model that would predict on an unknown one without a word.
    register(root, make_pipeline(lenient, LogisticRegression(max_iter=1000)), name="kinds",
             features=KINDS)  # fmt: skip
    register(root, LinearRegression(), name="score", target=TARGET * 1.5)  # score v1, regression
    return root


@pytest.fixture(scope="module")
def server(registry: Path) -> Server:
    """One worker, a small body limit; tests that change its table put iris v1 back."""
    server = start_server(registry, extra=("--max-body-bytes", str(MAX_BODY)))
    try:
        server.wait_generation(serve_table(registry, "dev", stable=1).generation)
        yield server
    finally:
        server.stop()


@pytest.fixture
def restore(server: Server, registry: Path) -> Iterator[None]:
    yield
    server.wait_generation(serve_table(registry, "dev", stable=1).generation)


@pytest.fixture(scope="module")
def guarded(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Server:
    """Two workers behind a bearer token, for env "prod" of the same registry."""
    token_file = tmp_path_factory.mktemp("secrets") / "token"
    token_file.write_text("s3cret-token\n")
    server = start_server(registry, env="prod", workers=2, extra=("--token-file", str(token_file)))
    server.client.headers["authorization"] = "Bearer s3cret-token"
    try:
        yield server
    finally:
        server.stop()


def predicted(registry: Path, version: int, rows: list[list[float]]) -> list[int]:
    """What the registered model itself says, loaded here in the test process."""
    with Registry.open(registry) as opened:
        model = opened.load(opened.get("iris", version))
    return model.predict(pd.DataFrame(rows, columns=COLUMNS)).tolist()


def test_server_without_deployment_is_live_not_ready_and_says_how_to_deploy(tmp_path: Path) -> None:
    server = start_server(new_registry(tmp_path / "registry"), env="staging")
    try:
        assert server.get("/v2/health/live").status_code == 200
        ready = server.get("/v2/health/ready")
        assert ready.status_code == 400 and ready.json()["ready"] is False
        for response in (
            server.get("/ping"),
            server.post("/invocations", json={"instances": [ROW]}),
            server.post("/v2/models/iris/infer", json={}),
        ):
            assert response.status_code == 503
            message = response.json()["error"]
            assert "no model is deployed in env 'staging'" in message
            assert "mlinfra deploy" in message
    finally:
        server.stop()


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        {"dataframe_split": {"columns": COLUMNS[::-1], "data": [r[::-1] for r in ROWS]}},
        {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]},
        {"instances": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]},
        {"instances": ROWS},  # KServe v1 rows, taken in the schema's column order
        {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}},
        {"inputs": ROWS},
    ],
    ids=[
        "split",
        "split-reordered",
        "records",
        "instances-records",
        "instances-rows",
        "inputs-columnar",
        "inputs-rows",
    ],  # fmt: skip
)
def test_mlflow_scoring_formats_answer_what_the_model_predicts(
    server: Server, registry: Path, body: dict
) -> None:
    response = server.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": predicted(registry, 1, ROWS)}
    assert response.headers["x-model-version"] == "1"


def test_open_inference_v2_tensors_per_column_and_as_one_matrix(
    server: Server, registry: Path
) -> None:
    per_column = {
        "id": "req-7",
        "inputs": [
            {"name": c, "shape": [3], "datatype": "FP64", "data": [r[i] for r in ROWS]}
            for i, c in enumerate(COLUMNS)
        ],
    }
    matrix = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP32", "data": ROWS}]}
    for path in ("/v2/models/iris/infer", "/v2/models/iris/versions/1/infer"):
        for body in (per_column, matrix):
            answer = server.post(path, json=body).json()
            assert answer["model_name"] == "iris" and answer["model_version"] == "1"
            (output,) = answer["outputs"]
            assert output == {
                "name": "predict",
                "shape": [3],
                "datatype": "INT64",
                "data": predicted(registry, 1, ROWS),
            }
    assert server.post("/v2/models/iris/infer", json=per_column).json()["id"] == "req-7"


def test_v2_outputs_can_ask_for_probabilities(server: Server) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [ROW]}],
        "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
    }
    proba, label = server.post("/v2/models/iris/infer", json=body).json()["outputs"]
    assert proba["shape"] == [1, 3] and abs(sum(proba["data"]) - 1) < 1e-9
    assert label["data"] == [0]


def test_v2_metadata_and_readiness_by_name_and_version(server: Server) -> None:
    meta = server.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert [i["name"] for i in meta["inputs"]] == COLUMNS
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert server.get("/v2/models/iris/versions/1/ready").json() == {"ready": True}
    assert server.get("/v2").json()["name"] == "mlinfra"
    assert server.get("/ping").status_code == 200
    for path in (
        "/v2/models/wine",
        "/v2/models/iris/versions/9/ready",
        "/v2/models/iris/versions/x",
        "/v2/models/iris/versions/" + "9" * 5000 + "/ready",  # beyond what int() reads
    ):
        response = server.get(path)
        assert response.status_code == 404 and "error" in response.json()


def refused_count(server: Server) -> float:
    """Prediction requests refused before a variant was chosen, as /metrics counts them."""
    lines = server.get("/metrics").text.splitlines()
    refused = [line for line in lines if line.startswith("mlinfra_requests_total{")]
    return sum(float(line.split()[-1]) for line in refused if 'model=""' in line)


def test_prediction_routes_take_post_only_and_unknown_paths_are_404(server: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    refused_before = refused_count(server)
    for path in ("/v2/models/iris/infer", "/v2/models/iris/versions/1/infer", "/invocations"):
        wrong_method = server.get(path)
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert wrong_method.json() == {"error": f"method not allowed: GET '{path}'"}
        assert server.client.put(server.url + path, json=body).status_code == 405
    for path in (
        "/v2/models/iris/infer/more",
        "/v2/models//infer",
        "/v2/models/iris/versions/1/infer/x",
    ):
        missing = server.post(path, json=body)
        assert missing.status_code == 404
        assert missing.json() == {"error": f"no such route: POST '{path}'"}
    assert refused_count(server) == refused_before  # routes that do not exist: not predictions
    wrong = server.post("/v2/models/wine/versions/1/infer", json=body)
    assert wrong.status_code == 404 and "it serves 'iris'" in wrong.json()["error"]
    unserved = server.post("/v2/models/iris/versions/7/infer", json=body)
    assert unserved.status_code == 404 and "version '7'" in unserved.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"instances": [[1, 2, "x", 4]]}, 422, "petal length (cm)"),
        ({"instances": [[1, 2, 3]]}, 422, "instances"),
        ({"instances": [[1, 2, None, 4]]}, 422, "petal length (cm)"),
        ({"instances": [[1, 2, True, 4]]}, 422, "petal length (cm)"),
        ({"instances": [[1, 2, 10**400, 4]]}, 422, "petal length (cm)"),
        ({"dataframe_records": [{"sepal length (cm)": 1}]}, 422, "sepal width (cm)"),
        (
            {"dataframe_split": {"columns": COLUMNS[:3], "data": [[1, 2, 3]]}},
            422,
            "petal width (cm)",
        ),
        ({"dataframe_split": {"columns": COLUMNS, "data": "rows"}}, 422, "dataframe_split.data"),
        ({"instances": [ROW], "params": {"a": 1}}, 400, None),
        ({"instances": [ROW], "inputs": [ROW]}, 400, None),
        ([ROW], 400, None),
    ],
)
def test_bad_mlflow_input_is_a_4xx_naming_the_field(
    server: Server, body: object, status: int, field: str | None
) -> None:
    response = server.post("/invocations", json=body)
    assert response.status_code == status, response.text
    assert response.json().get("field") == field


def test_non_finite_json_numbers_are_refused_not_predicted(server: Server) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"instances": [[5.1, 3.5, {literal}, 0.2]]}}'
        response = server.post("/invocations", content=body)
        assert response.status_code == 422 and response.json()["field"] == "petal length (cm)"


@pytest.mark.parametrize(
    ("tensor", "field"),
    [
        ({"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}, "x"),
        ({"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3]}, "x"),
        ({"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1.5, 2, 3, 4]}, "x"),
        ({"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}, "x"),
        ({"name": "x", "shape": [-1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}, "x"),
        (
            {"name": "sepal length (cm)", "shape": [1], "datatype": "FP64", "data": [1]},
            "sepal width (cm)",
        ),
        ({"shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}, "inputs[0].name"),
    ],
)
def test_bad_v2_tensor_is_a_422_naming_the_input(server: Server, tensor: dict, field: str) -> None:
    response = server.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("INT8", 1000), ("INT8", -129), ("UINT64", -1), ("UINT8", 256), ("INT64", 2**63),
     ("UINT64", 2**64), ("FP16", 70000), ("FP32", 1e39), ("FP32", float("inf"))],
)  # fmt: skip
def test_v2_values_outside_their_datatype_are_a_422_naming_input_and_datatype(
    server: Server, datatype: str, value: float
) -> None:
    tensor = {"name": "x", "shape": [1, 4], "datatype": datatype, "data": [1, 1, 1, value]}
    response = server.post("/v2/models/iris/infer", content=json.dumps({"inputs": [tensor]}))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "x"
    assert f"outside the range of {datatype}" in response.json()["error"]


def _fits(value: float, datatype: str) -> bool:
    """Whether numpy itself holds `value` in `datatype`: the oracle for the server's checks."""
    dtype = np.dtype(datatype.lower().replace("fp", "float"))
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        return isinstance(value, int) and int(limits.min) <= value <= int(limits.max)
    try:
        return math.isfinite(float(value)) and abs(float(value)) <= float(np.finfo(dtype).max)
    except OverflowError:  # an integer beyond any float
        return False


INTEGER_TYPES = [f"{kind}INT{bits}" for kind in ("", "U") for bits in (8, 16, 32, 64)]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    datatype=st.sampled_from([*INTEGER_TYPES, "FP16", "FP32"]),
    value=st.integers(-(2**65), 2**65)
    | st.sampled_from([-129, 127, 128, 255, 256, -(2**31) - 1, 2**32, 65504, 65505, 2**64 - 1])
    | st.floats(allow_nan=True, allow_infinity=True),
)  # fmt: skip
def test_v2_values_are_accepted_exactly_when_their_datatype_holds_them(
    server: Server, datatype: str, value: float
) -> None:
    tensor = {"name": "x", "shape": [1, 4], "datatype": datatype, "data": [1, 2, 3, value]}
    response = server.post("/v2/models/iris/infer", content=json.dumps({"inputs": [tensor]}))
    floats_for_integers = datatype in INTEGER_TYPES and isinstance(value, float)
    if _fits(value, datatype) and not floats_for_integers:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "x" and datatype in response.json()["error"]


def test_body_over_the_limit_is_413_and_malformed_json_400(server: Server) -> None:
    big = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0]," * (MAX_BODY // 20) + b"[1,2,3,4]]}"
    assert server.post("/invocations", content=big).status_code == 413
    chunks = (big[i : i + 4096] for i in range(0, len(big), 4096))  # no Content-Length
    assert server.post("/invocations", content=chunks).status_code == 413
    assert server.post("/invocations", content=b"{not json").status_code == 400


def test_a_thousand_rows_are_predicted_in_one_request(server: Server, registry: Path) -> None:
    rows = FEATURES.sample(1000, replace=True, random_state=0).to_numpy().tolist()
    response = server.post(
        "/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": rows}}
    )
    assert response.json()["predictions"] == predicted(registry, 1, rows)


def test_metrics_count_requests_and_predictions_by_version_and_variant(
    server: Server, registry: Path, restore: None
) -> None:
    server.wait_generation(
        serve_table(registry, "dev", stable=1, canary=2, canary_weight=50).generation
    )
    variants = Counter(
        server.post("/invocations", json={"instances": [ROW]}).headers["x-model-variant"]
        for _ in range(100)
    )
    assert 20 < variants["canary"] < 80, variants
    assert _count(server, "canary", 2) == variants["canary"]
    metrics = server.get("/metrics").text
    stable = 'model="iris",variant="stable",version="1"'
    assert f'mlinfra_predict_latency_seconds_bucket{{le="0.005",{stable}}}' in metrics
    assert (
        'mlinfra_predictions_total{model="iris",value="0",variant="canary",version="2"}' in metrics
    )
    # a version path reaches that version whatever the split says
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    pinned = server.post("/v2/models/iris/versions/2/infer", json={"inputs": [tensor]})
    assert pinned.json()["model_version"] == "2"


def _count(server: Server, variant: str, version: int, model: str = "iris") -> float:
    labels = f'code="200",model="{model}",variant="{variant}",version="{version}"'
    prefix = f"mlinfra_requests_total{{{labels}}} "
    lines = [line for line in server.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_sticky_header_keeps_a_user_on_one_variant(
    server: Server, registry: Path, restore: None
) -> None:
    table = serve_table(
        registry, "dev", stable=1, canary=2, canary_weight=50, sticky_header="x-user"
    )
    server.wait_generation(table.generation)
    seen = {}
    for user in ("ann", "bob", "cy", "dee", "eve", "fay"):
        seen[user] = {
            server.post(
                "/invocations", json={"instances": [ROW]}, headers={"x-user": user}
            ).headers["x-model-variant"]
            for _ in range(10)
        }
    assert all(len(variants) == 1 for variants in seen.values()), seen


def test_shadow_mode_answers_from_stable_and_mirrors_to_canary(
    server: Server, registry: Path, restore: None
) -> None:
    server.wait_generation(
        serve_table(registry, "dev", stable=1, canary=2, mode="shadow").generation
    )
    before = _count(server, "canary", 2)
    answers = {
        server.post("/invocations", json={"instances": [ROW]}).headers["x-model-variant"]
        for _ in range(20)
    }
    assert answers == {"stable"}
    deadline = time.monotonic() + 5  # the mirror runs after its answer went out
    while _count(server, "canary", 2) < before + 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _count(server, "canary", 2) == before + 20


def test_shadow_copy_of_a_large_request_predicts_all_its_rows(
    server: Server, registry: Path, restore: None
) -> None:
    server.wait_generation(
        serve_table(registry, "dev", stable=1, canary=2, mode="shadow").generation
    )
    rows = FEATURES.sample(3000, replace=True, random_state=1).to_numpy()
    body = {"inputs": {name: rows[:, i].tolist() for i, name in enumerate(COLUMNS)}}
    assert len(json.dumps(body)) > LARGE_BODY_BYTES  # answered in a worker thread
    before = _rows(server, "canary", 2)
    answer = server.post("/invocations", json=body)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3000
    deadline = time.monotonic() + 10  # the copy is predicted after the answer went out
    while _rows(server, "canary", 2) < before + 3000 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _rows(server, "canary", 2) == before + 3000
    assert 'code="500"' not in server.get("/metrics").text


def _rows(server: Server, variant: str, version: int) -> float:
    prefix = f'mlinfra_rows_total{{model="iris",variant="{variant}",version="{version}"}} '
    lines = [line for line in server.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_tampered_artifact_is_refused_and_the_current_version_keeps_serving(
    server: Server, registry: Path, restore: None
) -> None:
    with Registry.open(registry) as opened:
        artifact = opened.get("iris", 3).artifact_sha256
    path = registry / "artifacts" / artifact[:2] / artifact[2:]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    refused = serve_table(registry, "dev", stable=3)
    (ack,) = _settled_acks(registry, "dev", refused.generation)
    assert ack.failed == refused.generation and ack.serving == refused.generation - 1
    assert "modified after registration" in ack.error
    response = server.post("/invocations", json={"instances": [ROW]})
    assert response.status_code == 200 and response.headers["x-model-version"] == "1"
    assert server.get("/v2/health/ready").json()["generation"] == refused.generation - 1


def _settled_acks(
    registry: Path, env: str, generation: int, workers: int = 1, timeout: float = 30
) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acks = read_acks(deployment_dir(registry, env))
        if len(acks) == workers and all(ack.settled(generation) for ack in acks):
            return acks
        time.sleep(0.05)
    raise AssertionError(f"workers did not settle generation {generation}")


def test_model_with_categorical_column_is_served_on_dataframes(
    server: Server, registry: Path, restore: None
) -> None:
    server.wait_generation(serve_table(registry, "dev", model="colours", stable=1).generation)
    good = server.post("/invocations", json={"instances": [[*ROW, "red"]]})
    assert good.status_code == 200 and good.json()["predictions"] == [0]
    unseen = server.post("/invocations", json={"instances": [[*ROW, "purple"]]})
    assert unseen.status_code == 422 and unseen.json()["field"] == "colour"
    wrong = server.post("/invocations", json={"instances": [[*ROW, 7]]})
    assert wrong.status_code == 422 and wrong.json()["field"] == "colour"


def test_unknown_value_of_a_category_column_is_a_422_naming_the_known_ones(
    server: Server, registry: Path, restore: None
) -> None:
    server.wait_generation(serve_table(registry, "dev", model="kinds", stable=1).generation)
    good = server.post("/invocations", json={"instances": [[*ROW, "red"]]})
    assert good.status_code == 200
    split = {"columns": [*COLUMNS, "colour"], "data": [[*ROW, "purple"]]}
    for body in ({"instances": [[*ROW, "red"], [*ROW, "purple"]]}, {"dataframe_split": split}):
        unseen = server.post("/invocations", json=body)
        assert unseen.status_code == 422, unseen.text
        assert unseen.json()["field"] == "colour"
        assert "'purple'" in unseen.text and "('blue', 'green', 'red')" in unseen.text


def test_404_for_a_long_model_or_version_echoes_only_its_start(server: Server) -> None:
    for path in (
        "/v2/models/iris/versions/" + "9" * 5000 + "/ready",
        "/v2/models/iris/versions/" + "x" * 5000,
        "/v2/models/" + "w" * 5000,
    ):
        response = server.get(path)
        assert response.status_code == 404
        error = response.json()["error"]
        assert len(error) < 200 and "..." in error, error


def test_every_worker_of_a_multi_worker_server_switches_and_metrics_sum_them(
    guarded: Server, registry: Path
) -> None:
    table = serve_table(registry, "prod", stable=1)
    acks = _settled_acks(registry, "prod", table.generation, workers=2)
    assert {a.serving for a in acks} == {table.generation}
    fresh = httpx.Limits(max_keepalive_connections=0)  # new connections reach either worker
    with httpx.Client(limits=fresh, headers=guarded.client.headers, timeout=10) as client:
        for _ in range(40):
            answer = client.post(f"{guarded.url}/invocations", json={"instances": [ROW]})
            assert answer.status_code == 200
    assert _count(guarded, "stable", 1) == 40


def test_bearer_token_guards_everything_but_health(guarded: Server) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret-token"}):
        with httpx.Client(headers=headers, timeout=10) as client:
            for path in ("/invocations", "/v2/models/iris/infer"):
                response = client.post(guarded.url + path, json={"instances": [ROW]})
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
            assert client.get(guarded.url + "/metrics").status_code == 401
            for path in ("/v2/health/live", "/v2/health/ready", "/ping"):
                assert client.get(guarded.url + path).status_code != 401
    assert guarded.get("/metrics").status_code == 200
    assert "s3cret" not in guarded.log.read_text()


def test_bearer_scheme_is_case_insensitive(guarded: Server) -> None:
    for given_ in ("bearer s3cret-token", "BEARER s3cret-token", "BeArEr  s3cret-token"):
        answer = httpx.get(guarded.url + "/metrics", headers={"authorization": given_})
        assert answer.status_code == 200, given_
    for given_ in ("Basic s3cret-token", "Bearers3cret-token", "bearer s3cret-token2", "bearer"):
        answer = httpx.get(guarded.url + "/metrics", headers={"authorization": given_})
        assert answer.status_code == 401, given_


def test_labels_fed_back_are_counted_for_the_version_that_answered(server: Server) -> None:
    def labelled(name: str) -> float:
        prefix = f'mlinfra_feedback_{name}_total{{model="iris",variant="stable",version="1"}} '
        lines = [x for x in server.get("/metrics").text.splitlines() if x.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    rows, correct = labelled("rows"), labelled("correct")
    answer = server.post(
        "/feedback", json={"version": "1", "predictions": [0, 1, 2], "labels": [0, 1, 1]}
    )
    assert answer.json() == {"rows": 3, "version": 1, "variant": "stable"}
    assert (labelled("rows"), labelled("correct")) == (rows + 3, correct + 2)
    for body, field in [
        ({"version": 9, "predictions": [0], "labels": [0]}, "version"),
        ({"version": 1, "predictions": [0, 1], "labels": [0]}, "labels"),
        ({"version": 1, "predictions": [[0]], "labels": [0]}, "predictions"),
        ({"predictions": [0], "labels": [0]}, "version"),
        ({"version": "9" * 5000, "predictions": [0], "labels": [0]}, "version"),
    ]:
        refused = server.post("/feedback", json=body)
        assert refused.status_code == 422 and refused.json()["field"] == field


def test_regression_labels_fed_back_must_be_finite_numbers(
    server: Server, registry: Path, restore: None
) -> None:
    server.wait_generation(serve_table(registry, "dev", model="score", stable=1).generation)
    answer = server.post("/feedback", json={"version": 1, "predictions": [5.0], "labels": [5.5]})
    assert answer.status_code == 200
    for label in ("tall", 10**400, float("inf")):  # 10**400 overflows a float
        body = {"version": 1, "predictions": [5.0], "labels": [label]}
        refused = server.post("/feedback", content=json.dumps(body))
        assert refused.status_code == 422 and refused.json()["field"] == "labels"
