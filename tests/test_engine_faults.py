"""Faults done for real: `mlinfra up` killed with SIGKILL, two ups at once, stale locks."""

from __future__ import annotations

import json
import random
import signal
import time

from conftest import JournalProject, wait_for


def _wait_for_journal(project: JournalProject, lines: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(project.journal()) < lines:
        assert time.monotonic() < deadline, "the up never got going"
        time.sleep(0.02)


def test_second_up_fails_fast_naming_the_lock_holder(journal_project):
    first = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "1.5"})
    _wait_for_journal(journal_project, 1)
    second = journal_project.cli("up", "--yes")
    assert first.poll() is None, "refused while the first still runs: it did not wait for it"
    assert second.returncode == 4
    assert (
        f"pid {first.pid}" in second.stderr and "locked by `mlinfra up --env dev`" in second.stderr
    )
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.wait(timeout=60) == 0
    status = json.loads(journal_project.cli("status", "--json").stdout)
    assert len(status["resources"]) == 4 and status["lock"] is None


def _history(project: JournalProject) -> list[dict]:
    return json.loads(project.cli("history", "--json").stdout)


def _kill_while_it_works(project: JournalProject, rng: random.Random, content: str) -> None:
    """Start `up` (six files to write, 0.2 s each) and SIGKILL it at a random moment after it
    wrote its first one. Only a kill that cut the run short counts: its update still in
    progress in the history and files left unwritten; a late one is tried again."""
    for attempt in range(5):
        lines = len(project.journal())
        knobs = {"SLOW_SECONDS": "0.2", "COUNT": "6", "CONTENT": f"{content}.{attempt}"}
        process = project.popen("up", "--yes", env=knobs)
        _wait_for_journal(project, lines + 1)
        time.sleep(rng.uniform(0.0, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = len(project.journal()) - lines
        if _history(project)[0]["result"] == "in-progress" and written < 6:
            return
    raise AssertionError("no kill landed while `up` was still writing files")


def test_killed_up_repeatedly_then_up_finishes_with_one_record_each(journal_project):
    rng = random.Random(7)
    for kill in range(4):
        _kill_while_it_works(journal_project, rng, f"run{kill}")
    final = journal_project.cli("up", "--yes", env={"COUNT": "6", "CONTENT": "final"})
    assert final.returncode == 0, final.stderr
    status = json.loads(journal_project.cli("status", "--json").stdout)
    names = [r["name"] for r in status["resources"]]
    assert sorted(names) == sorted(["group", *(f"f{i}" for i in range(6))])
    files = sorted(journal_project.out.iterdir())
    assert [p.name for p in files] == [f"f{i}.txt" for i in range(6)]
    assert {p.read_text() for p in files} == {"final"}
    history = _history(journal_project)
    assert history[0]["result"] == "succeeded"
    results = [h["result"] for h in history[1:]]
    assert set(results) <= {"interrupted", "succeeded"} and results.count("interrupted") >= 4
    again = journal_project.cli("preview", "--json", env={"COUNT": "6", "CONTENT": "final"})
    assert json.loads(again.stdout)["changed"] is False


def test_force_unlock_takes_a_lock_from_a_live_holder(journal_project):
    assert journal_project.cli("up", "--yes").returncode == 0
    (journal_project.out / "f2.txt").unlink()  # drift, for the forced refresh to record
    holder = journal_project.popen("up", "--yes", env={"SLOW_SECONDS": "60", "CONTENT": "new"})
    try:
        taken = wait_for(lambda: _lock(journal_project), "the holder took the lock")
        assert taken["pid"] == holder.pid
        forced = journal_project.cli("refresh", "--apply", "--force-unlock", "--json")
        assert forced.returncode == 0, forced.stderr
        assert holder.poll() is None, "the holder is still alive, its lock taken from it"
        assert _lock(journal_project) is None, "released by the refresh, not the holder's"
        drift = {r["name"]: r["status"] for r in json.loads(forced.stdout)["resources"]}
        assert drift["f2"] == "gone" and drift["f0"] == "ok"
        status = json.loads(journal_project.cli("status", "--json").stdout)
        assert "f2" not in [r["name"] for r in status["resources"]], "the refresh applied"
        latest, taken = _history(journal_project)[:2]
        assert (latest["kind"], latest["result"]) == ("refresh", "succeeded")
        assert (taken["kind"], taken["result"]) == ("up", "interrupted")
    finally:
        holder.kill()
        holder.wait()


def _lock(project: JournalProject) -> dict | None:
    return json.loads(project.cli("status", "--json").stdout)["lock"]


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
