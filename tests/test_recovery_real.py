"""A real `mlinfra deploy` killed with SIGKILL half way through a transition, and the next real
command finishing (or undoing) what it left.

Where the kill lands is made certain, not left to timing: the env's server worker is stopped
(SIGSTOP) so that the deploy, having written its intent (`pending.json`) and the new table, waits
for the worker to load it; the test kills it there, then lets the worker go on.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from _live_env import LiveEnv, bring_up, frozen
from conftest import IrisProject, wait_for

from mlinfra.serving import read_acks

KILLED = {"LOGNAME": "killed-run"}  # the acting user recorded by the command that is killed


@pytest.fixture
def dev(iris_project: IrisProject) -> LiveEnv:
    live = bring_up(iris_project, "dev")
    assert live.ok("deploy", "1")["generation"] == 1
    assert live.worker_pids(), "the server's worker acknowledges tables"
    return live


def kill_deploy_waiting_for_the_server(dev: LiveEnv, version: str) -> subprocess.Popen[str]:
    """Start `mlinfra deploy VERSION` and kill it once it wrote its intent and the new table,
    with the worker stopped so it cannot have moved on; called with the worker frozen."""
    deploying = dev.popen("deploy", version, env=KILLED)
    wait_for(lambda: dev.table().generation == 2, "the deploy wrote its table")
    assert deploying.poll() is None, "the deploy is waiting for the worker"
    assert (dev.directory / "pending.json").exists(), "its intent is recorded"
    deploying.send_signal(signal.SIGKILL)
    assert deploying.wait(timeout=10) == -signal.SIGKILL
    return deploying


def test_deploy_killed_before_moving_aliases_is_finished_by_the_next_command(dev: LiveEnv) -> None:
    with frozen(dev.worker_pids()):
        kill_deploy_waiting_for_the_server(dev, "2")
        assert dev.aliases()[1] == ["champion"], "killed before it moved the alias"
        assert [event["to"] for event in dev.history()] == [1], "nor recorded the deploy"
    wait_for(lambda: dev.predict().headers["x-model-version"] == "2", "the worker serves v2")

    # Rolling back needs v2 recorded as champion after v1: the deploy must be finished first.
    back = dev.ok("rollback")
    assert (back["stable"], back["generation"]) == (1, 3)
    assert not (dev.directory / "pending.json").exists()
    steps = [(e["action"], e["from"], e["to"], e["actor"]) for e in dev.history()]
    assert steps[1:] == [("deploy", 1, 2, "killed-run"), ("rollback", 2, 1, steps[0][3])]
    assert dev.aliases() == {2: [], 1: ["champion"]}
    assert dev.predict().headers["x-model-version"] == "1"


def test_deploy_killed_while_the_server_refuses_its_table_is_undone_by_the_next_command(
    dev: LiveEnv,
) -> None:
    with frozen(dev.worker_pids()):
        kill_deploy_waiting_for_the_server(dev, "2")
        dev.tamper(2)  # the worker, let go, refuses the table the killed deploy wrote
    wait_for(lambda: [a.failed for a in read_acks(dev.directory)] == [2], "the worker refused v2")
    again = dev.ok("deploy", "1")
    assert (again["stable"], again["generation"]) == (1, 3), "the previous table, put back"
    assert not (dev.directory / "pending.json").exists()
    assert dev.aliases() == {2: [], 1: ["champion"]}
    assert [(e["action"], e["to"]) for e in dev.history()] == [("deploy", 1)]
    assert dev.predict().headers["x-model-version"] == "1"
