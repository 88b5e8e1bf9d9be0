"""Rollouts against a real server process and a real registry, under real steady load.

One server serves env "dev" for the whole module; `baseline` puts iris v1 back as the only
version served before each test, so the tests do not depend on their order.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from _serving import FEATURES, ROW, TARGET, Server, new_registry, register, start_server
from conftest import wait_for
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlinfra._process import ProcessIdentity
from mlinfra.errors import RolloutConflictError, StateError, StateLockedError, ValidationError
from mlinfra.registry import ArtifactRefusedError, ModelNotFoundError, Registry
from mlinfra.rollout import (
    AnalysisPolicy,
    Target,
    abort,
    begin,
    deploy,
    drive,
    promote,
    recover,
    rollback,
    status,
)
from mlinfra.rollout import _run as rollout_run
from mlinfra.rollout._store import AliasMove, Pending
from mlinfra.serving import Deployment, read_acks, read_deployment, write_deployment

GOOD, BROKEN, SLOW, TAMPERED, INACCURATE = 2, 3, 4, 5, 6
# Latency is judged only where a test asks for it: on a loaded 2-core CI runner a healthy
# canary's p99 can double for a second, which is noise to these tests.
FAST_POLICY = AnalysisPolicy(min_samples=30, max_wait_intervals=20, latency_slack_ms=1000.0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_registry(tmp_path_factory.mktemp("rollout") / "registry")
    register(root, LogisticRegression(max_iter=500))
    register(root, DecisionTreeClassifier(max_depth=3, random_state=0))
    # Fitted on three columns, registered with the four-column schema: fails on every request.
    register(root, LogisticRegression(max_iter=500), features=FEATURES.iloc[:, :3],
             schema_features=FEATURES)  # fmt: skip
    register(root, RandomForestClassifier(n_estimators=150, random_state=0))  # ~8 ms a row
    register(root, DecisionTreeClassifier(max_depth=1, random_state=0))
    with Registry.open(root) as opened:
        digest = opened.get("iris", TAMPERED).artifact_sha256
    register(root, DecisionTreeClassifier(max_depth=1, random_state=0))  # right two times in three
    artifact = root / "artifacts" / digest[:2] / digest[2:]
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    return root


@pytest.fixture(scope="module")
def server(registry: Path) -> Iterator[Server]:
    server = start_server(registry)
    yield server
    server.stop()


@pytest.fixture
def target(server: Server, registry: Path) -> Target:
    """The env with iris v1 alone serving, no rollout running."""
    target = Target(registry=registry, env="dev", url=server.url, load_timeout=30)
    rollout = target.store.rollout()
    if rollout is not None and rollout.active:
        abort(target, reason="test baseline")
    table = read_deployment(target.directory)
    if table is None or table.stable != 1:
        begin(target, "1")
    return target


class Load:
    """Steady traffic from a thread: every answer's status and version are counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: Counter[tuple[int, str | None]] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    self._one(client)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def _one(self, client: httpx.Client) -> None:
        answer = client.post(f"{self.url}/invocations", json={"instances": [ROW]})
        self.answers[(answer.status_code, answer.headers.get("x-model-version"))] += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def statuses(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        for (code, _version), count in self.answers.items():
            counts[code] += count
        return counts


class LabelledLoad(Load):
    """Traffic over the whole iris set, each answer followed by its true label."""

    rng = np.random.default_rng(0)

    def _one(self, client: httpx.Client) -> None:
        index = int(self.rng.integers(len(FEATURES)))
        row = FEATURES.iloc[index].tolist()
        answer = client.post(f"{self.url}/invocations", json={"instances": [row]})
        self.answers[(answer.status_code, answer.headers.get("x-model-version"))] += 1
        if answer.status_code == 200:
            feedback = {
                "version": answer.headers["x-model-version"],
                "predictions": answer.json()["predictions"],
                "labels": [int(TARGET.iloc[index])],
            }
            client.post(f"{self.url}/feedback", json=feedback).raise_for_status()


def aliases(target: Target) -> dict[str, int]:
    with Registry.open(target.registry) as opened:
        return opened.aliases("iris", env="dev")


def last_alias_reason(target: Target, alias: str) -> str:
    with Registry.open(target.registry) as opened:
        return opened.alias_history("iris", env="dev", alias=alias)[-1].reason


def test_direct_deploy_serves_at_once_and_moves_the_champion(
    target: Target, server: Server
) -> None:
    table = begin(target, "v2")
    assert table.stable == GOOD and table.canary is None
    assert server.post("/invocations", json={"instances": [ROW]}).headers["x-model-version"] == "2"
    assert aliases(target)["champion"] == GOOD
    assert last_alias_reason(target, "champion") == "deployed directly"
    event = target.store.history()[-1]
    assert (event["action"], event["from"], event["to"]) == ("deploy", 1, GOOD)


def test_healthy_canary_is_promoted_step_by_step_under_load_without_a_failed_request(
    target: Target,
) -> None:
    with Load(target.url) as load:
        rollout = deploy(
            target, "2", wait=True, steps=(25, 50, 100), interval_seconds=0.5, policy=FAST_POLICY
        )
    assert rollout.phase == "promoted", rollout.reason
    assert [(r.weight, r.verdict) for r in rollout.results] == [
        (25, "pass"),
        (50, "pass"),
        (100, "pass"),
    ]
    assert all(r.canary["requests"] >= 30 for r in rollout.results)
    assert load.statuses() == Counter({200: sum(load.answers.values())}) and not load.failures
    assert {version for _code, version in load.answers} == {"1", "2"}
    table = read_deployment(target.directory)
    assert (table.stable, table.canary) == (GOOD, None)
    assert aliases(target) == {"champion": GOOD}
    assert last_alias_reason(target, "champion") == "promoted: analysis passed at every step"


def test_canary_that_errors_is_rolled_back_automatically_with_the_reason(target: Target) -> None:
    with Load(target.url) as load:
        rollout = deploy(
            target, "3", wait=True, steps=(20, 100), interval_seconds=0.5, policy=FAST_POLICY
        )
    assert rollout.phase == "aborted"
    assert "error rate 100.00%" in rollout.reason and rollout.results[-1].verdict == "fail"
    assert read_deployment(target.directory).canary is None
    assert read_deployment(target.directory).stable == 1
    assert "challenger" not in aliases(target)
    assert "aborted: error rate" in last_alias_reason(target, "challenger")
    assert load.statuses()[500] > 0  # the canary's share failed, and only until the abort
    after = httpx.post(f"{target.url}/invocations", json={"instances": [ROW]}, timeout=10)
    assert after.status_code == 200 and after.headers["x-model-version"] == "1"


def test_slow_canary_is_rolled_back_automatically_for_latency(target: Target) -> None:
    policy = FAST_POLICY.model_copy(update={"latency_slack_ms": 2.0})
    with Load(target.url):
        rollout = deploy(
            target, "4", wait=True, steps=(20, 100), interval_seconds=0.6, policy=policy
        )
    assert rollout.phase == "aborted"
    assert re.match(r"p\d+ latency", rollout.reason), rollout.reason
    assert read_deployment(target.directory).stable == 1
    assert target.store.history()[-1]["reason"] == rollout.reason


def test_less_accurate_canary_on_fed_back_labels_is_rolled_back(target: Target) -> None:
    policy = FAST_POLICY.model_copy(update={"max_psi": 100.0})  # judge on accuracy alone
    with LabelledLoad(target.url):
        rollout = deploy(
            target, str(INACCURATE), wait=True, steps=(50, 100), interval_seconds=1.0, policy=policy
        )
    assert rollout.phase == "aborted" and rollout.reason.startswith("accuracy"), rollout.reason
    canary, stable = rollout.results[-1].canary, rollout.results[-1].stable
    assert canary["accuracy"] < 0.8 < stable["accuracy"]


def test_thin_traffic_gives_no_verdict_and_pauses_for_a_human(target: Target) -> None:
    policy = AnalysisPolicy(min_samples=50, max_wait_intervals=2)
    for _ in range(5):
        httpx.post(f"{target.url}/invocations", json={"instances": [ROW]}, timeout=10)
    rollout = deploy(target, "2", wait=True, steps=(50, 100), interval_seconds=0.3, policy=policy)
    assert rollout.phase == "paused" and rollout.results[-1].verdict == "inconclusive"
    assert "50 needed" in rollout.reason and "mlinfra promote" in rollout.reason
    assert read_deployment(target.directory).canary == GOOD  # traffic stays split meanwhile
    aborted = abort(target, reason="not enough traffic to judge")
    assert aborted.phase == "aborted" and read_deployment(target.directory).canary is None


def test_driver_that_cannot_read_metrics_pauses_the_rollout_instead_of_leaving_it_unwatched(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout_run, "_SCRAPE_PATIENCE", 0.5)  # not 15 s for a restarting server
    blind = dataclasses.replace(target, url="http://127.0.0.1:9")  # nothing listens there
    rollout = deploy(blind, "2", wait=True, steps=(50, 100), interval_seconds=0.3)
    assert rollout.phase == "paused" and "cannot read metrics" in rollout.reason, rollout.reason
    assert "mlinfra abort" in rollout.reason
    assert read_deployment(target.directory).canary == GOOD  # held where it was
    assert abort(target).phase == "aborted"


def test_deploy_promote_and_rollbacks_under_steady_load_fail_no_request(target: Target) -> None:
    with Load(target.url) as load:
        begin(target, "2", steps=(50, 100), interval_seconds=60)
        with pytest.raises(RolloutConflictError, match="in progress") as busy:
            begin(target, "4", steps=(50, 100))
        assert busy.value.exit_code == 8
        time.sleep(0.3)
        promoted = promote(target, reason="looks good")
        time.sleep(0.3)
        back = rollback(target)
        time.sleep(0.3)
        again = begin(target, "2")
        time.sleep(0.3)
        pinned = rollback(target, to="1", reason="pin v1")
        time.sleep(0.3)
    assert promoted.phase == "promoted" and promoted.reason == "looks good"
    assert (back.stable, again.stable, pinned.stable) == (1, GOOD, 1)
    assert load.statuses() == Counter({200: sum(load.answers.values())}) and not load.failures
    assert load.answers, "the load ran"
    with Registry.open(target.registry) as opened:
        moves = opened.alias_history("iris", env="dev", alias="champion")[-4:]
    assert [(m.from_version, m.to_version, m.reason) for m in moves] == [
        (1, GOOD, "promoted: looks good"),
        (GOOD, 1, "rollback from v2"),
        (1, GOOD, "deployed directly"),
        (GOOD, 1, "pin v1"),
    ]


def test_tampered_artifact_on_deploy_is_refused_by_the_server_and_v1_keeps_serving(
    target: Target,
) -> None:
    for steps in (None, (10, 100)):
        before = read_deployment(target.directory)
        with pytest.raises(ValidationError, match="modified after registration.*v1 keeps serving"):
            begin(target, str(TAMPERED), steps=steps)
        after = read_deployment(target.directory)
        assert (after.stable, after.canary) == (1, None)
        assert after.generation == before.generation + 2  # the refused table, then the old one
    rollout = target.store.rollout()
    assert target.store.pending() is None and (rollout is None or not rollout.active)
    assert "challenger" not in aliases(target) and aliases(target)["champion"] == 1
    answer = httpx.post(f"{target.url}/invocations", json={"instances": [ROW]}, timeout=10)
    assert answer.headers["x-model-version"] == "1"


def test_with_no_server_running_the_deploy_itself_loads_and_refuses_the_artifact(
    registry: Path,
) -> None:
    offline = Target(registry=registry, env="offline", url="http://127.0.0.1:9")
    with pytest.raises(ArtifactRefusedError, match="modified after registration"):
        begin(offline, str(TAMPERED))
    assert read_deployment(offline.directory) is None
    assert begin(offline, "2").stable == GOOD  # a sound one is recorded for the server to come


def test_detached_driver_sees_the_rollout_through_after_the_command_returns(
    target: Target,
) -> None:
    with Load(target.url):
        started = deploy(target, "2", steps=(50, 100), interval_seconds=0.4, policy=FAST_POLICY)
        assert started.phase == "progressing"
        deadline = time.monotonic() + 30
        while target.store.rollout().active and time.monotonic() < deadline:
            time.sleep(0.1)
    report = status(target)
    assert report["rollout"]["phase"] == "promoted", (
        target.directory / "controller.log"
    ).read_text()
    assert report["deployment"]["stable"] == GOOD
    log = target.directory / "controller.log"  # the driver's last line follows the promotion
    wait_for(lambda: "promoted" in log.read_text(), "the driver logged the promotion")
    wait_for(lambda: not status(target)["controller_running"], "the driver exited")


def crash_after_writing_the_table(target: Target, version: int) -> Deployment:
    """What a `deploy` killed between writing the table and moving the aliases leaves behind."""
    table = read_deployment(target.directory)
    written = table.model_copy(update={"generation": table.generation + 1, "stable": version})
    target.store.set_pending(
        Pending(
            model="iris",
            generation=written.generation,
            moves=[AliasMove(alias="champion", version=version, reason="deployed directly")],
            event={"action": "deploy", "model": "iris", "from": 1, "to": version},
            actor="crashed-run",
            previous=table,
        )
    )
    write_deployment(target.directory, written)
    return written


def test_recover_finishes_an_interrupted_transition(target: Target) -> None:
    crash_after_writing_the_table(target, GOOD)
    with target.store.locked():
        recover(target)
    assert aliases(target)["champion"] == GOOD and target.store.pending() is None
    assert target.store.history()[-1]["actor"] == "crashed-run"


def test_recover_undoes_an_interrupted_transition_the_server_refused(
    target: Target,
) -> None:
    refused = crash_after_writing_the_table(target, TAMPERED)
    deadline = time.monotonic() + 20
    while not any(a.failed == refused.generation for a in read_acks(target.directory)):
        assert time.monotonic() < deadline, "the server never looked at the table"
        time.sleep(0.05)
    with target.store.locked():
        recover(target)
    after = read_deployment(target.directory)
    assert (after.stable, after.generation) == (1, refused.generation + 1)
    assert aliases(target)["champion"] == 1 and target.store.pending() is None


def test_detached_driver_waits_for_the_lock_a_stopping_driver_still_holds(target: Target) -> None:
    """The test process holds the real controller lock, as the driver of a rollout aborted a
    moment ago does for up to a tick; the new driver must wait for it, not exit."""
    with Load(target.url):
        with target.store.controller():
            started = deploy(target, "2", steps=(50, 100), interval_seconds=0.4, policy=FAST_POLICY)
            time.sleep(1.0)
            assert target.store.rollout().controller_pid is None  # still waiting for the lock
        deadline = time.monotonic() + 30
        while target.store.rollout().active and time.monotonic() < deadline:
            time.sleep(0.1)
    final = target.store.rollout()
    assert final.id == started.id and final.phase == "promoted", (
        target.directory / "controller.log"
    ).read_text()


def test_driver_that_never_gets_the_lock_pauses_the_rollout_with_the_reason(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout_run, "_LOCK_PATIENCE", 0.5)
    with target.store.controller():  # a real lock that stays held: no driver gets it
        rollout = deploy(target, "2", wait=True, steps=(50, 100), interval_seconds=0.3)
    assert rollout.phase == "paused" and "controller lock" in rollout.reason, rollout.reason
    assert "mlinfra abort" in rollout.reason and rollout.controller_pid is None
    assert read_deployment(target.directory).canary == GOOD  # held where it was
    assert abort(target).phase == "aborted"


def claimed_by(target: Target, driver: ProcessIdentity) -> None:
    with target.store.locked():
        claimed = target.store.rollout()
        claimed.controller_pid, claimed.controller_started = driver.pid, driver.started
        target.store.save(claimed)


def test_driver_for_a_rollout_a_live_driver_claimed_still_refuses_to_drive_it_twice(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout_run, "_LOCK_PATIENCE", 0.3)
    begin(target, "2", steps=(50, 100), interval_seconds=60)
    with target.store.controller():
        claimed_by(target, ProcessIdentity.current())  # alive: this test process
        with pytest.raises(StateLockedError, match="already driving"):
            drive(target)
    assert target.store.rollout().phase == "progressing"


def test_recorded_driver_whose_pid_went_to_another_process_counts_as_dead(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pid recorded for the driver is now this test process's, which started later than
    the driver did: the driver is dead, so the rollout is paused, not left to a stranger."""
    monkeypatch.setattr(rollout_run, "_LOCK_PATIENCE", 0.3)
    begin(target, "2", steps=(50, 100), interval_seconds=60)
    me = ProcessIdentity.current()
    with target.store.controller():
        claimed_by(target, ProcessIdentity(pid=me.pid, started=me.started - 3600))
        assert status(target)["driver"]["state"] == "dead"
        rollout = drive(target)
    assert rollout.phase == "paused" and "controller lock" in rollout.reason, rollout.reason


def test_rollout_status_skips_a_history_line_torn_by_a_crash_and_appends_stay_whole(
    target: Target,
) -> None:
    history = target.directory / "history.jsonl"
    events = target.store.history()
    with history.open("a") as handle:
        handle.write('{"at": "2025-01-01T00:00:00", "action": "ste')  # killed mid-append
    assert status(target, history=100)["history"] == events[-100:]
    begin(target, "2")
    assert target.store.history()[:-1] == events
    assert target.store.history()[-1]["action"] == "deploy"
    assert all(json.loads(line) for line in history.read_text().splitlines())


def test_a_rollback_that_cannot_happen_leaves_the_running_canary_alone(target: Target) -> None:
    begin(target, "2", steps=(50, 100), interval_seconds=600)
    with pytest.raises(ModelNotFoundError, match="no version 99"):
        rollback(target, to="99")
    rollout = target.store.rollout()
    assert rollout is not None and rollout.phase == "progressing"
    assert read_deployment(target.directory).canary == 2


def test_damaged_rollout_records_are_one_line_naming_the_file(target: Target) -> None:
    record = target.directory / "rollout.json"
    begin(target, "2", steps=(50, 100), interval_seconds=600)
    kept = record.read_bytes()
    try:
        record.write_text('{"id": "torn')
        with pytest.raises(
            StateError, match=r"rollout\.json cannot be read .*put back a good copy"
        ):
            status(target)
    finally:
        record.write_bytes(kept)
    history = target.directory / "history.jsonl"
    before = target.store.history()
    lines = history.read_text().splitlines()
    history.write_text("\n".join([*lines[:-1], "garbage, not JSON", lines[-1]]) + "\n")
    assert target.store.history() == before, "a damaged line in the middle is skipped"
