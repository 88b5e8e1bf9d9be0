"""Faults done for real: `mlinfra up` killed with SIGKILL, two ups at once, stale locks."""

from __future__ import annotations

import json
import random
import signal
import time

from conftest import JournalProject


def _wait_for_journal(project: JournalProject, lines: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(project.journal()) < lines:
        assert time.monotonic() < deadline, "the up never got going"
        time.sleep(0.02)


def test_second_up_fails_fast_naming_the_lock_holder(journal_project):
    first = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "1.5"})
    _wait_for_journal(journal_project, 1)
    started = time.monotonic()
    second = journal_project.cli("up", "--yes")
    elapsed = time.monotonic() - started
    assert second.returncode == 4
    assert (
        f"pid {first.pid}" in second.stderr and "locked by `mlinfra up --env dev`" in second.stderr
    )
    assert len(second.stderr.strip().splitlines()) == 1
    assert elapsed < 3.0, "includes interpreter start-up; the lock check itself is immediate"
    assert first.wait(timeout=60) == 0
    status = json.loads(journal_project.cli("status", "--json").stdout)
    assert len(status["resources"]) == 4 and status["lock"] is None


def test_killed_up_repeatedly_then_up_finishes_with_one_record_each(journal_project):
    rng = random.Random(7)
    for _ in range(4):
        process = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "0.2", "COUNT": "6"})
        time.sleep(rng.uniform(0.5, 1.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = journal_project.cli("up", "--yes", env={"COUNT": "6"})
    assert final.returncode == 0, final.stderr
    status = json.loads(journal_project.cli("status", "--json").stdout)
    names = [r["name"] for r in status["resources"]]
    assert sorted(names) == sorted(["group", *(f"f{i}" for i in range(6))])
    assert sorted(p.name for p in journal_project.out.iterdir()) == [f"f{i}.txt" for i in range(6)]
    history = json.loads(journal_project.cli("history", "--json").stdout)
    assert history[0]["result"] == "succeeded"
    assert {h["result"] for h in history[1:]} <= {"interrupted", "succeeded"}
    again = journal_project.cli("preview", "--json", env={"COUNT": "6"})
    assert json.loads(again.stdout)["changed"] is False


def test_force_unlock_takes_a_lock_from_a_live_holder(journal_project):
    holder = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "3"})
    try:
        _wait_for_journal(journal_project, 1)
        status = json.loads(journal_project.cli("status", "--json").stdout)
        assert status["lock"]["pid"] == holder.pid
        forced = journal_project.cli("refresh", "--apply", "--force-unlock")
        assert forced.returncode == 0, forced.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_create_cut_off_and_then_dropped_from_the_program_is_reported(journal_project):
    process = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "2"})
    _wait_for_journal(journal_project, 1)
    time.sleep(0.5)  # f1's create is now under way, sleeping before it writes anything
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = journal_project.cli("up", "--yes", "--json", env={"COUNT": "1"})
    assert result.returncode == 0, result.stderr
    (warning,) = json.loads(result.stdout)["warnings"]
    assert "create of f1 was interrupted" in warning and "f1.txt" in warning
    assert "s3cr3t" not in result.stdout, "the secret input is masked"
