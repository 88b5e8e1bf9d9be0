"""`mlinfra train`, `evaluate` and `models ...` as real processes on an `up` of the iris example."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import IrisProject, copy_iris

from mlinfra.registry import Registry


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrisProject]:
    """The iris example, copied and brought up once for this module (dev env only)."""
    iris = copy_iris(tmp_path_factory.mktemp("lifecycle") / "iris")
    up = iris.cli("up", "--env", "dev", "--yes")
    assert up.returncode == 0, up.stderr
    yield iris
    iris.cli("destroy", "--yes", "--force-unlock", "--env", "dev")


def registry_of(project: IrisProject) -> Registry:
    return Registry.open(project.root / ".mlinfra" / "envs" / "dev" / "registry")


def ok_json(project: IrisProject, *args: str) -> dict:
    done = project.cli(*args, "--env", "dev", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_train_evaluate_alias_and_inspect_through_the_cli(project: IrisProject) -> None:
    first = ok_json(project, "train")
    assert first["search"]["strategy"] == "grid" and first["search"]["trials"] == 8
    passed = ok_json(project, "evaluate", str(first["version"]))
    assert passed["passed"] and passed["against"] is None
    assert {g["status"] for g in passed["gates"]} == {"passed", "skipped"}
    moved = ok_json(project, "models", "alias", "champion", str(first["version"]), "--reason", "r1")
    assert moved["to_version"] == first["version"] and moved["reason"] == "r1"

    worse = ok_json(project, "train", "-p", "logisticregression__C=0.0001", "--search", "none")
    failed = project.cli("evaluate", str(worse["version"]), "--env", "dev")
    assert failed.returncode == 7, failed.stderr
    assert f"iris v{worse['version']} failed" in failed.stderr
    assert "f1 >= champion - 0.02" in failed.stderr and len(failed.stderr.splitlines()) == 1
    assert "FAILED" in failed.stdout  # the gate table was shown before the error line

    listed = ok_json(project, "models", "list")
    by_version = {row["version"]: row for row in listed}
    assert by_version[first["version"]]["aliases"] == ["champion"]
    assert by_version[worse["version"]]["score"] < by_version[first["version"]]["score"]
    assert by_version[worse["version"]]["metric"] == "f1"
    shown = ok_json(project, "models", "show", str(worse["version"]))
    assert [r["passed"] for r in shown["reports"]] == [False]
    assert [c["name"] for c in shown["schema"]["columns"]][0] == "sepal_length"
    assert shown["importances"] and shown["lineage"]["overrides"] == {
        "logisticregression__C": 0.0001
    }
    compared = ok_json(project, "models", "compare", "champion", str(worse["version"]))
    assert compared["params"]["logisticregression__C"][1] == 0.0001
    tagged = ok_json(project, "models", "tag", str(worse["version"]), "reviewed=no")
    assert tagged["tags"] == {"reviewed": "no"}
    history = ok_json(project, "models", "alias", "champion")
    assert history["version"] == first["version"] and history["history"][0]["actor"]
    markdown = project.cli("models", "show", str(worse["version"]), "--report", "--env", "dev")
    assert markdown.stdout.startswith(f"# iris v{worse['version']} in dev: FAILED")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search", "best"], "choose grid, random, halving or none"),
        (["-p", "logisticregression__CC=1"], "did you mean 'logisticregression__C'"),
        (["-p", "logisticregression__C=-1"], "must be a float in the range (0.0, inf]"),
        (["--search", "grid", "--trials", "3"], "--trials applies to random and halving"),
        (["-p", "oops"], "--param expects key=value"),
    ],
)
def test_bad_training_input_exits_2_with_one_line_and_trains_nothing(
    project: IrisProject, args: list[str], message: str
) -> None:
    with registry_of(project) as registry:
        before = len(registry.list_versions())
    done = project.cli("train", "--env", "dev", *args)
    assert done.returncode == 2 and message in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    with registry_of(project) as registry:
        assert len(registry.list_versions()) == before


def test_data_failing_its_checks_stops_training_with_a_report(project: IrisProject) -> None:
    ok_json(project, "train", "--search", "none")  # the schema the next run is checked against
    model = project.root / "model.py"
    original = model.read_text()
    model.write_text(
        original.replace(
            "    return features[keep], target[keep]",
            "    return features[keep].drop(columns=['petal_width']), target[keep]",
        )
    )
    try:
        with registry_of(project) as registry:
            before = len(registry.list_versions())
        done = project.cli("train", "--env", "dev", "--search", "none")
    finally:
        model.write_text(original)
    assert done.returncode == 6
    assert "missing_column" in done.stderr and "petal_width" in done.stderr
    assert (
        "data failed 1 check(s): missing_column (petal_width); nothing was trained" in done.stderr
    )
    with registry_of(project) as registry:
        assert len(registry.list_versions()) == before


def test_train_says_how_many_candidates_it_tried_and_which_parameters_won(
    project: IrisProject,
) -> None:
    halving = project.cli("train", "--env", "dev", "--search", "halving", "--trials", "10")
    assert halving.returncode == 0, halving.stderr
    # iris' space holds 8 parameter sets (fewer than --trials); halving reruns the best 3
    assert "best of 8 candidates (11 trials in 2 halving rounds)" in halving.stdout
    version = re.search(r"registered iris v(\d+)", halving.stdout)
    assert version, halving.stdout
    found = ok_json(project, "models", "show", version.group(1))["params"]
    winners = next(
        line for line in halving.stdout.splitlines() if line.startswith("parameters found by")
    )
    assert winners.startswith("parameters found by halving search (cv f1 ")
    assert f"logisticregression__C={found['logisticregression__C']:.4g}" in winners
    assert f"fit_intercept={found['logisticregression__fit_intercept']}" in winners
    randomly = ok_json(project, "train", "--search", "random", "--trials", "20")
    assert randomly["search"]["candidates"] == randomly["search"]["trials"] == 8
    assert randomly["search"]["rounds"] == 1
    fixed = project.cli(
        "train", "--env", "dev", "--search", "none", "-p", "logisticregression__C=2"
    )
    assert "parameters from --param: logisticregression__C=2" in fixed.stdout
    assert "best of" not in fixed.stdout


def test_evaluate_shows_every_slice_beside_the_champion(project: IrisProject) -> None:
    champion = ok_json(project, "train", "--search", "none")
    candidate = ok_json(project, "train", "--search", "none")
    ok_json(project, "models", "alias", "champion", str(champion["version"]), "--reason", "slices")
    shown = project.cli("evaluate", str(candidate["version"]), "--env", "dev")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    found = ok_json(project, "evaluate", str(candidate["version"]))["slices"]["long_petals"]
    heading = f"slice long_petals: petal_length >= 4.0 ({found['rows']} rows)"
    assert heading in shown.stdout
    table = shown.stdout.split(heading)[1]
    header = next(line for line in table.splitlines() if " metric " in line)
    assert f"v{candidate['version']}" in header and f"champion v{champion['version']}" in header
    for metric in ("accuracy", "f1", "precision"):
        row = next(line for line in table.splitlines() if f" {metric} " in line)
        assert f"{found['metrics'][metric]:.4g}" in row
        assert f"{found['champion_metrics'][metric]:.4g}" in row


def test_models_list_json_lists_all_10000_versions(
    project: IrisProject,
) -> None:
    shown = project.cli("train", "--env", "dev", "--search", "random", "--trials", "2")
    assert shown.returncode == 0 and "registered iris v" in shown.stdout
    assert "trial 0" in shown.stderr and "trial 1" in shown.stderr  # a progress bar per trial
    database = project.root / ".mlinfra" / "envs" / "dev" / "registry" / "registry.db"
    with sqlite3.connect(
        database
    ) as db:  # clone one real version in SQL: registering is tested elsewhere
        (last,) = db.execute("SELECT last_version FROM models WHERE name = 'iris'").fetchone()
        wanted = 10_000
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO versions SELECT model, i, env, created_at, created_by, artifact_sha256, "
            "artifact_size, reference_sha256, params, metrics, lineage, trusted_types, metric, "
            "score, git_commit, git_dirty, data_hash FROM versions JOIN n "
            "WHERE model = 'iris' AND version = ?",
            (last + 1, wanted, last),
        )
        db.execute("UPDATE models SET last_version = ? WHERE name = 'iris'", (wanted,))
    # Its speed (target: under 0.5 s) is measured by bench/lifecycle.py, not asserted here.
    done = project.cli("models", "list", "--env", "dev", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert len(listed) == wanted
    assert [v["version"] for v in listed[:2]] in ([wanted, wanted - 1], [1, 2])


def test_lifecycle_commands_on_an_env_that_is_not_up_say_to_bring_it_up(
    project: IrisProject,
) -> None:
    for args in (["models", "list"], ["evaluate", "1"], ["train"]):
        done = project.cli(*args, "--env", "staging")
        assert done.returncode != 0 and "mlinfra up --env staging" in done.stderr


def test_cli_start_up_imports_no_scikit_learn_or_pandas() -> None:
    probe = "import sys, mlinfra.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert not loaded & {"sklearn", "pandas", "numpy", "scipy", "skops", "pulumi"}


def test_training_bars_say_failed_above_the_error_not_done(capsys):
    from mlinfra.cli.lifecycle._render import TrialBars

    with pytest.raises(RuntimeError), TrialBars(quiet=False) as bars:
        bars.stage("loading data")
        raise RuntimeError("the loader failed")
    shown = capsys.readouterr().err
    assert "failed" in shown and "done" not in shown, shown
