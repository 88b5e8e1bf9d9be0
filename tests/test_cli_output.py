"""What the `mlinfra` command tells a person, read from real CLI processes: the crash report of a
real unexpected error, the tables of `status`, `history`, `models list` and `models show`, and
`rollback` in each of its cases."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from _live_env import bring_up
from conftest import IrisProject, JournalProject, wait_for

from mlinfra.errors import DeploymentError


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the boxed tables in `text`, each as its stripped cells."""
    return [
        [cell.strip() for cell in line.rstrip()[1:-1].split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def one_error_line(done, code: int) -> str:  # noqa: ANN001 - CompletedProcess[str]
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip()


# --- the crash handler ------------------------------------------------------------------------


def test_real_unexpected_error_in_a_cli_process_exits_3_with_a_private_crash_log(
    journal_project: JournalProject, tmp_path: Path
) -> None:
    """A broken install of a dependency (dill, which the engine loads providers with), planted
    on the import path of one real `mlinfra refresh`: not a user error, so exit 3 and a log."""
    assert journal_project.cli("up", "--yes").returncode == 0
    broken = tmp_path / "broken-site"
    broken.mkdir()
    (broken / "dill.py").write_text('raise RuntimeError("dill is half installed")\n')
    logs = tmp_path / "logs"
    path = os.pathsep.join(filter(None, [str(broken), os.environ.get("PYTHONPATH")]))
    done = journal_project.cli("refresh", env={"PYTHONPATH": path, "MLINFRA_LOG_DIR": str(logs)})

    assert done.returncode == 3, done.stderr
    (log,) = logs.iterdir()
    assert done.stderr.splitlines() == [
        "unexpected error: RuntimeError: dill is half installed",
        f"The traceback is in {log}; please attach it to a bug report.",
    ]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert text.startswith("mlinfra refresh\n\nTraceback (most recent call last):\n")
    assert f'File "{broken / "dill.py"}", line 1' in text
    assert text.rstrip().endswith("RuntimeError: dill is half installed")


# --- status and history of a stack ------------------------------------------------------------


def test_status_and_history_show_what_ran_who_ran_it_and_how_it_ended(
    journal_project: JournalProject,
) -> None:
    assert journal_project.cli("up", "--yes", env={"LOGNAME": "bob"}).returncode == 0
    killed = journal_project.popen(
        "up", "--yes", env={"LOGNAME": "carol", "SLOW_SECONDS": "60", "CONTENT": "new"}
    )
    try:
        wait_for(lambda: _latest(journal_project)["result"] == "in-progress", "carol's up started")
        locked = journal_project.cli("status")
        assert locked.returncode == 0, locked.stderr
        assert f"locked by `mlinfra up --env dev` (pid {killed.pid} on " in locked.stdout
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    again = journal_project.cli("up", "--yes", env={"LOGNAME": "bob", "CONTENT": "new"})
    assert again.returncode == 0, again.stderr

    status = journal_project.cli("status")
    assert status.returncode == 0, status.stderr
    resources = {row[1]: row[0] for row in table_rows(status.stdout)}
    assert resources == {"group": "Group", "f0": "File", "f1": "File", "f2": "File"}
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(_latest(journal_project)["started"]))
    assert f"last update: up succeeded at {when}" in status.stdout
    assert status.stdout.rstrip().endswith("by bob") and "locked" not in status.stdout

    history = journal_project.cli("history")
    assert history.returncode == 0, history.stderr
    rows = [(r[0], r[1], r[2], r[5], r[7]) for r in table_rows(history.stdout)]
    assert rows == [
        ("3", "up", "succeeded", "bob", "same 1, update 3"),
        ("2", "up", "interrupted", "carol", "-"),
        ("1", "up", "succeeded", "bob", "create 4"),
    ]


def _latest(project: JournalProject) -> dict:
    history = json.loads(project.cli("history", "--json").stdout)
    return history[0] if history else {"result": None}


# --- models list and show ---------------------------------------------------------------------


@pytest.mark.slow
def test_models_list_and_show_show_versions_aliases_metrics_and_who(
    iris_project: IrisProject,
) -> None:
    iris_project.set_gates()
    assert iris_project.cli("up", "--env", "dev", "--yes").returncode == 0
    ann = {"LOGNAME": "ann"}
    trained = [
        json.loads(iris_project.cli(*args, "--json", env=ann).stdout)
        for args in (
            ("train", "--env", "dev", "--search", "none"),
            ("train", "--env", "dev", "--search", "none", "-p", "logisticregression__C=0.05"),
        )
    ]
    assert [t["version"] for t in trained] == [1, 2]
    assert iris_project.cli("deploy", "1", "--env", "dev").returncode == 0
    tagged = iris_project.cli("models", "tag", "2", "stage=candidate", "--env", "dev")
    assert tagged.returncode == 0, tagged.stderr
    shown = json.loads(iris_project.cli("models", "show", "1", "--env", "dev", "--json").stdout)
    metric = shown["lineage"]["metric"]
    scores = [
        json.loads(iris_project.cli("models", "show", str(v), "--env", "dev", "--json").stdout)[
            "metrics"
        ][metric]
        for v in (1, 2)
    ]

    listed = iris_project.cli("models", "list", "--env", "dev")
    assert listed.returncode == 0, listed.stderr
    rows = [[r[0], r[1], r[3], r[4], r[5], r[6]] for r in table_rows(listed.stdout)]
    assert rows == [
        ["iris", "v2", "ann", "", f"{metric} {scores[1]:.4g}", "stage=candidate"],
        ["iris", "v1", "ann", "champion", f"{metric} {scores[0]:.4g}", ""],
    ]

    people = iris_project.cli("models", "show", "1", "--env", "dev")
    assert people.returncode == 0, people.stderr
    lines = people.stdout.splitlines()
    assert lines[0] == "iris v1  aliases: ['champion']"
    assert "  created_by: ann" in lines and "  env: dev" in lines
    assert f"  metric: {metric}" in lines and "  search: None" in lines
    assert f"  artifact: sha256 {shown['artifact_sha256']}" in lines
    metrics = {row[0]: row[1] for row in table_rows(people.stdout)}
    assert metrics == {name: f"{value:.4g}" for name, value in shown["metrics"].items()}
    assert any(line.startswith("  report ") for line in lines) is bool(shown["reports"])


# --- rollback, in each of its cases -----------------------------------------------------------


@pytest.mark.slow
def test_rollback_refuses_without_an_earlier_champion_pins_with_to_and_aborts_a_canary_first(
    iris_project: IrisProject,
) -> None:
    dev = bring_up(iris_project, models=3)
    code = DeploymentError.exit_code
    nothing = one_error_line(dev.cli("rollback"), code)
    assert nothing == "error: nothing is deployed in env 'dev'; nothing to roll back"
    dev.ok("deploy", "1")
    alone = one_error_line(dev.cli("rollback"), code)
    assert alone == (
        "error: no earlier champion of iris in env 'dev' to roll back to; pass --to VERSION"
    )
    assert dev.predict().headers["x-model-version"] == "1", "still served"

    pinned = dev.ok("rollback", "--to", "2")
    assert (pinned["stable"], pinned["canary"]) == (2, None)
    assert dev.aliases() == {3: [], 2: ["champion"], 1: []}
    assert dev.predict().headers["x-model-version"] == "2"

    canary = dev.ok("deploy", "3", "--steps", "50,100", "--interval", "10m")
    assert (canary["phase"], dev.table().canary) == ("progressing", 3)
    back = dev.ok("rollback")
    assert (back["stable"], back["canary"]) == (1, None), "v2's previous champion, canary gone"
    report = dev.ok("rollout", "status")
    assert (report["rollout"]["phase"], report["rollout"]["reason"]) == ("aborted", "rollback")
    moves = [(e["action"], e.get("from"), e.get("to")) for e in report["history"]]
    assert moves == [
        ("deploy", None, 1),
        ("rollback", 1, 2),
        ("step", None, None),
        ("abort", 2, 2),
        ("rollback", 2, 1),
    ]
    assert dev.aliases() == {3: [], 2: [], 1: ["champion"]}, "challenger removed by the abort"
    assert {dev.predict().headers["x-model-version"] for _ in range(20)} == {"1"}

    people = dev.cli("rollout", "status")
    assert people.returncode == 0, people.stderr
    lines = people.stdout.splitlines()
    assert lines[0] == f"env dev serves iris v1 (generation {back['generation']})"
    assert f"rollout {report['rollout']['id']}: v3 aborted, steps 50%, 100%; rollback" in lines
    assert lines[-1].split()[1:4] == ["rollback", "2", "1"]
