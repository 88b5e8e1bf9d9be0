"""The embedded engine's Pulumi semantics, on a real program whose dynamic provider writes real
files (tests/fixtures/journal)."""

from __future__ import annotations

import sqlite3

import pytest

from mlinfra.engine import Op
from mlinfra.errors import DeploymentError, ProtectedResourceError


def _ops(result) -> dict[str, str]:
    return {step.name: step.op.value for step in result.steps}


def test_preview_of_new_stack_plans_creates_and_changes_nothing(journal_project):
    result = journal_project.engine().preview()
    assert _ops(result) == {"group": "create", "f0": "create", "f1": "create", "f2": "create"}
    assert list(journal_project.out.iterdir()) == []
    assert journal_project.journal() == []
    assert journal_project.engine().resources() == []


def test_up_creates_in_dependency_order_and_records_outputs(journal_project):
    engine = journal_project.engine()
    result = engine.up()
    assert journal_project.journal() == ["create f0 f0.txt", "create f1 f1.txt", "create f2 f2.txt"]
    assert sorted(p.name for p in journal_project.out.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
    assert result.outputs["sizes"] == [5, 5, 5]
    resources = engine.resources()
    assert [r.name for r in resources] == ["group", "f0", "f1", "f2"]
    f1 = next(r for r in resources if r.name == "f1")
    assert f1.parent.endswith("::group") and f1.dependencies == [resources[1].urn]


def test_second_up_is_a_no_op_and_calls_no_provider(journal_project):
    engine = journal_project.engine()
    engine.up()
    result = engine.up()
    assert set(_ops(result).values()) == {"same"}
    assert not result.changed
    assert len(journal_project.journal()) == 3


def test_update_shows_property_diff_in_preview_then_applies(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    monkeypatch.setenv("CONTENT", "changed")
    preview = engine.preview()
    f0 = next(s for s in preview.steps if s.name == "f0")
    assert f0.op is Op.UPDATE
    assert [(d.path, d.old, d.new) for d in f0.diffs] == [("content", "hello", "changed")]
    assert (journal_project.out / "f0.txt").read_text() == "hello"
    engine.up()
    assert (journal_project.out / "f0.txt").read_text() == "changed"
    assert journal_project.journal()[3:] == ["update f0", "update f1", "update f2"]


def test_replace_creates_before_deleting_by_default(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    monkeypatch.setenv("RENAME", "f1")
    preview = engine.preview()
    assert _ops(preview)["f1"] == "replace"
    assert next(s for s in preview.steps if s.name == "f1").diffs[0].replaces
    engine.up()
    assert journal_project.journal()[3:] == ["create f1 f1-renamed.txt", "delete f1 f1.txt"]
    assert len([r for r in engine.resources() if r.name == "f1"]) == 1


def test_delete_before_replace_deletes_first(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    monkeypatch.setenv("RENAME", "f1")
    monkeypatch.setenv("DELETE_BEFORE_REPLACE", "1")
    engine.up()
    assert journal_project.journal()[3:] == ["delete f1 f1.txt", "create f1 f1-renamed.txt"]


def test_resources_no_longer_declared_are_deleted_dependents_first(journal_project, monkeypatch):
    engine = journal_project.engine()
    monkeypatch.setenv("COUNT", "4")
    engine.up()
    monkeypatch.setenv("COUNT", "1")
    result = engine.up()
    assert journal_project.journal()[4:] == [
        "delete f3 f3.txt",
        "delete f2 f2.txt",
        "delete f1 f1.txt",
    ]
    assert _ops(result) == {
        "group": "same",
        "f0": "same",
        "f3": "delete",
        "f2": "delete",
        "f1": "delete",
    }


def test_protected_resource_blocks_its_deletion_and_destroy(journal_project, monkeypatch):
    engine = journal_project.engine()
    monkeypatch.setenv("PROTECT", "f2")
    engine.up()
    monkeypatch.setenv("COUNT", "2")
    with pytest.raises(ProtectedResourceError, match="f2 is protected"):
        engine.up()
    with pytest.raises(DeploymentError, match="protected"):
        engine.destroy()
    assert (journal_project.out / "f2.txt").exists()


def test_ignore_changes_keeps_the_old_value(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    monkeypatch.setenv("CONTENT", "ignored")
    monkeypatch.setenv("IGNORE_CONTENT", "1")
    assert not engine.preview().changed
    engine.up()
    assert (journal_project.out / "f0.txt").read_text() == "hello"


def test_destroy_deletes_everything_in_reverse_order(journal_project):
    engine = journal_project.engine()
    engine.up()
    result = engine.destroy()
    assert journal_project.journal()[3:] == [
        "delete f2 f2.txt",
        "delete f1 f1.txt",
        "delete f0 f0.txt",
    ]
    assert list(journal_project.out.iterdir()) == []
    assert engine.resources() == [] and engine.outputs() == {}
    assert result.counts == {"delete": 4}


def test_failure_mid_update_keeps_finished_steps_and_next_up_carries_on(
    journal_project, monkeypatch
):
    engine = journal_project.engine()
    monkeypatch.setenv("FAIL_ON", "create:f1")
    with pytest.raises(DeploymentError, match=r"f1 .*create failed: .*injected failure"):
        engine.up()
    assert [r.name for r in engine.resources()] == ["group", "f0"]
    assert engine.history(limit=1)[0].result == "failed"
    monkeypatch.delenv("FAIL_ON")
    result = engine.up()
    assert _ops(result) == {"group": "same", "f0": "same", "f1": "create", "f2": "create"}
    assert journal_project.journal() == ["create f0 f0.txt", "create f1 f1.txt", "create f2 f2.txt"]


def test_refresh_reports_out_of_band_changes_and_up_refresh_repairs(journal_project):
    engine = journal_project.engine()
    engine.up()
    (journal_project.out / "f0.txt").write_text("edited by hand")
    (journal_project.out / "f2.txt").unlink()
    reports = {r.name: r for r in engine.refresh()}
    assert reports["f0"].status == "changed"
    assert [d.path for d in reports["f0"].diffs] == ["content", "size"]
    assert reports["f2"].status == "gone" and reports["f1"].status == "ok"
    assert len(engine.resources()) == 4, "refresh without --apply changes nothing"
    engine.up(refresh=True)
    assert (journal_project.out / "f0.txt").read_text() == "hello"
    assert (journal_project.out / "f2.txt").exists()


def test_secrets_are_encrypted_in_the_state_files(journal_project):
    engine = journal_project.engine()
    engine.up()
    engine.close()
    state_dir = journal_project.root / ".mlinfra"
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert b"s3cr3t" not in path.read_bytes(), f"plain secret in {path.name}"
    assert oct((state_dir / "state.db").stat().st_mode & 0o777) == "0o600"
    assert journal_project.engine().outputs()["token"]["value"] == "s3cr3t-output"


def test_wrong_passphrase_gives_a_clear_error(journal_project, monkeypatch):
    from mlinfra.errors import StateError

    monkeypatch.setenv("MLINFRA_PASSPHRASE", "right")
    journal_project.engine().up()
    monkeypatch.setenv("MLINFRA_PASSPHRASE", "wrong")
    with pytest.raises(StateError, match="cannot decrypt secrets .*MLINFRA_PASSPHRASE"):
        journal_project.engine().outputs()


def test_history_records_each_update(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    monkeypatch.setenv("CONTENT", "x")
    engine.up()
    records = engine.history()
    assert [(r.kind, r.result, r.summary) for r in records] == [
        ("up", "succeeded", {"same": 1, "update": 3}),
        ("up", "succeeded", {"create": 4}),
    ]


def test_environments_have_separate_state(journal_project):
    journal_project.engine("dev").up()
    assert journal_project.engine("other").resources() == []
    db = sqlite3.connect(journal_project.root / ".mlinfra" / "state.db")
    stacks = {row[0] for row in db.execute("SELECT stack FROM resources")}
    assert stacks == {"dev"}


def test_failed_update_names_the_resource_and_keeps_earlier_updates(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    monkeypatch.setenv("CONTENT", "v2")
    monkeypatch.setenv("FAIL_ON", "update:f1")
    with pytest.raises(DeploymentError, match=r"^f1 .*update failed: .*injected failure"):
        engine.up()
    state = {r.name: r for r in engine.resources()}
    assert state["f0"].inputs["content"] == "v2" and state["f1"].inputs["content"] == "hello"
    monkeypatch.delenv("FAIL_ON")
    result = engine.up()
    assert _ops(result) == {"group": "same", "f0": "same", "f1": "update", "f2": "update"}


@pytest.mark.parametrize("written_as", [0, 1], ids=["before-versions", "v1"])
def test_state_of_an_older_mlinfra_is_kept_and_upgraded(journal_project, written_as):
    from mlinfra.state._sqlite import SCHEMA_VERSION

    engine = journal_project.engine()
    engine.up()
    engine.close()
    state_db = journal_project.root / ".mlinfra" / "state.db"
    with sqlite3.connect(state_db) as db:
        db.execute("DROP TABLE kept")  # what v2 added
        db.execute("DROP TABLE branch_envs")  # what v3 added
        db.execute(f"PRAGMA user_version = {written_as}")
    engine = journal_project.engine()
    assert len(engine.resources()) == 4
    assert engine.kept() == []
    assert engine.store.branch_envs() == []
    with sqlite3.connect(state_db) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_state_from_newer_mlinfra_is_refused_in_one_line(tmp_path):
    from mlinfra.errors import StateError
    from mlinfra.state import open_state
    from mlinfra.state._sqlite import SCHEMA_VERSION

    newer = SCHEMA_VERSION + 1
    open_state(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StateError) as refused:
        open_state(tmp_path)
    assert str(refused.value) == (
        f"state at {tmp_path / 'state.db'} has schema v{newer}, this mlinfra needs "
        f"v{SCHEMA_VERSION}: upgrade mlinfra"
    )
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (newer,)
