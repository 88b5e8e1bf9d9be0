"""Resources that hold data, on the embedded engine with a real program (tests/fixtures/journal):
its provider says a file whose content starts with "keep:" holds data, read live. `up` refuses to
delete or replace such a file, preview says so, `destroy` keeps it unless `delete_data`."""

from __future__ import annotations

import json

import pytest

from mlinfra.engine import Op
from mlinfra.errors import DeploymentError, ProtectedResourceError


def _steps(result) -> dict:  # noqa: ANN001 - RunResult
    return {step.name: step for step in result.steps}


@pytest.fixture
def holding(journal_project, monkeypatch):  # noqa: ANN001, ANN201
    """Three files up, each holding data."""
    monkeypatch.setenv("CONTENT", "keep:models")
    journal_project.engine().up()
    return journal_project


def test_preview_names_the_data_a_delete_would_lose_and_up_refuses(holding, monkeypatch):
    monkeypatch.setenv("COUNT", "2")
    engine = holding.engine()
    planned = _steps(engine.preview())["f2"]
    assert planned.op is Op.DELETE
    assert str(planned.data_at_risk) == f"a journal entry at {holding.out / 'f2.txt'}"
    with pytest.raises(ProtectedResourceError) as refused:
        engine.up()
    assert "f2 holds a journal entry" in str(refused.value)
    assert "`mlinfra up --delete-data`" in str(refused.value)
    assert (holding.out / "f2.txt").exists()
    assert "f2" in {r.name for r in engine.resources()}
    engine.up(delete_data=True)
    assert not (holding.out / "f2.txt").exists()


def test_a_replace_of_a_resource_holding_data_is_refused_before_anything_is_made(
    holding, monkeypatch
):
    monkeypatch.setenv("RENAME", "f1")  # a new path: the journal provider replaces
    engine = holding.engine()
    planned = _steps(engine.preview())["f1"]
    assert planned.op is Op.REPLACE and planned.data_at_risk is not None
    with pytest.raises(ProtectedResourceError, match="f1 holds a journal entry .* replaced"):
        engine.up()
    assert not (holding.out / "f1-renamed.txt").exists()
    assert (holding.out / "f1.txt").exists()


def test_data_written_after_the_last_up_counts(journal_project, monkeypatch):
    engine = journal_project.engine()
    engine.up()
    (journal_project.out / "f2.txt").write_text("keep:written by hand")
    monkeypatch.setenv("COUNT", "2")
    assert _steps(engine.preview())["f2"].data_at_risk is not None
    with pytest.raises(ProtectedResourceError):
        engine.up()


def test_destroy_keeps_what_holds_data_until_delete_data(holding):
    engine = holding.engine()
    result = engine.destroy()
    assert {s.name: s.op for s in result.steps if s.name.startswith("f")} == {
        "f0": Op.KEEP,
        "f1": Op.KEEP,
        "f2": Op.KEEP,
    }
    assert engine.resources() == []
    assert sorted(p.name for p in holding.out.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
    assert [k.resource.name for k in engine.kept()] == ["f2", "f1", "f0"]
    assert any("`mlinfra destroy --delete-data` deletes it" in w for w in result.warnings)

    again = engine.destroy(delete_data=True)
    assert [s.name for s in again.steps] == ["f2", "f1", "f0"]
    assert list(holding.out.iterdir()) == [] and engine.kept() == []


def test_up_after_destroy_takes_back_what_was_kept(holding):
    engine = holding.engine()
    engine.destroy()
    engine.up()
    assert engine.kept() == []
    assert {r.name for r in engine.resources()} == {"group", "f0", "f1", "f2"}


def test_destroy_through_the_cli_asks_saying_what_is_kept(holding):
    refused = holding.cli("destroy", env={"CONTENT": "keep:models"})
    assert refused.returncode == 2, "no terminal to confirm on"
    question = refused.stderr
    assert "Destroy all 4 resources of this environment?" in question
    assert f"f0 is kept, with a journal entry at {holding.out / 'f0.txt'}" in question
    done = holding.cli("destroy", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    kept = [s for s in json.loads(done.stdout)["steps"] if s["op"] == "keep"]
    assert [s["data_at_risk"] for s in kept][0] == f"a journal entry at {holding.out / 'f2.txt'}"
    status = json.loads(holding.cli("status", "--json").stdout)
    assert [k["name"] for k in status["kept"]] == ["f2", "f1", "f0"]
    assert "nothing to destroy" in holding.cli("destroy", "--yes").stdout
    assert holding.cli("destroy", "--yes", "--delete-data").returncode == 0
    assert list(holding.out.iterdir()) == []


def test_a_provider_call_that_raised_leaves_no_pending_operation(journal_project, monkeypatch):
    """Unlike a process killed mid-call (tests/test_engine_faults.py), a create that raised is
    over: the next run must not warn that what it made may remain."""
    monkeypatch.setenv("FAIL_ON", "create:f1")
    engine = journal_project.engine()
    with pytest.raises(DeploymentError, match="injected failure in create of f1"):
        engine.up()
    assert engine.store.pending_operations(engine.stack) == []
    monkeypatch.setenv("COUNT", "1")
    assert engine.up().warnings == []
    assert engine.destroy().warnings == []
