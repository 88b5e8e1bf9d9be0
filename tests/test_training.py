"""Training for real: scikit-learn fits, worker processes, a real registry, a real git repo."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import loguniform
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlinfra.config import ModelSpec
from mlinfra.data import DataValidationError, data_hash
from mlinfra.errors import ConfigError
from mlinfra.registry import Registry, UntrustedArtifactError, initialize
from mlinfra.training import (
    ModelDefinition,
    ParameterError,
    load_definition,
    parse_overrides,
    train,
)

IRIS = load_iris(as_frame=True)


def iris_model(**overrides: object) -> ModelDefinition:
    fields: dict[str, object] = {
        "name": "iris",
        "task": "classification",
        "load_data": lambda: (IRIS.data, IRIS.target),
        "estimator": lambda: DecisionTreeClassifier(random_state=0),
        "search_space": {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 5]},
    }
    fields.update(overrides)
    return ModelDefinition(**fields)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    initialize(tmp_path / "registry")
    with Registry.open(tmp_path / "registry") as opened:
        yield opened


def run(model: ModelDefinition, registry: Registry, tmp_path: Path, **options: object):  # noqa: ANN201
    return train(model, registry=registry, env="dev", workspace=tmp_path / "ws", **options)  # type: ignore[arg-type]


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def test_training_registers_a_version_with_its_lineage(registry: Registry, tmp_path: Path) -> None:
    source = tmp_path / "project"
    source.mkdir()
    (source / "model.py").write_text("# model code\n")
    git(source, "init", "-q")
    git(source, "add", ".")
    git(source, "commit", "-qm", "first")
    result = run(iris_model(source_dir=source), registry, tmp_path)
    version = result.version
    assert version.version == 1 and version.env == "dev" and version.created_by
    lineage = version.lineage
    assert len(lineage["git_commit"]) == 40 and lineage["git_dirty"] is False
    assert lineage["data_hash"] == data_hash(IRIS.data, IRIS.target)
    assert lineage["rows"] == {"train": 120, "test": 30}
    assert lineage["libraries"]["scikit-learn"] and lineage["libraries"]["python"]
    assert lineage["fit_seconds"] > 0 and lineage["search"] == "grid" and lineage["trials"] == 6
    assert set(version.metrics) >= {"accuracy", "f1", "roc_auc"}
    assert version.params["max_depth"] == result.search.best.params["max_depth"]
    search = registry.search_results(version)
    assert len(search["trials"]) == 6 and all(len(t["scores"]) == 3 for t in search["trials"])
    importances = registry.importances(version)
    assert (importances["metric"], importances["rows"]) == ("accuracy", 30)
    ranked = importances["features"]
    assert ranked[0]["feature"].startswith("petal") and len(ranked) == 4
    assert ranked == sorted(ranked, key=lambda row: -row["mean"])
    assert [c["name"] for c in registry.schema(version)["columns"]] == list(IRIS.data.columns)
    assert registry.schema(version)["target"]["classes"] == {"0": 50, "1": 50, "2": 50}
    sample = registry.reference_sample(version)
    assert len(sample) == 120 and list(sample.columns) == list(IRIS.data.columns)
    model = registry.load(version)
    assert (model.predict(IRIS.data) == IRIS.target).mean() > 0.9
    record = json.loads((tmp_path / "ws" / "runs" / result.run_id / "run.json").read_text())
    assert (record["status"], record["version"]) == ("registered", 1)
    assert not (tmp_path / "ws" / "runs" / result.run_id / "search-data.pkl").exists()

    (source / "model.py").write_text("# changed, not committed\n")
    again = run(iris_model(source_dir=source), registry, tmp_path, search="none")
    assert again.version.version == 2 and again.version.lineage["git_dirty"] is True


@pytest.mark.slow
def test_search_on_a_two_worker_dask_cluster_matches_one_in_process(
    registry: Registry, tmp_path: Path, dask_cluster: dict
) -> None:
    one = run(iris_model(), registry, tmp_path, search="random", trials=4)
    scheduler = dask_cluster["outs"]["scheduler"]
    two = run(iris_model(), registry, tmp_path, scheduler=scheduler, search="random", trials=4)
    scores = [[t.params, t.scores] for t in one.search.trials]
    assert scores == [[t.params, t.scores] for t in two.search.trials]
    assert one.version.metrics == two.version.metrics  # seeded splits: reproducible


def test_grid_random_and_halving_plan_their_trials(registry: Registry, tmp_path: Path) -> None:
    space = {"max_depth": [1, 2, 3, 4, 5, 6, 7, 8], "min_samples_leaf": [1, 2, 4]}
    grid = run(iris_model(search_space=space), registry, tmp_path, search="grid")
    assert len(grid.search.trials) == 24
    randomly = run(
        iris_model(search_space={"max_depth": [1, 2, 3], "ccp_alpha": loguniform(1e-4, 1e-1)}),
        registry,
        tmp_path,
        trials=5,
    )
    assert randomly.search.strategy == "random" and len(randomly.search.trials) == 5
    big = pd.concat([IRIS.data] * 4, ignore_index=True)
    target = pd.concat([IRIS.target] * 4, ignore_index=True)
    halving = run(
        iris_model(search_space=space, load_data=lambda: (big, target)),
        registry,
        tmp_path,
        search="halving",
        trials=9,
    )
    rounds = {}
    for trial in halving.search.trials:
        rounds.setdefault(trial.round, []).append(trial)
    assert [len(trials) for trials in rounds.values()] == [9, 3, 1]
    rows = [trials[0].rows for trials in rounds.values()]
    assert rows == sorted(rows) and rows[-1] == 480  # the last round uses every training row
    assert halving.search.best.round == 2
    # 13 trials ran, but over 9 candidates: the reruns of survivors are not new candidates
    assert (halving.search.candidates, halving.search.rounds) == (9, 3)
    summary = halving.to_dict()["search"]
    assert (summary["candidates"], summary["rounds"], summary["trials"]) == (9, 3, 13)


def test_random_search_over_a_grid_smaller_than_trials_counts_the_grid(
    registry: Registry, tmp_path: Path
) -> None:
    wanted = 20  # the space holds 6 parameter sets: each is tried once, none twice
    result = run(iris_model(), registry, tmp_path, search="random", trials=wanted)
    tried = [tuple(sorted(trial.params.items())) for trial in result.search.trials]
    assert len(tried) == len(set(tried)) == 6
    assert (result.search.candidates, result.search.rounds) == (6, 1)
    summary = result.to_dict()["search"]
    assert (summary["candidates"], summary["trials"]) == (6, 6)
    assert result.version.lineage["trials"] == 6


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"params": {"max_dept": 3}},
            "unknown estimator parameter 'max_dept'; did you mean 'max_depth'",
        ),
        ({"params": {"max_depth": -1}}, "'max_depth' parameter of DecisionTreeClassifier must be"),
        ({"search": "grid", "trials": 3}, "--trials applies to random and halving"),
        ({"params": {"max_depth": 2}}, "max_depth is both set by --param and searched"),
    ],
)
def test_bad_parameters_fail_before_any_data_is_loaded(
    registry: Registry, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    def never() -> None:
        raise AssertionError("data loaded before the parameters were checked")

    with pytest.raises(ParameterError, match=message):
        run(iris_model(load_data=never), registry, tmp_path, **options)
    assert registry.models() == [] and not (tmp_path / "ws").exists()


@pytest.mark.parametrize(
    ("space", "search", "message"),
    [
        ({"max_deep": [1, 2]}, None, "unknown estimator search space key 'max_deep'"),
        ({"max_depth": [1, "deep"]}, None, "search space max_depth='deep'"),
        ({"max_depth": 3}, None, "must be a non-empty list of values"),
        ({"ccp_alpha": loguniform(1e-3, 1)}, "grid", "grid search needs a list of values"),
        ({}, "grid", "the search space is empty"),
    ],
)
def test_search_spaces_that_do_not_fit_fail_before_any_work(
    registry: Registry, tmp_path: Path, space: dict, search: str | None, message: str
) -> None:
    def never() -> None:
        raise AssertionError("data loaded before the search space was checked")

    model = iris_model(load_data=never, search_space=space)
    with pytest.raises(ParameterError, match=message):
        run(model, registry, tmp_path, search=search)


def test_search_without_a_declared_space_is_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="need a search_space"):
        run(iris_model(search_space=None), registry, tmp_path, search="random")


def test_data_failing_validation_registers_nothing(registry: Registry, tmp_path: Path) -> None:
    run(iris_model(), registry, tmp_path, search="none")
    broken = IRIS.data.drop(columns=["petal width (cm)"]).assign(
        **{"sepal length (cm)": IRIS.data["sepal length (cm)"].astype(str)}
    )
    with pytest.raises(DataValidationError) as caught:
        run(iris_model(load_data=lambda: (broken, IRIS.target)), registry, tmp_path)
    assert "missing_column (petal width (cm))" in str(caught.value)
    assert "type_changed (sepal length (cm))" in str(caught.value)
    assert [v.version for v in registry.list_versions("iris")] == [1]
    records = [json.loads(p.read_text()) for p in (tmp_path / "ws" / "runs").glob("*/run.json")]
    assert sorted(r["status"] for r in records) == ["failed", "registered"]


def test_regression_uses_regression_metrics(registry: Registry, tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True)
    model = ModelDefinition(
        name="diabetes",
        task="regression",
        metric="rmse",
        load_data=lambda: (diabetes.data, diabetes.target),
        estimator=lambda: make_pipeline(StandardScaler(), Ridge()),
        search_space={"ridge__alpha": [0.1, 1.0, 10.0]},
    )
    result = run(model, registry, tmp_path)
    assert set(result.version.metrics) == {"r2", "mae", "rmse", "median_ae", "mape"}
    assert result.search.best.params["ridge__alpha"] in (0.1, 1.0, 10.0)
    ranked = sorted(result.search.trials, key=lambda t: t.mean)
    assert result.search.best is ranked[0]  # rmse: lower is better
    importances = registry.importances(result.version)
    assert importances["metric"] == "rmse" and importances["features"][0]["mean"] > 0


def test_parse_overrides_reads_literals_and_text() -> None:
    parsed = parse_overrides(["max_depth=3", "criterion=gini", "ccp_alpha=0.01", "x=None"])
    assert parsed == {"max_depth": 3, "criterion": "gini", "ccp_alpha": 0.01, "x": None}
    with pytest.raises(ParameterError, match="key=value"):
        parse_overrides(["max_depth"])


def write_project(folder: Path, code: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(code))
    return folder


IRIS_CODE = """
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    TAG = "{tag}"

    def load_data(env):
        data = load_iris(as_frame=True)
        return data.data, data.target.rename(env)

    def build_estimator():
        return LogisticRegression(max_iter=500)

    def space():
        return {{"C": [0.5, 1.0]}}
"""


def test_entry_points_load_from_each_project_even_with_the_same_module_name(tmp_path: Path) -> None:
    spec = ModelSpec(
        data="model:load_data", estimator="model:build_estimator", search_space="model:space"
    )
    first = load_definition("iris", spec, write_project(tmp_path / "a", IRIS_CODE.format(tag="a")))
    second = load_definition("iris", spec, write_project(tmp_path / "b", IRIS_CODE.format(tag="b")))
    assert first.load_data.__globals__["TAG"] == "a" and second.load_data.__globals__["TAG"] == "b"
    assert second.search_space == {"C": [0.5, 1.0]}
    features, target = second.dataset("staging")
    assert target.name == "staging" and features.shape == (150, 4)
    assert isinstance(second.build_estimator(), LogisticRegression)


def test_broken_entry_points_are_config_errors(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", "def load_data():\n    return 42\nestimator = 'nope'\n")
    missing = ModelSpec(data="model:nothing", estimator="model:estimator")
    with pytest.raises(ConfigError, match="has no 'nothing'"):
        load_definition("m", missing, root)
    with pytest.raises(ConfigError, match="cannot import 'absent'"):
        load_definition("m", ModelSpec(data="absent:x", estimator="model:estimator"), root)
    model = load_definition(
        "m", ModelSpec(data="model:load_data", estimator="model:estimator"), root
    )
    with pytest.raises(ConfigError, match=r"returned int; return \(features, target\)"):
        model.dataset("dev")
    with pytest.raises(ConfigError, match="not a scikit-learn estimator"):
        model.build_estimator()


CUSTOM_CODE = """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    class Scale(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.asarray(X) / 10

    def load_data():
        return load_iris(return_X_y=True, as_frame=True)

    def build_estimator():
        return make_pipeline(Scale(), LogisticRegression(max_iter=500))
"""


def test_users_own_classes_register_only_when_trusted(registry: Registry, tmp_path: Path) -> None:
    root = write_project(tmp_path / "custom", CUSTOM_CODE)
    spec = ModelSpec(data="model:load_data", estimator="model:build_estimator")
    with pytest.raises(UntrustedArtifactError, match=r"model\.Scale"):
        run(load_definition("custom", spec, root), registry, tmp_path)
    assert registry.models() == []
    trusted = spec.model_copy(update={"trusted_types": ["model.Scale"]})
    result = run(load_definition("custom", trusted, root), registry, tmp_path)
    assert registry.load(result.version).predict(IRIS.data[:2]).shape == (2,)


def test_training_refuses_unsplittable_data(registry: Registry, tmp_path: Path) -> None:
    tiny = (IRIS.data.iloc[[0, 1, 50, 100, 101]], IRIS.target.iloc[[0, 1, 50, 100, 101]])
    with pytest.raises(Exception, match="cannot split the data"):
        run(iris_model(load_data=lambda: tiny, search_space=None), registry, tmp_path)
    assert registry.models() == []


def test_logistic_regression_pipeline_params_are_recorded_flat(
    registry: Registry, tmp_path: Path
) -> None:
    model = iris_model(
        estimator=lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        search_space=None,
    )
    result = run(model, registry, tmp_path, params={"logisticregression__C": 0.5})
    params = result.version.params
    assert params["logisticregression__C"] == 0.5 and "steps" not in params
    assert result.version.lineage["overrides"] == {"logisticregression__C": 0.5}
