"""Micro-batching in the real server on loopback, with real scikit-learn models and real
concurrent clients: answers in a burst are byte for byte those given one request at a time, bad
requests in a burst get the error they get alone, and the batches themselves (`/metrics`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlinfra.serving._batching import DEFAULT_MAX_ROWS, batch_invariant
from mlinfra.serving._loading import load_served_model

CLIENTS = 32
JSON = {"content-type": "application/json"}
COLOURED = FEATURES.assign(colour=["red", "green", "blue"] * 50)
Outputs = tuple[str, ...]
# What a v2 request asks for; MLflow requests always ask for ("predict",).
CLASSIFIER_OUTPUTS: tuple[Outputs, ...] = (
    ("predict",),
    ("predict_proba",),
    ("predict", "predict_proba"),
)
REGRESSOR_OUTPUTS: tuple[Outputs, ...] = (("predict",),)
# name: (estimator, target, what a v2 request may ask for). Which of them are batch invariant
# for which outputs is this machine's BLAS's to say (`verdicts`); here the logistic regression's
# probabilities and the linear regression are not, so they are predicted one request at a time.
MODELS: dict[str, tuple[Any, Any, tuple[Outputs, ...]]] = {
    "iris": (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        TARGET,
        CLASSIFIER_OUTPUTS,
    ),
    "iris_tree": (DecisionTreeClassifier(max_depth=4, random_state=0), TARGET, CLASSIFIER_OUTPUTS),
    "score_linear": (LinearRegression(), TARGET * 1.5, REGRESSOR_OUTPUTS),
}


@dataclass(frozen=True)
class Call:
    """One HTTP request, sent the same way to both servers."""

    path: str
    content: bytes

    @classmethod
    def of(cls, path: str, body: Any) -> Call:
        return cls(path, json.dumps(body).encode())


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    version: str | None  # x-model-version


def register_models(registry: Path) -> None:
    for name, (estimator, target, _) in MODELS.items():
        register(registry, estimator, name=name, target=target)
    encoder = make_column_transformer(
        (OneHotEncoder(handle_unknown="error"), ["colour"]), remainder="passthrough"
    )
    pipeline = make_pipeline(encoder, LogisticRegression(max_iter=1000))
    register(registry, pipeline, name="colours", features=COLOURED)  # predicted on DataFrames


@dataclass(frozen=True)
class Servers:
    """Two servers of one registry, each serving an env of its own."""

    registry: Path
    batched: Server  # micro-batching on (its defaults), one worker
    alone: Server  # micro-batching off: every request predicted in a call of its own

    def serve(self, model: str) -> None:
        """Both switched to `model` v1."""
        for server, env in ((self.batched, "batched"), (self.alone, "alone")):
            table = serve_table(self.registry, env, model=model, stable=1)
            server.wait_generation(table.generation)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The servers boot (seconds of imports) while the models are fitted and registered."""
    registry = new_registry(tmp_path_factory.mktemp("batching") / "registry")
    options = {"batched": (), "alone": ("--batch-window-ms", "0")}
    started: dict[str, Server] = {}
    try:
        with ThreadPoolExecutor(len(options)) as pool:
            booting = {
                env: pool.submit(start_server, registry, env, extra=extra)
                for env, extra in options.items()
            }
            try:
                register_models(registry)
            finally:
                for env, boot in booting.items():
                    if boot.exception() is None:  # waits for it
                        started[env] = boot.result()
        yield Servers(registry, *(booting[env].result() for env in options))  # or its failure
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def verdicts(servers: Servers) -> dict[tuple[str, Outputs], bool]:
    """Whether each model is batch invariant for each outputs, checked here as the server does."""
    found = {}
    for name, (_, _, kinds) in MODELS.items():
        model = load_served_model(servers.registry, name, 1)
        for outputs in kinds:
            found[name, outputs] = batch_invariant(model, outputs, DEFAULT_MAX_ROWS)
    return found


def distinct_rows(count: int, seed: int) -> list[list[float]]:
    """Iris rows moved a little, none the same (two decimals, as clients send them)."""
    rng = random.Random(seed)
    table = FEATURES.to_numpy().tolist()
    rows: dict[tuple[float, ...], None] = {}
    while len(rows) < count:
        row = tuple(round(value + rng.uniform(-0.3, 0.3), 2) for value in rng.choice(table))
        rows[row] = None
    return [list(row) for row in rows]


def v2_call(model: str, rows: list[list[float]], outputs: Outputs, index: int) -> Call:
    """One `[rows, 4]` tensor, or one tensor per column, alternately; with its own id, so that
    the answers of both servers are the same bytes."""
    if index % 2:
        inputs = [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]
    else:
        inputs = [
            {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": [r[i] for r in rows]}
            for i, name in enumerate(COLUMNS)
        ]
    body: dict[str, Any] = {"id": f"request-{index}", "inputs": inputs}
    if outputs != ("predict",) or index % 3 == 0:  # asked for, or the default
        body["outputs"] = [{"name": name} for name in outputs]
    return Call.of(f"/v2/models/{model}/infer", body)


def mlflow_call(rows: list[list[float]], index: int) -> Call:
    if index % 2:
        return Call.of("/invocations", {"instances": rows})
    return Call.of("/invocations", {"dataframe_split": {"columns": COLUMNS, "data": rows}})


def mixed_calls(model: str, kinds: tuple[Outputs, ...], seed: int) -> list[Call]:
    """200 single-row v2 requests over every outputs kind, 50 single-row MLflow ones, ten of
    3 rows, and one of more rows than a batch holds; all rows distinct, in a shuffled order."""
    rows = distinct_rows(250 + 10 * 3 + DEFAULT_MAX_ROWS + 6, seed)
    calls = [v2_call(model, [rows[i]], kinds[i % len(kinds)], i) for i in range(200)]
    calls += [mlflow_call([rows[i]], i) for i in range(200, 250)]
    for i in range(10):
        start = 250 + 3 * i
        calls.append(v2_call(model, rows[start : start + 3], kinds[i % len(kinds)], 250 + i))
    calls.append(mlflow_call(rows[280:], 260))
    random.Random(seed).shuffle(calls)
    return calls


def connect(server: Server) -> http.client.HTTPConnection:
    """A keep-alive connection; http.client, not httpx, as it spends a fifth of the CPU on a
    request, and the test sends thousands on a machine of two cores."""
    host, port = server.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def send(connection: http.client.HTTPConnection, call: Call) -> Answer:
    connection.request("POST", call.path, call.content, JSON)
    response = connection.getresponse()
    return Answer(response.status, response.read(), response.getheader("x-model-version"))


def one_at_a_time(server: Server, calls: list[Call]) -> list[Answer]:
    with contextlib.closing(connect(server)) as connection:
        return [send(connection, call) for call in calls]


def concurrently(server: Server, calls: list[Call], clients: int = CLIENTS) -> list[Answer]:
    """All `calls` at once from `clients` threads, each sending one after another on a
    connection of its own; answers in the order of `calls`."""
    answers: list[Answer | None] = [None] * len(calls)

    def client(first: int) -> None:
        with contextlib.closing(connect(server)) as connection:
            for index in range(first, len(calls), clients):
                answers[index] = send(connection, calls[index])

    with ThreadPoolExecutor(clients) as threads:
        list(threads.map(client, range(clients)))
    return [answer for answer in answers if answer is not None]


def batches(server: Server, model: str, outputs: Outputs) -> tuple[int, int]:
    """How many batches `model`'s requests for `outputs` were predicted in, and how many of them
    held one request (the `mlinfra_batch_requests` histogram)."""
    count = alone = 0
    for family in text_string_to_metric_families(server.get("/metrics").text):
        if family.name != "mlinfra_batch_requests":
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels["model"] != model or labels["outputs"] != ",".join(outputs):
                continue
            if sample.name.endswith("_count"):
                count += int(sample.value)
            elif sample.name.endswith("_bucket") and float(labels["le"]) == 1:
                alone += int(sample.value)
    return count, alone


def checked_by_batcher(server: Server, model: str, batchable: dict[Outputs, Call]) -> None:
    """Lone requests until `server` has checked `model` for each of these outputs and found it
    batch invariant: until then their requests go alone, past the batcher."""
    for outputs, call in batchable.items():
        wait_for(
            lambda o=outputs, c=call: lone_batch(server, c, model, o), f"{model} {outputs} batched"
        )


def lone_batch(server: Server, call: Call, model: str, outputs: Outputs) -> int:
    """Send `call` alone; the batches `model` has been predicted in for `outputs` since."""
    one_at_a_time(server, [call])
    return batches(server, model, outputs)[0]


def iris_call(row: list[float], index: int) -> Call:
    return v2_call("iris", [row], ("predict",), index)


@pytest.mark.parametrize("model", list(MODELS))
def test_answers_in_a_concurrent_burst_are_byte_for_byte_those_given_one_at_a_time(
    model: str, servers: Servers, verdicts: dict[tuple[str, Outputs], bool]
) -> None:
    """Also for outputs a model is not batch invariant for: those are predicted one request at
    a time (never in a batch), the others in batches of several."""
    servers.serve(model)
    kinds = MODELS[model][2]
    for index, outputs in enumerate(kinds):  # starts the server's checks of the model
        one_at_a_time(servers.batched, [v2_call(model, distinct_rows(1, 99), outputs, index)])
    invariant = [outputs for outputs in kinds if verdicts[model, outputs]]
    probes = {o: v2_call(model, distinct_rows(1, 98), o, 0) for o in invariant}
    checked_by_batcher(servers.batched, model, probes)
    calls = mixed_calls(model, kinds, seed=len(model))
    before = {outputs: batches(servers.batched, model, outputs) for outputs in kinds}
    expected = one_at_a_time(servers.alone, calls)
    assert {answer.status for answer in expected} == {200}
    got = concurrently(servers.batched, calls)
    for call, mine, theirs in zip(calls, got, expected, strict=True):
        assert mine == theirs, call
    for outputs in kinds:
        count, lone = batches(servers.batched, model, outputs)
        several = (count - lone) - (before[outputs][0] - before[outputs][1])
        if outputs in invariant:
            assert several > 0, (model, outputs)
        else:
            assert count == 0, (model, outputs)


def test_the_models_here_take_both_paths(verdicts: dict[tuple[str, Outputs], bool]) -> None:
    """The burst test covers the batched path, and the one-request-at-a-time path through a
    model that is not batch invariant; which models are is this machine's BLAS's to say."""
    assert any(verdicts.values()), "no model here is batched at all"
    if all(verdicts.values()):
        pytest.skip("every model here is batch invariant on this BLAS: none goes alone")


def bad_calls() -> list[Call]:
    """Requests each refused for a reason of its own, before they reach the model."""
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    return [
        Call("/v2/models/iris/infer", b'{"inputs": ['),  # not JSON: 400
        Call.of("/v2/models/iris/infer", ["not", "an", "object"]),  # 400
        Call.of("/v2/models/iris/infer", {"inputs": [{**tensor, "data": [5.1, "x", 1.4, 0.2]}]}),
        Call.of("/v2/models/iris/infer", {"inputs": [{**tensor, "shape": [1, 3]}]}),
        Call.of("/v2/models/iris/infer", {"inputs": [tensor], "outputs": [{"name": "nope"}]}),
        Call.of("/v2/models/iris/infer", {"inputs": [tensor], "id": "has spaces\n"}),
        Call.of("/v2/models/iris/infer", {"inputs": [{**tensor, "data": [10**400, 1, 1, 1]}]}),
        Call.of("/v2/models/other/infer", {"inputs": [tensor]}),  # 404
        Call.of("/invocations", {"instances": [ROW[:3]]}),
        Call.of("/invocations", {"instances": [ROW], "params": {"a": 1}}),  # 400
        Call.of("/invocations", {"instances": [[*ROW[:3], None]]}),
        Call.of("/invocations", {"inputs": []}),
    ]


def test_bad_requests_in_a_burst_get_the_error_they_get_alone_and_spoil_no_other(
    servers: Servers,
) -> None:
    servers.serve("iris")
    checked_by_batcher(servers.batched, "iris", {("predict",): iris_call(ROW, 0)})
    good = [mlflow_call([row], i) for i, row in enumerate(distinct_rows(60, seed=7))]
    good += [iris_call(row, i) for i, row in enumerate(distinct_rows(60, seed=8))]
    bad = bad_calls() * 3
    calls = good + bad
    random.Random(3).shuffle(calls)
    expected = one_at_a_time(servers.alone, calls)
    assert sum(answer.status != 200 for answer in expected) == len(bad)
    got = concurrently(servers.batched, calls)
    for call, mine, theirs in zip(calls, got, expected, strict=True):
        assert mine == theirs, call


def test_a_batch_the_model_refuses_is_predicted_again_one_request_at_a_time(
    servers: Servers,
) -> None:
    """An unknown colour passes the request checks and fails only in the model (a DataFrame
    pipeline), so it fails the whole batch it joined: each of its requests is then answered as
    if alone, 422 for the unknown colour and 200 for the others."""
    servers.serve("colours")
    calls = [
        Call.of("/invocations", {"instances": [[*row, ("red", "green", "blue", "purple")[i % 4]]]})
        for i, row in enumerate(distinct_rows(48, seed=11))
    ]
    checked_by_batcher(servers.batched, "colours", {("predict",): calls[0]})
    before = batches(servers.batched, "colours", ("predict",))
    expected = one_at_a_time(servers.alone, calls)
    assert [answer.status for answer in expected] == [200, 200, 200, 422] * 12
    got = concurrently(servers.batched, calls)
    for call, mine, theirs in zip(calls, got, expected, strict=True):
        assert mine == theirs, call
    count, lone = batches(servers.batched, "colours", ("predict",))
    assert count - lone > before[0] - before[1]  # batches of several, unknown colours among them


def test_a_lone_request_after_a_burst_is_predicted_in_a_batch_of_one(
    servers: Servers,
) -> None:
    servers.serve("iris")
    checked_by_batcher(servers.batched, "iris", {("predict",): iris_call(ROW, 0)})
    burst = [iris_call(row, i) for i, row in enumerate(distinct_rows(60, seed=5))]
    assert {answer.status for answer in concurrently(servers.batched, burst)} == {200}
    count, lone = batches(servers.batched, "iris", ("predict",))
    assert one_at_a_time(servers.batched, burst[:1]) == one_at_a_time(servers.alone, burst[:1])
    assert batches(servers.batched, "iris", ("predict",)) == (count + 1, lone + 1)
