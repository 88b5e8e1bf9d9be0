"""The prediction log for real: a real server process on loopback logs what it answered into
Parquet segments in a real directory, read back with pyarrow; labels arrive by /feedback and from
a CSV file and join by request id. The writer alone (no server, no HTTP) is driven with a
controlled clock for segment ages and retention."""

from __future__ import annotations

import contextlib
import datetime as dt
import resource
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from _serving import COLUMNS, FEATURES, ROW, TARGET, Server, new_registry, register, serve_table
from _serving import start_server as _start_server
from conftest import wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlinfra.errors import ValidationError
from mlinfra.monitoring._ids import RequestIds, row_ids
from mlinfra.monitoring._log import LogSettings, PredictionLogWriter
from mlinfra.monitoring._log_files import PredictionLog, feature_column, record_labels
from mlinfra.serving import deployment_dir, read_acks
from mlinfra.serving._loading import ServedModel, load_served_model
from mlinfra.serving._schema import Column, InputSchema

SEGMENT_SECONDS = "0.2"
ROWS = FEATURES.iloc[[0, 60, 120]].to_numpy().tolist()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_registry(tmp_path_factory.mktemp("prediction-log") / "registry")
    register(root, LogisticRegression(max_iter=500))  # iris v1
    register(root, DecisionTreeClassifier(max_depth=2, random_state=0))  # iris v2
    register(root, LinearRegression(), name="score", target=TARGET * 1.5)  # score v1
    return root


def start_logging(
    registry: Path, env: str, log_dir: Path, *extra: str, workers: int = 1, **table: Any
) -> Server:
    """A real server of `env` logging into `log_dir`, serving `table` (iris v1 by default)."""
    options = ("--log-dir", str(log_dir), "--log-segment-seconds", SEGMENT_SECONDS, *extra)
    server = _start_server(registry, env, workers=workers, extra=options)
    try:
        server.wait_generation(serve_table(registry, env, **({"stable": 1} | table)).generation)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def served(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One logging server for the tests that only add traffic (each with ids of its own)."""
    server = start_logging(registry, "log", tmp_path_factory.mktemp("log"))
    try:
        yield server
    finally:
        server.stop()


def log_of(server: Server) -> PredictionLog:
    command = server.process.args
    assert isinstance(command, list)
    return PredictionLog(Path(command[command.index("--log-dir") + 1]))


def read_all(log: PredictionLog) -> pd.DataFrame:
    tables = [log.read(segment) for segment in log.segments()]
    if not tables:
        return pd.DataFrame(columns=["request_id"])
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def logged(log: PredictionLog, ids: set[str]) -> pd.DataFrame:
    """The logged rows of these ids, once all of them are in closed segments."""

    def rows() -> list[pd.DataFrame]:
        frame = read_all(log)
        frame = frame[frame["request_id"].isin(ids)]
        return [frame.set_index("request_id")] if len(frame) == len(ids) else []

    return wait_for(rows, f"{len(ids)} rows logged")[0]


def v2(rows: list[list[float]], **fields: Any) -> dict[str, Any]:
    data = {"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
    return {"inputs": [data], **fields}


def metric(server: Server, kind: str, outcome: str) -> float:
    prefix = f'mlinfra_prediction_log_rows_total{{kind="{kind}",outcome="{outcome}"}} '
    lines = [x for x in server.get("/metrics").text.splitlines() if x.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


# --- the real server -------------------------------------------------------------------------


def test_every_answer_carries_a_request_id_its_own_or_a_new_one(served: Server) -> None:
    by_body = served.post("/v2/models/iris/infer", json=v2([ROW], id="body-1"))
    by_header = served.post(
        "/v2/models/iris/infer", json=v2([ROW]), headers={"x-request-id": "header-1"}
    )
    both = served.post(
        "/v2/models/iris/infer", json=v2([ROW], id="body-2"), headers={"x-request-id": "h-2"}
    )
    mlflow = served.post("/invocations", json={"instances": [ROW]}, headers={"x-request-id": "m"})
    new = [served.post("/invocations", json={"instances": [ROW]}) for _ in range(3)]
    assert (by_body.json()["id"], by_body.headers["x-request-id"]) == ("body-1", "body-1")
    assert (by_header.json()["id"], by_header.headers["x-request-id"]) == ("header-1", "header-1")
    assert both.headers["x-request-id"] == both.json()["id"] == "body-2"  # the body's comes first
    assert mlflow.headers["x-request-id"] == "m"
    given = [answer.headers["x-request-id"] for answer in new]
    assert len(set(given)) == 3 and all(given)
    too_long = served.post(
        "/invocations", json={"instances": [ROW]}, headers={"x-request-id": "x" * 257}
    )
    assert too_long.status_code == 422 and too_long.json()["field"] == "x-request-id"
    refused = served.post("/v2/models/iris/infer", json=v2([ROW], id="y" * 257))
    assert refused.status_code == 422 and refused.json()["field"] == "id"


def test_logged_rows_hold_features_prediction_version_and_time(served: Server) -> None:
    before = dt.datetime.now(dt.UTC)
    answer = served.post("/invocations", json={"instances": ROWS}, headers={"x-request-id": "f3"})
    one = served.post("/v2/models/iris/infer", json=v2([ROWS[1]], id="f1"))
    frame = logged(log_of(served), {"f3/0", "f3/1", "f3/2", "f1"})
    assert frame.loc[["f3/0", "f3/1", "f3/2"], "prediction"].tolist() == [
        str(p) for p in answer.json()["predictions"]
    ]
    assert frame.loc["f1", "prediction"] == str(one.json()["outputs"][0]["data"][0])
    assert frame.loc[["f3/0", "f3/1", "f3/2"], COLUMNS].to_numpy().tolist() == ROWS
    assert frame.loc["f1", COLUMNS].tolist() == ROWS[1]
    assert set(frame["model"]) == {"iris"} and set(frame["version"]) == {1}
    assert set(frame["variant"]) == {"stable"}
    assert all(before <= at <= dt.datetime.now(dt.UTC) for at in frame["at"])
    assert str(frame["at"].dtype) == "datetime64[us, UTC]"


def test_a_large_request_is_logged_whole_though_its_body_is_freed_once_answered(
    served: Server,
) -> None:
    """Parsed and answered in a worker thread, which empties the body afterwards; v2 columns
    are the body's own lists."""
    rows = (FEATURES.to_numpy().tolist() * 140)[:20_000]
    tensors = [
        {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": [r[i] for r in rows]}
        for i, name in enumerate(COLUMNS)
    ]
    answer = served.post("/v2/models/iris/infer", json={"inputs": tensors, "id": "big"})
    assert answer.status_code == 200
    frame = logged(log_of(served), set(row_ids("big", len(rows))))
    frame = frame.loc[row_ids("big", len(rows))]
    assert frame[COLUMNS].to_numpy().tolist() == rows
    assert frame["prediction"].tolist() == [str(p) for p in answer.json()["outputs"][0]["data"]]


@pytest.mark.slow
def test_canary_answers_are_logged_as_canary_and_shadow_copies_not_at_all(
    registry: Path, tmp_path: Path
) -> None:
    server = start_logging(registry, "canary", tmp_path, stable=1, canary=2, canary_weight=50)
    try:
        split = {
            f"c{i}": served_by(server.post("/invocations", json={"instances": [ROW]},
                                           headers={"x-request-id": f"c{i}"}))
            for i in range(40)
        }  # fmt: skip
        assert {variant for _, variant in split.values()} == {"stable", "canary"}
        frame = logged(log_of(server), set(split))
        for request_id, (version, variant) in split.items():
            assert (frame.loc[request_id, "version"], frame.loc[request_id, "variant"]) == (
                version,
                variant,
            )
        generation = serve_table(registry, "canary", stable=1, canary=2, mode="shadow").generation
        server.wait_generation(generation)
        for i in range(20):
            server.post(
                "/invocations", json={"instances": [ROW]}, headers={"x-request-id": f"s{i}"}
            )
        frame = logged(log_of(server), {f"s{i}" for i in range(20)})
        assert set(frame["variant"]) == {"stable"} and set(frame["version"]) == {1}
    finally:
        server.stop()
    assert (read_all(log_of(server))["request_id"].str.startswith("s")).sum() == 20


def served_by(answer: httpx.Response) -> tuple[int, str]:
    assert answer.status_code == 200
    return int(answer.headers["x-model-version"]), answer.headers["x-model-variant"]


@pytest.mark.slow
def test_regression_predictions_are_logged_as_numbers(registry: Path, tmp_path: Path) -> None:
    server = start_logging(registry, "regression", tmp_path, model="score")
    try:
        answer = server.post(
            "/invocations", json={"instances": ROWS}, headers={"x-request-id": "r"}
        )
        frame = logged(log_of(server), set(row_ids("r", 3)))
    finally:
        server.stop()
    assert frame["prediction"].dtype == np.float64
    assert frame["prediction"].tolist() == answer.json()["predictions"]


def test_labels_fed_back_by_request_id_join_the_logged_predictions(served: Server) -> None:
    answers = [
        served.post("/invocations", json={"instances": [row]}, headers={"x-request-id": f"l{i}"})
        for i, row in enumerate(ROWS)
    ]
    served.post("/invocations", json={"instances": ROWS}, headers={"x-request-id": "lm"})
    truth = [str(a.json()["predictions"][0]) for a in answers]
    fed = served.post(
        "/feedback",
        json={"request_ids": ["l0", "l1", "l2", "lm/2"], "labels": [truth[0], 7, truth[2], 2.0]},
    )
    assert fed.json() == {"rows": 4, "logged": True}
    old_form = served.post("/feedback", json={"version": 1, "predictions": [0], "labels": [0]})
    assert old_form.status_code == 200  # judged by version, as rollouts do
    log = log_of(served)
    frame = logged(log, {"l0", "l1", "l2", "lm/0", "lm/1", "lm/2"})
    labels = wait_for(lambda: log.labels().num_rows >= 4 and [log.labels()], "labels written")[0]
    joined = log.labelled(pa.Table.from_pandas(frame.reset_index()), labels).to_pandas()
    by_id = joined.set_index("request_id")
    assert sorted(by_id.index) == ["l0", "l1", "l2", "lm/2"]
    assert by_id.loc["l1", "label"] == "7" and not by_id.loc["l1", "correct"]
    assert by_id.loc["l0", "correct"] and by_id.loc["l2", "correct"]
    assert by_id.loc["lm/2", "label"] == "2"  # 2.0 reads as the class 2
    assert by_id.loc["lm/2", "correct"] == (frame.loc["lm/2", "prediction"] == "2")
    for body, field in [
        ({"request_ids": ["a"], "labels": []}, "labels"),
        ({"request_ids": [1], "labels": [1]}, "request_ids"),
        ({"request_ids": ["z" * 257], "labels": [1]}, "request_ids"),
        ({"request_ids": ["a"], "labels": [[1]]}, "labels"),
    ]:
        refused = served.post("/feedback", json=body)
        assert refused.status_code == 422 and refused.json()["field"] == field, body
    mixed = served.post("/feedback", json={"request_ids": ["a"], "labels": [1], "version": 1})
    assert mixed.status_code == 400


@pytest.mark.slow
def test_labels_by_request_id_need_the_log_on(registry: Path) -> None:
    server = _start_server(registry, "unlogged")
    try:
        server.wait_generation(serve_table(registry, "unlogged", stable=1).generation)
        refused = server.post("/feedback", json={"request_ids": ["a"], "labels": [1]})
        assert server.post("/invocations", json={"instances": [ROW]}).headers["x-request-id"]
    finally:
        server.stop()
    assert refused.status_code == 409 and "monitoring" in refused.json()["error"]


def test_labels_from_a_csv_file_join_the_logged_predictions(served: Server, tmp_path: Path) -> None:
    answers = {
        f"csv{i}": served.post(
            "/invocations", json={"instances": [row]}, headers={"x-request-id": f"csv{i}"}
        ).json()["predictions"][0]
        for i, row in enumerate(ROWS)
    }
    file = tmp_path / "labels.csv"
    file.write_text("request_id,label\ncsv0,0\ncsv1,1\ncsv2,9\nunknown,1\n")
    log = log_of(served)
    assert record_labels(log.directory, pd.read_csv(file)) == 4
    frame = logged(log, set(answers))
    joined = log.labelled(pa.Table.from_pandas(frame.reset_index())).to_pandas()
    correct = dict(zip(joined["request_id"], joined["correct"], strict=True))
    assert correct == {
        "csv0": answers["csv0"] == 0,
        "csv1": answers["csv1"] == 1,
        "csv2": False,
    }


def test_record_labels_refuses_a_file_it_cannot_use_in_one_line(tmp_path: Path) -> None:
    cases = [
        (pd.DataFrame({"id": ["a"], "label": [1]}), "request_id missing"),
        (pd.DataFrame({"request_id": [], "label": []}), "no rows"),
        (pd.DataFrame({"request_id": ["a", None], "label": [1, 2]}), "row 2: request_id is empty"),
        (pd.DataFrame({"request_id": ["a"], "label": [None]}), "row 1: label is empty"),
        (pd.DataFrame({"request_id": ["a" * 300], "label": [1]}), "row 1: request_id must be"),
        (pd.DataFrame({"request_id": ["a", "é"], "label": [1, 2]}), "printable ASCII"),
    ]
    for frame, message in cases:
        with pytest.raises(ValidationError, match=message) as refused:
            record_labels(tmp_path, frame)
        assert "\n" not in str(refused.value)
    assert PredictionLog(tmp_path).segments(kind="labels") == []


@pytest.mark.slow
def test_half_sample_rate_logs_about_half_the_requests(registry: Path, tmp_path: Path) -> None:
    server = start_logging(registry, "sampled", tmp_path, "--log-sample-rate", "0.5")
    try:
        for _ in range(400):
            assert server.post("/invocations", json={"instances": [ROW]}).status_code == 200
    finally:
        server.stop()  # writes the open segment
    logged_rows = sum(segment.rows for segment in log_of(server).segments())
    assert 140 <= logged_rows <= 260  # binomial(400, 0.5): beyond 6 standard deviations


@pytest.mark.slow
def test_a_full_queue_drops_and_counts_rows_and_fails_no_request(
    registry: Path, tmp_path: Path
) -> None:
    server = start_logging(registry, "tiny", tmp_path, "--log-queue-rows", "2")
    try:
        for _ in range(30):  # three rows: more than the whole queue holds
            answer = server.post("/invocations", json={"instances": ROWS})
            assert answer.status_code == 200
        wait_for(lambda: metric(server, "predictions", "dropped") == 90, "90 rows counted dropped")
        assert server.post("/invocations", json={"instances": [ROW]}).status_code == 200
        wait_for(lambda: metric(server, "predictions", "written") == 1, "one row written")
    finally:
        server.stop()
    counts = log_of(server).counts()
    assert (counts.predictions.dropped, counts.predictions.written, counts.workers) == (90, 1, 1)


@pytest.mark.slow
def test_an_unwritable_log_directory_keeps_serving_counts_failures_and_recovers(
    registry: Path, tmp_path: Path
) -> None:
    """A file where the predictions folder goes (chmod would not stop root, who runs CI here)."""
    blocked = tmp_path / "predictions"
    blocked.write_text("in the way")
    server = start_logging(registry, "unwritable", tmp_path)
    try:
        for round_ in range(3):  # each in a segment of its own
            for _ in range(5):
                assert server.post("/invocations", json={"instances": [ROW]}).status_code == 200
            failed = 5 * (round_ + 1)
            wait_for(lambda n=failed: metric(server, "predictions", "failed") == n, "failed")
        wait_for(lambda: log_of(server).counts().predictions.failed == 15, "status file says 15")
        blocked.unlink()
        server.post("/invocations", json={"instances": [ROW]}, headers={"x-request-id": "back"})
        assert logged(log_of(server), {"back"}).loc["back", "version"] == 1
    finally:
        server.stop()
    text = server.log.read_text()
    assert text.count("prediction log: cannot write") == 1, text
    assert text.count("prediction log: writing to") == 1


@pytest.mark.slow
def test_a_file_size_limit_like_a_full_disk_fails_segments_and_serving_goes_on(
    registry: Path, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE on the worker makes its writes fail as on a full disk (EFBIG for ENOSPC);
    lifted, writing resumes."""
    server = start_logging(registry, "full", tmp_path)
    try:
        (worker,) = [ack.pid for ack in read_acks(deployment_dir(registry, "full"))]
        limits = resource.prlimit(worker, resource.RLIMIT_FSIZE)
        resource.prlimit(worker, resource.RLIMIT_FSIZE, (4096, limits[1]))
        big = FEATURES.to_numpy().tolist() * 4  # 600 rows: a segment far beyond 4 KiB
        assert server.post("/invocations", json={"instances": big}).status_code == 200
        wait_for(lambda: metric(server, "predictions", "failed") == 600, "600 rows failed")
        resource.prlimit(worker, resource.RLIMIT_FSIZE, limits)
        assert server.post("/invocations", json={"instances": big}).status_code == 200
        wait_for(lambda: metric(server, "predictions", "written") == 600, "600 rows written")
    finally:
        server.stop()
    assert not list((tmp_path / "predictions").glob(".*"))  # no half-written file left


@pytest.mark.slow
def test_a_restarted_server_keeps_the_segments_and_its_stop_writes_the_open_one(
    registry: Path, tmp_path: Path
) -> None:
    log = PredictionLog(tmp_path)
    for run in range(2):
        server = _start_server(registry, "restarted", workers=2, extra=(
            "--log-dir", str(tmp_path), "--log-segment-seconds", "3600"))  # fmt: skip
        try:
            server.wait_generation(serve_table(registry, "restarted", stable=1).generation)
            before = log.segments()
            for i in range(10):
                server.post("/invocations", json={"instances": [ROW]},
                            headers={"x-request-id": f"run{run}-{i}"})  # fmt: skip
            assert log.segments() == before  # still open: an hour to go
        finally:
            server.stop()
        assert len(log.segments()) > len(before)
    frame = read_all(log)
    assert sorted(frame["request_id"]) == sorted(f"run{r}-{i}" for r in range(2) for i in range(10))
    assert len({segment.path.name for segment in log.segments()}) == len(log.segments())
    assert log.counts().predictions.written == 20


# --- the writer alone ------------------------------------------------------------------------


class Clock:
    """A clock the test moves: segment ages and retention without waiting for them."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def iris(registry: Path) -> ServedModel:
    return load_served_model(registry, "iris", 1)


def record(writer: PredictionLogWriter, model: ServedModel, request_id: str, rows: int) -> None:
    values = FEATURES.head(rows)
    columns = {name: values[name].tolist() for name in model.schema.names}
    outputs = {"predict": np.asarray(model.estimator.predict(values))}
    writer.record(model, "stable", request_id, columns, rows, outputs)


def started(directory: Path, clock: Clock, **options: Any) -> PredictionLogWriter:
    options.setdefault("segment_seconds", 10.0)
    writer = PredictionLogWriter(LogSettings(directory=directory, **options), clock=clock)
    writer.start()
    return writer


def test_segments_close_at_their_age_and_old_ones_go_after_the_retention(
    tmp_path: Path, iris: ServedModel
) -> None:
    clock = Clock()
    log = PredictionLog(tmp_path)
    writer = started(tmp_path, clock, segment_seconds=10, retention_seconds=100)

    def segments() -> list[str]:
        return [read_all_ids(log, segment) for segment in log.segments()]

    try:
        record(writer, iris, "old", 1)
        clock.now += 11  # its first row is now older than a segment lasts
        wait_for(lambda: segments() == ["old"], "the first segment written")
        clock.now += 50
        record(writer, iris, "new", 1)
        clock.now += 11  # written, and retention ran: both rows within 100 s
        wait_for(lambda: segments() == ["old", "new"], "the second segment written")
        clock.now += 68  # the next retention is due; "old" is 140 s old, "new" 79 s
        wait_for(lambda: segments() == ["new"], "the old segment deleted")
    finally:
        writer.close()


def test_oldest_segments_go_beyond_max_bytes(tmp_path: Path, iris: ServedModel) -> None:
    clock = Clock()
    log = PredictionLog(tmp_path)
    writer = started(tmp_path, clock, max_bytes=20_000)
    try:
        for segment in range(12):
            record(writer, iris, f"b{segment}", 50)
            clock.now += 11
            rows = 50 * (segment + 1)
            # retention runs in the writer's thread just after the write it follows
            wait_for(
                lambda n=rows: (
                    writer.counts()["predictions"].written == n and _log_bytes(log) <= 20_000
                ),
                "written, and the log back within max_bytes",
            )
    finally:
        writer.close()
    kept = [read_all_ids(log, s) for s in log.segments()]
    assert 1 < len(kept) < 12
    assert kept == [f"b{i}" for i in range(12 - len(kept), 12)]  # the newest


def _log_bytes(log: PredictionLog) -> int:
    """Bytes of the log's segments; one that retention deleted meanwhile counts none."""
    total = 0
    for segment in log.segments():
        with contextlib.suppress(FileNotFoundError):
            total += segment.path.stat().st_size
    return total


def read_all_ids(log: PredictionLog, segment: Any) -> str:
    ids = {i.split("/")[0] for i in log.read(segment, ["request_id"]).column(0).to_pylist()}
    (request,) = ids
    return request


def test_concurrent_records_are_each_written_or_counted_dropped(
    tmp_path: Path, iris: ServedModel
) -> None:
    writer = started(tmp_path, Clock(), queue_rows=500)
    threads = [
        threading.Thread(
            target=lambda t=t: [record(writer, iris, f"t{t}-{i}", 3) for i in range(300)]
        )
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    counts = writer.counts()["predictions"]
    assert counts.written + counts.dropped == 4 * 300 * 3
    frame = read_all(PredictionLog(tmp_path))
    assert len(frame) == counts.written == len(set(frame["request_id"]))


KINDS = InputSchema(
    (
        Column("x", "float"),
        Column("n", "int", nullable=True),
        Column("flag", "bool"),
        Column("name", "string", nullable=True),
        Column("colour", "category", categories=("red", "green")),
        Column("size", "category", categories=(1, 2, 3)),
        Column("when", "datetime"),
        Column("version", "float"),  # a feature named like a column of the log
    )
)
# Not a model: the writer reads only a version's name, number, task and schema.
KINDS_VERSION = ServedModel(name="kinds", version=3, estimator=None, schema=KINDS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
            st.none() | st.integers(-(2**53), 2**53),
            st.booleans(),
            st.none() | st.text(max_size=20),
            st.sampled_from(["red", "green"]),
            st.sampled_from([1, 2, 3]),
            st.datetimes(timezones=st.just(dt.UTC)),
            st.floats(-1e6, 1e6),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_each_feature_is_logged_as_its_schema_type(rows: list[tuple[Any, ...]]) -> None:
    names = [column.name for column in KINDS.columns]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    columns["when"] = [stamp.isoformat() for stamp in columns["when"]]
    outputs = {"predict": np.array(["yes"] * len(rows))}
    with tempfile.TemporaryDirectory() as folder:
        writer = started(Path(folder), Clock())
        writer.record(KINDS_VERSION, "canary", "k", dict(columns), len(rows), outputs)
        writer.close()
        log = PredictionLog(Path(folder))
        (segment,) = log.segments()
        table = log.read(segment)
    assert writer.counts()["predictions"].written == len(rows)
    types = {name: str(table.schema.field(feature_column(name)).type) for name in names}
    assert types == {
        "x": "double", "n": "int64", "flag": "bool", "name": "string", "colour": "string",
        "size": "int64", "when": "timestamp[us, tz=UTC]", "version": "double",
    }  # fmt: skip
    assert table.column("version").to_pylist() == [3] * len(rows)
    assert table.column("feature:version").to_pylist() == [float(v) for v in columns["version"]]
    for i, name in enumerate(names[:-1]):
        got = table.column(name).to_pylist()
        want = [row[i] for row in rows]
        assert got == want, name
    assert table.column("request_id").to_pylist() == row_ids("k", len(rows))
    assert set(table.column("variant").to_pylist()) == {"canary"}


def test_text_utf8_cannot_hold_is_logged_with_a_replacement(tmp_path: Path) -> None:
    """JSON can carry a lone surrogate ("\\ud800"); Parquet's UTF-8 cannot."""
    columns = {
        "x": [1.0], "n": [1], "flag": [True], "name": ["a\ud800b"], "colour": ["red"],
        "size": [1], "when": ["2026-01-01T00:00:00Z"], "version": [1.0],
    }  # fmt: skip
    writer = started(tmp_path, Clock())
    writer.record(KINDS_VERSION, "stable", "s", columns, 1, {"predict": np.array(["yes"])})
    writer.close()
    log = PredictionLog(tmp_path)
    (segment,) = log.segments()
    assert log.read(segment, ["name"]).column(0).to_pylist() == ["a?b"]


def test_new_request_ids_do_not_repeat() -> None:
    ids = RequestIds(), RequestIds()
    made = [source.new() for source in ids for _ in range(10_000)]
    assert len(set(made)) == len(made)


def test_log_settings_refuse_values_that_cannot_work(tmp_path: Path) -> None:
    from mlinfra.errors import ConfigError

    for options in ({"sample_rate": 1.5}, {"segment_seconds": 0}, {"max_bytes": 0},
                    {"queue_rows": 0}, {"sample_rate": float("nan")}):  # fmt: skip
        with pytest.raises(ConfigError, match="prediction log"):
            LogSettings(directory=tmp_path, **options)
