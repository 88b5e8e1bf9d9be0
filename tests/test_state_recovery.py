"""Damaged, emptied and restored state, for real: pages overwritten in real SQLite files, the real
CLI in child processes, its backups and `mlinfra state recover`, the secret key, Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import MLINFRA, JournalProject, cli_env, run_cli

from mlinfra.errors import StateError, StateLockedError
from mlinfra.registry import NewVersion, Registry, dump_model, initialize
from mlinfra.state import KEEP_BACKUPS, plan_recovery, recover

GARBAGE = b"\xde\xad\xbe\xef"


def overwrite_page(path: Path, page: int) -> bytes:
    """Write garbage over page `page` (0-based) of a database of more pages; the new bytes."""
    with closing(sqlite3.connect(path)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    assert pages > page + 2, f"{path} has only {pages} pages"
    with open(path, "r+b") as handle:
        handle.seek(page_size * page)
        handle.write(GARBAGE * (page_size // len(GARBAGE)))
    return path.read_bytes()


def one_line_error(result, code: int, logs: Path) -> str:
    """The CLI failed with `code`, one line on stderr, and wrote no crash log (no bug)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert not logs.exists() or not any(logs.iterdir()), "a crash log was written"
    return lines[0]


def state_db(project: JournalProject) -> Path:
    return project.root / ".mlinfra" / "state.db"


def backups(project: JournalProject) -> list[str]:
    return sorted(p.name for p in (project.root / ".mlinfra" / "backups").iterdir())


def up(project: JournalProject, *args: str) -> dict:
    result = project.cli("up", "--yes", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_page_overwritten_in_the_middle_of_state_db_is_one_line_and_exit_4(
    journal_project, tmp_path
):
    up(journal_project)
    up(journal_project)
    overwrite_page(state_db(journal_project), 2)
    logs = tmp_path / "logs"
    journal = journal_project.journal()
    for command in (["status"], ["history"], ["up", "--yes"], ["destroy", "--yes"]):
        result = journal_project.cli(*command, env={"MLINFRA_LOG_DIR": str(logs)})
        line = one_line_error(result, 4, logs)
        assert line.startswith(f"error: {state_db(journal_project)} is damaged (SQLite: ")
        assert "Page 3" in line, "SQLite's own finding, from its check"
        assert line.endswith("run `mlinfra state recover` to restore the newest good backup")
    assert journal_project.journal() == journal, "no provider was called"


def test_a_damaged_page_no_read_touches_is_caught_by_the_backup_before_up_changes_anything(
    journal_project, monkeypatch
):
    engine = journal_project.engine()
    engine.up()
    engine.close()
    with closing(sqlite3.connect(state_db(journal_project))) as db:
        (kept_root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'kept'")
    overwrite_page(state_db(journal_project), kept_root[0] - 1)
    before = backups(journal_project)
    monkeypatch.setenv("CONTENT", "changed")
    engine = journal_project.engine()
    assert len(engine.resources()) == 4, "reads that miss the page still work"
    with pytest.raises(StateError, match="is damaged .*mlinfra state recover"):
        engine.up()
    assert backups(journal_project) == before, "a damaged copy is not kept"
    assert not any("update" in line for line in journal_project.journal())


def test_a_page_overwritten_in_the_middle_of_registry_db_is_one_line_and_exit_4(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(Path(__file__).parent / "fixtures" / "journal", root)
    (root / "stack" / "__main__.py").write_text(
        'import os\nimport pulumi\npulumi.export("registry_path", os.environ["REGISTRY"])\n'
    )
    registry_root = tmp_path / "registry"
    initialize(registry_root)
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    features, target = load_iris(return_X_y=True, as_frame=True)
    model = dump_model(DecisionTreeClassifier(max_depth=2).fit(features, target))
    with Registry.open(registry_root) as registry:
        for number in range(4):
            registry.register(
                NewVersion(
                    model="iris",
                    task="classification",
                    env="dev",
                    model_bytes=model,
                    params={"i": number},
                    metrics={"accuracy": 1.0},
                    lineage={},
                    documents={"search": {"trials": list(range(400))}},
                )
            )
    env = {"MLINFRA_ENV": "dev", "REGISTRY": str(registry_root)}
    assert run_cli("up", "--yes", cwd=root, env=env).returncode == 0
    listed = run_cli("models", "list", "--json", cwd=root, env=env)
    assert len(json.loads(listed.stdout)) == 4, listed.stderr
    damaged = overwrite_page(registry_root / "registry.db", 2)

    logs = tmp_path / "logs"
    result = run_cli("models", "list", cwd=root, env={**env, "MLINFRA_LOG_DIR": str(logs)})
    line = one_line_error(result, 4, logs)
    assert line.startswith(f"error: {registry_root / 'registry.db'} is damaged (SQLite: ")
    assert "restore registry.db from your own backup of it" in line
    assert (registry_root / "registry.db").read_bytes() == damaged, "the file was left as it was"


def test_state_recover_restores_the_newest_good_backup_and_up_then_changes_nothing(
    journal_project, tmp_path
):
    up(journal_project)
    up(journal_project)  # its backup holds the four resources
    assert len(backups(journal_project)) == 2
    damaged = overwrite_page(state_db(journal_project), 2)
    logs = tmp_path / "logs"
    env = {"MLINFRA_LOG_DIR": str(logs)}

    asked = journal_project.cli("state", "recover", env=env)
    assert "needs confirmation" in one_line_error(asked, 2, logs)
    assert state_db(journal_project).read_bytes() == damaged, "nothing moved without --yes"

    result = journal_project.cli("state", "recover", "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["state"]["problem"].startswith("damaged (SQLite: ")
    assert Path(done["restored"]["path"]).name == backups(journal_project)[-1]
    assert done["restored"]["resources"] == {"dev": 4}
    aside = Path(done["moved_aside"][0])
    assert aside.name.startswith("state.db.damaged-") and aside.read_bytes() == damaged
    assert oct(state_db(journal_project).stat().st_mode & 0o777) == "0o600"

    journal = journal_project.journal()
    again = up(journal_project)
    assert again["changed"] is False and journal_project.journal() == journal
    history = json.loads(journal_project.cli("history", "--json").stdout)
    assert [h["result"] for h in history] == ["succeeded", "interrupted", "succeeded"]
    assert "restored from a backup" in history[1]["error"]
    assert not logs.exists()


def test_recover_passes_over_a_damaged_backup_and_says_what_it_would_restore(journal_project):
    for _ in range(3):
        up(journal_project)
    names = backups(journal_project)
    overwrite_page(journal_project.root / ".mlinfra" / "backups" / names[-1], 2)
    overwrite_page(state_db(journal_project), 2)
    listed = json.loads(journal_project.cli("state", "backups", "--json").stdout)
    assert [Path(b["path"]).name for b in listed] == names[::-1], "newest first"
    assert listed[0]["problem"].startswith("damaged") and listed[1]["problem"] is None
    result = journal_project.cli("state", "recover", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"from {journal_project.root / '.mlinfra' / 'backups' / names[-2]}" in result.stdout
    assert "before update 2 (up of dev), with 4 resources (dev 4)" in result.stdout


def test_recover_of_a_sound_state_restores_nothing_unless_given_a_file(journal_project, tmp_path):
    up(journal_project)
    up(journal_project, "--refresh")
    sound = state_db(journal_project).read_bytes()
    result = journal_project.cli("state", "recover", "--yes")
    assert result.returncode == 0 and "is sound" in result.stdout
    assert state_db(journal_project).read_bytes() == sound

    not_state = tmp_path / "notes.db"
    not_state.write_bytes(b"not a database at all" * 500)
    refused = journal_project.cli("state", "recover", "--yes", "--from", str(not_state))
    assert refused.returncode == 4 and "cannot restore" in refused.stderr
    assert state_db(journal_project).read_bytes() == sound

    first = journal_project.root / ".mlinfra" / "backups" / backups(journal_project)[0]
    result = journal_project.cli("state", "recover", "--yes", "--json", "--from", str(first))
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["restored"]["resources"] == {} and Path(done["moved_aside"][0]).name.startswith(
        "state.db.replaced-"
    )
    assert json.loads(journal_project.cli("status", "--json").stdout)["resources"] == []


def test_backups_are_owner_only_and_the_newest_ten_are_kept(journal_project, monkeypatch):
    engine = journal_project.engine()
    for round_ in range(KEEP_BACKUPS + 2):
        monkeypatch.setenv("CONTENT", f"round {round_}")
        engine.up()
    engine.close()
    folder = journal_project.root / ".mlinfra" / "backups"
    names = backups(journal_project)
    assert len(names) == KEEP_BACKUPS
    ids = sorted(int(name.rsplit("-", 1)[1].removesuffix(".db")) for name in names)
    assert ids == list(range(3, KEEP_BACKUPS + 3)), "the oldest two were dropped"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert {oct((folder / name).stat().st_mode & 0o777) for name in names} == {"0o600"}
    assert sorted(p.name for p in journal_project.root.joinpath(".mlinfra").iterdir()) == [
        "backups",
        "secret.key",
        "state.db",
    ], "a backup is one file: no -wal, no -shm, no partial copy left"
    for name in names:
        assert b"s3cr3t" not in (folder / name).read_bytes(), "secrets stay encrypted"


@pytest.mark.parametrize("loss", ["emptied", "deleted"])
def test_a_lost_state_db_is_refused_naming_recover_and_creates_nothing(
    journal_project, tmp_path, loss
):
    up(journal_project)
    up(journal_project)
    if loss == "emptied":
        state_db(journal_project).write_bytes(b"")
    else:
        state_db(journal_project).unlink()
    journal = journal_project.journal()
    logs = tmp_path / "logs"
    for command in (["up", "--yes"], ["status"]):
        line = one_line_error(
            journal_project.cli(*command, env={"MLINFRA_LOG_DIR": str(logs)}), 4, logs
        )
        assert str(state_db(journal_project)) in line and "mlinfra state recover" in line
    assert journal_project.journal() == journal, "nothing was created again"
    assert journal_project.cli("state", "recover", "--yes").returncode == 0
    assert up(journal_project)["changed"] is False


def test_an_empty_state_db_in_a_new_project_is_a_new_state(journal_project):
    """A run killed as it created the file leaves it empty: nothing shows state existed."""
    state_db(journal_project).parent.mkdir()
    state_db(journal_project).write_bytes(b"")
    assert len(up(journal_project)["steps"]) == 4


def test_a_secret_key_open_to_others_is_used_with_a_one_line_warning(journal_project):
    up(journal_project)
    key = journal_project.root / ".mlinfra" / "secret.key"
    key.chmod(0o644)
    result = journal_project.cli("outputs", "--json", "--show-secrets")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["token"] == "s3cr3t-output"
    assert result.stderr.strip().splitlines() == [
        f"warning: {key} is open to other users (mode 644); run `chmod 600 {key}`"
    ]
    key.chmod(0o600)
    assert journal_project.cli("outputs").stderr == ""


def test_a_missing_key_with_secrets_in_the_state_fails_and_writes_no_new_key(
    journal_project, tmp_path
):
    up(journal_project)
    key = journal_project.root / ".mlinfra" / "secret.key"
    saved = key.read_bytes()
    key.unlink()
    logs = tmp_path / "logs"
    for command in (["up", "--yes"], ["outputs", "--show-secrets"]):
        result = journal_project.cli(*command, env={"MLINFRA_LOG_DIR": str(logs)})
        line = one_line_error(result, 4, logs)
        assert f"{key} is missing, and the state holds secrets encrypted with it" in line
        assert "MLINFRA_PASSPHRASE" in line
        assert not key.exists(), "no new key may replace the lost one"
    key.write_bytes(saved)
    key.chmod(0o600)
    assert up(journal_project)["changed"] is False


def test_a_new_state_without_secrets_still_makes_its_key(journal_project):
    """The refusal is for a lost key only: a first up makes one, and so after destroy."""
    up(journal_project)
    assert journal_project.cli("destroy", "--yes").returncode == 0
    key = journal_project.root / ".mlinfra" / "secret.key"
    key.unlink()
    up(journal_project)
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"


def test_sigint_of_a_real_up_is_recorded_as_interrupted(journal_project):
    process = subprocess.Popen(
        [*MLINFRA, "up", "--yes"],
        cwd=journal_project.root,
        env=cli_env({"MLINFRA_ENV": "dev", "SLOW_SECONDS": "0.5"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not journal_project.journal():
        assert time.monotonic() < deadline, "the up never got going"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "interrupted"
    history = json.loads(journal_project.cli("history", "--json").stdout)
    assert [(h["result"], h["error"]) for h in history] == [("interrupted", "interrupted (Ctrl-C)")]
    assert history[0]["summary"], "what it did before Ctrl-C is counted"


def test_two_recoveries_in_one_second_keep_both_files_they_replaced(journal_project):
    up(journal_project)
    up(journal_project, "--refresh")
    folder = journal_project.root / ".mlinfra"
    first = folder / "backups" / backups(journal_project)[0]
    for _ in range(2):
        recover(plan_recovery(folder, source=first))
    aside = [
        p.name
        for p in folder.iterdir()
        if p.name.startswith("state.db.replaced-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert len(aside) == 2, aside


def test_recover_checks_the_lock_again_after_asking(journal_project):
    up(journal_project)
    folder = journal_project.root / ".mlinfra"
    plan = plan_recovery(folder, source=folder / "backups" / backups(journal_project)[0])
    engine = journal_project.engine()  # an `up` that started while the user was asked
    engine.store.acquire_lock("dev", "mlinfra up --env dev")
    try:
        with pytest.raises(StateLockedError, match="let it finish"):
            recover(plan)
    finally:
        engine.store.release_lock("dev")
        engine.close()
