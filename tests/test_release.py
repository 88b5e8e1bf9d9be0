"""Gates that guard releases, overrides, and promotion between envs.

The library half runs on a real registry with real scikit-learn models; the CLI half runs the
real `mlinfra` command against the iris example brought up for real (servers on loopback ports,
`staging` with bearer-token auth), and makes requests to the servers it deploys to.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
from _serving import FEATURES, TARGET, new_registry, register
from conftest import IrisProject
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlinfra.errors import ConfigError, DeploymentError, GateFailedError
from mlinfra.evaluation import (
    OVERRIDE_KIND,
    Clearance,
    ReleaseRefusedError,
    check_release,
)
from mlinfra.registry import Registry
from mlinfra.rollout import Target, begin, promote

ACCURATE, ROUGH = "accuracy >= 0.9", "f1 >= champion - 0.02"  # deterministic: no latency gate


@dataclass(frozen=True)
class Declared:
    """A model as mlinfra.toml declares it, judged on the whole iris set."""

    gates: tuple[str, ...] = ()
    slices: Mapping[str, str] = field(default_factory=dict)
    name: str = "iris"
    task: str = "classification"

    def evaluation_dataset(self, env: str) -> tuple[pd.DataFrame, pd.Series, str]:
        return FEATURES, TARGET, "sklearn iris"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """v1 passes `accuracy >= 0.9`; v2 (one split) fails it; v3 passes it too."""
    root = new_registry(tmp_path / "registry")
    register(root, LogisticRegression(max_iter=500))
    register(root, DecisionTreeClassifier(max_depth=1, random_state=0))
    register(root, DecisionTreeClassifier(max_depth=3, random_state=0))
    return root


def clear(root: Path, version: int, declared: Declared, env: str = "dev", **kw: str) -> Clearance:
    with Registry.open(root) as opened:
        found = opened.get("iris", version)
        return check_release(declared, opened, found, env=env, command="test", **kw)


def evaluations(root: Path, version: int) -> list[int]:
    with Registry.open(root) as opened:
        reports = opened.reports(opened.get("iris", version))
    return [report.id for report in reports if report.kind == "evaluation"]


# --- the library: what counts as passed ---------------------------------------------------------


def test_a_stored_report_clears_a_version_only_under_todays_gates_champion_and_env(
    registry: Path,
) -> None:
    gated = Declared(gates=(ACCURATE, ROUGH))
    first = clear(registry, 1, gated)
    assert first.evaluated_now and first.against is None and not first.failed_gates
    again = clear(registry, 1, gated)
    assert not again.evaluated_now and again.report_id == first.report_id
    assert again.report is not None and again.report.passed  # read back from the registry
    with Registry.open(registry) as opened:
        opened.set_alias("iris", "champion", 1, env="dev", reason="test")
    judged = clear(registry, 3, gated)  # now against champion v1, not against none
    assert judged.evaluated_now and judged.against == 1
    assert not clear(registry, 3, gated).evaluated_now
    assert clear(registry, 3, Declared(gates=(ACCURATE,))).evaluated_now  # gates changed
    sliced = Declared(gates=(ACCURATE,), slices={"long": "`petal length (cm)` >= 4"})
    assert clear(registry, 3, sliced).evaluated_now  # slices changed
    assert clear(registry, 3, gated, env="staging").evaluated_now  # another env's data
    assert len(evaluations(registry, 3)) == 4


def test_failed_gates_refuse_a_release_unless_overridden_and_the_override_is_recorded(
    registry: Path,
) -> None:
    gated = Declared(gates=(ACCURATE,))
    with pytest.raises(ReleaseRefusedError, match=r"accuracy >= 0\.9 \(0\.66.* misses") as refused:
        clear(registry, 2, gated)
    assert refused.value.exit_code == GateFailedError.exit_code == 7
    assert refused.value.clearance.failed_gates == [ACCURATE]
    with pytest.raises(ReleaseRefusedError):  # the stored verdict stands: no evaluation until pass
        clear(registry, 2, gated)
    assert len(evaluations(registry, 2)) == 1
    forced = clear(registry, 2, gated, override="checked by hand")
    assert forced.forced and not forced.evaluated_now and "forced past" in forced.grounds
    with Registry.open(registry) as opened:
        (record,) = [r for r in opened.reports(opened.get("iris", 2)) if r.kind == OVERRIDE_KIND]
    assert record.id == forced.override.report_id and not record.passed
    assert (record.body["reason"], record.body["failed_gates"]) == ("checked by hand", [ACCURATE])
    assert record.body["command"] == "test" and record.body["by"] == record.created_by


def test_a_model_with_no_gates_declared_is_cleared_as_such_without_evaluating(
    registry: Path,
) -> None:
    cleared = clear(registry, 2, Declared())
    assert cleared.grounds == "no gates declared" and cleared.report is None
    assert evaluations(registry, 2) == []


# --- the library: rollouts keep the clearance -------------------------------------------------


def test_rollouts_record_the_clearance_and_alias_moves_name_an_override(registry: Path) -> None:
    """No server runs for this env: the deploy loads each version itself (as with none up)."""
    target = Target(registry=registry, env="dev", url="http://127.0.0.1:9")
    gated = Declared(gates=(ACCURATE,))
    begin(target, "1", clearance=clear(registry, 1, gated))
    assert target.store.history()[-1]["gates"].startswith("passed 1 gate(s) with no champion")
    forced = clear(registry, 2, gated, override="try it online")
    with pytest.raises(DeploymentError, match="clearance is for iris v2"):
        begin(target, "3", steps=(50, 100), clearance=forced)
    rollout = begin(target, "2", steps=(50, 100), clearance=forced)
    assert target.store.rollout().clearance.model_dump() == forced.model_dump()
    assert rollout.clearance is forced
    with pytest.raises(DeploymentError, match="clearance is for iris v1"):
        promote(target, clearance=clear(registry, 1, gated))
    stale = clear(registry, 3, gated)  # against champion v1, which the promotion replaces
    promoted = promote(target, reason="by hand", clearance=clear(registry, 2, gated, override="ok"))
    assert promoted.clearance.override.reason == "ok"
    with pytest.raises(DeploymentError, match="champion of env 'dev' is v2 now.*against v1"):
        begin(target, "3", clearance=stale)
    with Registry.open(registry) as opened:
        moves = opened.alias_history("iris", env="dev")
    assert "forced past failed gates: accuracy >= 0.9 (try it online)" in moves[-3].reason
    assert moves[-2].alias == "champion" and moves[-2].reason.startswith("promoted: by hand;")
    assert "forced past failed gates: accuracy >= 0.9 (ok)" in moves[-2].reason


# --- the CLI: deploy, promote, rollback on a real env ------------------------------------------


def run(project: IrisProject, *args: str, env: dict[str, str] | None = None) -> dict:
    done = project.cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def refused(done: subprocess.CompletedProcess[str], *gates: str) -> None:
    """Exit 7 and one error line naming each failed gate."""
    assert done.returncode == GateFailedError.exit_code, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    for gate in gates:
        assert gate in done.stderr


def served_version(project: IrisProject, env: str = "dev", token: str | None = None) -> str:
    port = project.ports[env]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(
        f"http://127.0.0.1:{port}/invocations",
        json={"instances": [[6.7, 3.0, 5.2, 2.3]]},
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"]


def reports_of(project: IrisProject, version: int, env: str = "dev") -> list[dict]:
    return run(project, "models", "show", str(version), "--env", env)["reports"]


def bring_up(project: IrisProject, *envs: str) -> None:
    for env in envs:
        done = project.cli("up", "--env", env, "--yes")
        assert done.returncode == 0, done.stderr


def train(project: IrisProject, *params: str, env: str = "dev") -> int:
    overrides = [arg for param in params for arg in ("-p", param)]
    return run(project, "train", "--env", env, "--search", "none", *overrides)["version"]


@pytest.mark.slow
def test_deploy_refuses_a_version_failing_its_gates_and_the_old_one_keeps_serving(
    iris_project: IrisProject,
) -> None:
    iris_project.set_gates(ACCURATE, ROUGH)
    bring_up(iris_project, "dev")
    first = train(iris_project)
    shown = iris_project.cli("deploy", str(first), "--env", "dev")
    assert shown.returncode == 0, shown.stderr
    assert f"iris v{first} in dev: passed" in shown.stdout  # evaluated first, and shown
    assert (
        "passed 2 gate(s) with no champion yet" in shown.stdout
        and "evaluated for this release" in shown.stdout
    )
    assert len([r for r in reports_of(iris_project, first) if r["kind"] == "evaluation"]) == 1

    worse = train(iris_project, "logisticregression__C=0.0001")
    refused(iris_project.cli("deploy", str(worse), "--env", "dev"), ACCURATE, ROUGH)
    assert served_version(iris_project) == str(first)
    canary = iris_project.cli(
        "deploy", str(worse), "--env", "dev", "--canary", "50", "--interval", "500ms"
    )
    refused(canary, ACCURATE, ROUGH)
    assert "(report " in canary.stdout  # the stored verdict, not a second evaluation
    assert len([r for r in reports_of(iris_project, worse) if r["kind"] == "evaluation"]) == 1
    status = run(iris_project, "rollout", "status", "--env", "dev")
    assert (status["deployment"]["stable"], status["deployment"]["canary"]) == (first, None)
    assert status["rollout"] is None
    assert served_version(iris_project) == str(first)

    unexplained = iris_project.cli("deploy", str(worse), "--env", "dev", "--force")
    assert unexplained.returncode == ConfigError.exit_code and "--reason" in unexplained.stderr
    ungated = iris_project.cli("deploy", str(worse), "--env", "dev", "--reason", "why")
    assert ungated.returncode == ConfigError.exit_code and "--force" in ungated.stderr
    assert served_version(iris_project) == str(first)


@pytest.mark.slow
def test_forced_releases_are_audited_and_rollback_and_abort_are_never_gated(
    iris_project: IrisProject,
) -> None:
    iris_project.set_gates(ACCURATE, ROUGH)
    bring_up(iris_project, "dev")
    try:
        first = train(iris_project)
        run(iris_project, "deploy", str(first), "--env", "dev")
        worse = train(iris_project, "logisticregression__C=0.0001")
        forced = run(
            iris_project, "deploy", str(worse), "--env", "dev", "--force", "--reason", "hotfix"
        )
        assert forced["stable"] == worse and forced["evaluation"]["passed"] is False
        assert forced["clearance"]["override"]["reason"] == "hotfix"
        assert served_version(iris_project) == str(worse)
        shown = run(iris_project, "models", "show", str(worse), "--env", "dev")
        (override,) = shown["overrides"]
        assert (override["reason"], override["env"]) == ("hotfix", "dev")
        assert set(override["failed_gates"]) == {ACCURATE, ROUGH}
        assert override["command"].startswith(f"mlinfra deploy {worse} --env dev --force")
        people = iris_project.cli("models", "show", str(worse), "--env", "dev")
        assert "FORCED past failed gates" in people.stdout and "hotfix" in people.stdout
        history = run(iris_project, "models", "alias", "champion", "--env", "dev")["history"]
        assert "forced past failed gates" in history[-1]["reason"]

        strict = "accuracy >= 0.999"  # v1 fails it now; going back to it must still work
        iris_project.set_gates(strict)
        refused(iris_project.cli("evaluate", str(first), "--env", "dev"), strict)
        back = run(iris_project, "rollback", "--env", "dev")
        assert back["stable"] == first and served_version(iris_project) == str(first)

        canary = ["deploy", str(worse), "--env", "dev", "--canary", "50", "--interval", "60s"]
        started = run(iris_project, *canary, "--force", "--reason", "try it online")
        assert started["phase"] == "progressing" and started["clearance"]["override"]
        status = iris_project.cli("rollout", "status", "--env", "dev")
        assert "gates: forced past failed gates (accuracy >= 0.999)" in status.stdout
        refused(iris_project.cli("promote", "--env", "dev"), strict)
        held = run(iris_project, "rollout", "status", "--env", "dev")
        assert (held["rollout"]["phase"], held["deployment"]["canary"]) == ("progressing", worse)
        assert run(iris_project, "abort", "--env", "dev")["phase"] == "aborted"

        run(iris_project, *canary, "--force", "--reason", "try it again")
        promoted = run(iris_project, "promote", "--env", "dev", "--force", "--reason", "fine")
        assert promoted["phase"] == "promoted" and served_version(iris_project) == str(worse)
        assert promoted["clearance"]["override"]["reason"] == "fine"
        shown = run(iris_project, "models", "show", str(worse), "--env", "dev")
        assert [o["reason"] for o in shown["overrides"]] == [
            "hotfix",
            "try it online",
            "try it again",
            "fine",
        ]
    finally:
        iris_project.cli("abort", "--env", "dev")  # no driver left waiting on a failed test


def evaluation_by_env(project: IrisProject) -> None:
    """Staging judges on shuffled labels while STAGING_LABELS=shuffled: no model passes there."""
    model = project.root / "model.py"
    model.write_text(
        model.read_text()
        + """

def evaluation_data_by_env(env):
    import os

    features, target = load_evaluation_data()
    if env == "staging" and os.environ.get("STAGING_LABELS") == "shuffled":
        target = target.sample(frac=1.0, random_state=0).set_axis(target.index)
    return features, target
"""
    )
    config = project.root / "mlinfra.toml"
    config.write_text(
        config.read_text().replace('"model:load_evaluation_data"', '"model:evaluation_data_by_env"')
    )


@pytest.mark.slow
def test_promote_to_an_env_with_its_own_registry_copies_judges_there_and_serves_with_its_token(
    iris_project: IrisProject,
) -> None:
    iris_project.set_gates(ACCURATE, ROUGH)
    evaluation_by_env(iris_project)
    bring_up(iris_project, "dev", "staging")
    first, second = train(iris_project), train(iris_project, "logisticregression__C=10")
    token = run(iris_project, "outputs", "--env", "staging", "--show-secrets")["serving_token"]
    staging = ["--from", "dev", "--to", "staging", "--deploy"]

    hard = iris_project.cli(
        "models", "promote", str(second), *staging, env={"STAGING_LABELS": "shuffled"}
    )
    refused(hard, ACCURATE)
    assert "stays registered in env 'staging' as v1, with its failed report" in hard.stderr
    assert run(iris_project, "rollout", "status", "--env", "staging")["deployment"] is None
    nothing = httpx.post(
        f"http://127.0.0.1:{iris_project.ports['staging']}/invocations",
        json={"instances": [[6.7, 3.0, 5.2, 2.3]]},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert nothing.status_code == 503
    kept = reports_of(iris_project, 1, env="staging")
    assert [(r["kind"], r["env"], r["passed"]) for r in kept][-1] == (
        "evaluation",
        "staging",
        False,
    )

    promoted = run(iris_project, "models", "promote", str(first), *staging)
    assert promoted["from"] == {"env": "dev", "version": first}
    assert promoted["to"] == {"env": "staging", "version": 2, "copied": True}  # staging's number
    assert promoted["evaluation"]["env"] == "staging" and promoted["evaluation"]["passed"]
    assert promoted["deployment"]["stable"] == 2
    copy = run(iris_project, "models", "show", "2", "--env", "staging")
    origin = copy["lineage"]["origin"]
    assert (origin["env"], origin["version"]) == ("dev", first)
    assert copy["promotions"][0]["direction"] == "from" and copy["promotions"][0]["env"] == "dev"
    assert ("evaluation", "staging", True) in [
        (r["kind"], r["env"], r["passed"]) for r in copy["reports"]
    ]
    source = run(iris_project, "models", "show", str(first), "--env", "dev")
    (sent,) = source["promotions"]
    assert (sent["direction"], sent["env"], sent["version"]) == ("to", "staging", 2)
    people = iris_project.cli("models", "show", "2", "--env", "staging")
    assert f"origin: dev v{first}" in people.stdout

    url = f"http://127.0.0.1:{iris_project.ports['staging']}/invocations"
    anonymous = httpx.post(url, json={"instances": [[6.7, 3.0, 5.2, 2.3]]}, timeout=10)
    assert anonymous.status_code == 401
    assert served_version(iris_project, "staging", token=token) == "2"


@pytest.mark.slow
def test_promote_between_envs_sharing_a_registry_judges_the_same_version_there(
    iris_project: IrisProject,
) -> None:
    config = iris_project.root / "mlinfra.toml"
    shared = 'registry.path = "shared-registry"\n'
    text = config.read_text()
    for env in ("dev", "staging"):
        text = text.replace(f"[env.{env}]\n", f"[env.{env}]\n{shared}")
    config.write_text(text)
    iris_project.set_gates(ACCURATE, ROUGH)
    bring_up(iris_project, "dev", "staging")
    first = train(iris_project)
    promoted = run(
        iris_project, "models", "promote", str(first), "--from", "dev", "--to", "staging"
    )
    assert promoted["to"] == {"env": "staging", "version": first, "copied": False}
    assert promoted["shared_registry"] and promoted["clearance"]["evaluated_now"]
    shown = run(iris_project, "models", "show", str(first), "--env", "staging")
    assert "origin" not in shown["lineage"]
    kinds = {(r["kind"], r["env"]) for r in shown["reports"]}
    assert {("promotion", "dev"), ("promotion", "staging"), ("evaluation", "staging")} <= kinds
    deployed = run(iris_project, "deploy", str(first), "--env", "staging")
    assert not deployed["clearance"]["evaluated_now"]  # the promotion's evaluation counts there
