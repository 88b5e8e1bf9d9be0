"""Gates and evaluation reports on real trained versions in a real registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlinfra.data import DataValidationError
from mlinfra.errors import ConfigError, GateFailedError
from mlinfra.evaluation import (
    EvaluationReport,
    compute_metrics,
    evaluate,
    evaluate_declared,
    parse_gate,
)
from mlinfra.registry import ModelNotFoundError, ModelVersion, Registry, initialize
from mlinfra.training import ModelDefinition, train

IRIS = load_iris(as_frame=True)
FEATURES = IRIS.data.rename(columns=lambda name: name.removesuffix(" (cm)").replace(" ", "_"))
SLICES = {"long_petals": "petal_length >= 4.0", "giant": "petal_length > 100"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    initialize(tmp_path / "registry")
    with Registry.open(tmp_path / "registry") as opened:
        yield opened


def iris_version(registry: Registry, tmp_path: Path, estimator: object) -> ModelVersion:
    model = ModelDefinition(
        name="iris",
        task="classification",
        load_data=lambda: (FEATURES, IRIS.target),
        estimator=lambda: estimator,
    )
    return train(model, registry=registry, env="dev", workspace=tmp_path / "ws").version


def evaluate_iris(registry: Registry, version: ModelVersion, **options: object) -> EvaluationReport:
    """Evaluate on the whole iris data, in env dev."""
    return evaluate(registry, version, env="dev", features=FEATURES, target=IRIS.target, **options)  # type: ignore[arg-type]


def good() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy >= 0.9", ("accuracy", None, ">=", 0.9, False, None)),
        ("f1 >= champion - 0.01", ("f1", None, ">=", 0.01, True, "-")),
        ("log_loss <= champion * 1.1", ("log_loss", None, "<=", 1.1, True, "*")),
        ("accuracy[long_petals]>.5", ("accuracy", "long_petals", ">", 0.5, False, None)),
        ("latency_ms_single_row < 2e-1", ("latency_ms_single_row", None, "<", 0.2, False, None)),
        ("recall >= champion", ("recall", None, ">=", 0.0, True, "+")),
    ],
)
def test_gates_parse(text: str, expected: tuple) -> None:
    gate = parse_gate(text, task="classification", slices=SLICES)
    assert (gate.metric, gate.slice, gate.op, gate.value, gate.relative, gate.combine) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accuracy => 0.9", "write METRIC"),
        ("rmse <= 3", "unknown classification metric 'rmse'"),
        ("accuracy[nope] >= 0.9", "no slice 'nope'"),
        ("latency_ms_per_row[long_petals] <= 1", "not per slice"),
        ("f1 >= best - 0.1", "compare with a number or with champion"),
    ],
)
def test_bad_gates_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_gate(text, task="classification", slices=SLICES)


def test_relative_gates_compute_bounds_and_skip_without_champion() -> None:
    drop = parse_gate("f1 >= champion - 0.01", task="classification")
    assert drop.check(0.95, 0.955, has_champion=True).status == "passed"
    failed = drop.check(0.94, 0.955, has_champion=True)
    assert failed.status == "failed" and failed.bound == pytest.approx(0.945)
    assert drop.check(0.5, None, has_champion=False).status == "skipped"
    slower = parse_gate("latency_ms_single_row <= champion * 1.5", task="classification")
    assert slower.check(1.4, 1.0, has_champion=True).status == "passed"
    undefined = parse_gate("roc_auc >= 0.5", task="classification").check(
        None, None, has_champion=False
    )
    assert undefined.status == "failed" and "undefined" in undefined.detail


def test_first_version_passes_and_report_is_stored(registry: Registry, tmp_path: Path) -> None:
    version = iris_version(registry, tmp_path, good())
    report = evaluate_iris(
        registry,
        version,
        gates=["accuracy >= 0.9", "f1 >= champion - 0.01", "accuracy[long_petals] >= 0.8"],
        slices={"long_petals": SLICES["long_petals"]},
    )
    assert report.passed and report.against is None
    assert [g.status for g in report.gates] == ["passed", "skipped", "passed"]
    assert report.slices["long_petals"]["rows"] == int((FEATURES.petal_length >= 4).sum())
    assert report.metrics["latency_ms_single_row"] > 0 and report.metrics["latency_ms_per_row"] > 0
    (stored,) = registry.reports(version)
    assert stored.id == report.report_id and stored.passed and stored.kind == "evaluation"
    assert stored.body["gates"][1]["detail"] == "no champion to compare with"
    assert stored.markdown.startswith("# iris v1 in dev: PASSED")
    report.raise_if_failed()


def test_worse_challenger_fails_relative_gate_with_gate_failed_error(
    registry: Registry, tmp_path: Path
) -> None:
    champion = iris_version(registry, tmp_path, good())
    registry.set_alias("iris", "champion", champion.version, env="dev", reason="first")
    worse = iris_version(registry, tmp_path, DummyClassifier(strategy="most_frequent"))
    report = evaluate_iris(
        registry,
        worse,
        gates=["f1 >= champion - 0.01", "latency_ms_single_row <= 0.000001"],
    )
    assert report.against == {"ref": "champion", "version": 1}
    assert [g.status for g in report.gates] == ["failed", "failed"]
    assert report.champion_metrics["f1"] > report.metrics["f1"]
    with pytest.raises(GateFailedError, match=r"failed 2 gate\(s\) \(report \d+ in the registry\)"):
        report.raise_if_failed()
    assert GateFailedError.exit_code == 7
    (stored,) = registry.reports(worse)
    assert not stored.passed and "| `f1 >= champion - 0.01` | failed |" in stored.markdown


def test_slices_report_per_slice_and_an_empty_slice_fails_its_gate(
    registry: Registry, tmp_path: Path
) -> None:
    version = iris_version(registry, tmp_path, good())
    report = evaluate_iris(
        registry,
        version,
        gates=["accuracy[giant] >= 0.5"],
        slices=SLICES,
        against=None,
    )
    assert report.slices["giant"]["rows"] == 0
    assert report.gates[0].status == "failed" and "undefined" in report.gates[0].detail
    with pytest.raises(ConfigError, match="slice 'bad'"):
        evaluate_iris(
            registry,
            version,
            slices={"bad": "no_such_column > 1"},
        )


def test_against_a_missing_version_number_is_an_error(registry: Registry, tmp_path: Path) -> None:
    version = iris_version(registry, tmp_path, good())
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        evaluate_iris(registry, version, against="v9")


def test_against_a_misspelt_alias_is_an_error_not_a_skipped_gate(
    registry: Registry, tmp_path: Path
) -> None:
    version = iris_version(registry, tmp_path, good())
    with pytest.raises(ModelNotFoundError):
        evaluate_iris(registry, version, gates=["f1 >= champion - 0.01"], against="chmpion")


def test_regression_gates_relative_to_champion(registry: Registry, tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True)
    model = ModelDefinition(
        name="diabetes",
        task="regression",
        load_data=lambda: (diabetes.data, diabetes.target),
        estimator=lambda: Ridge(alpha=1.0),
        gates=("rmse <= champion * 1.05", "r2 >= 0.3"),
    )
    first = train(model, registry=registry, env="dev", workspace=tmp_path / "ws")
    registry.set_alias("diabetes", "champion", 1, env="dev", reason="first")
    worse = ModelDefinition(**{**model.__dict__, "estimator": lambda: Ridge(alpha=1000.0)})
    train(worse, registry=registry, env="dev", workspace=tmp_path / "ws")
    report = evaluate_declared(worse, registry, "latest", env="dev")
    assert report.data["source"] == "the test split of the training data (seed 0)"
    assert set(report.metrics) >= {"rmse", "mae", "r2"} and report.version == 2
    assert [g.status for g in report.gates] == ["failed", "failed"]
    same = evaluate_declared(model, registry, "champion", env="dev")
    assert same.passed and same.metrics["rmse"] == same.champion_metrics["rmse"]
    assert first.version.task == "regression"


def test_metrics_of_a_single_class_slice_are_none_not_warnings() -> None:
    fitted = good().fit(FEATURES, IRIS.target)
    only_setosa = FEATURES[IRIS.target == 0]
    metrics = compute_metrics("classification", fitted, only_setosa, IRIS.target[IRIS.target == 0])
    assert metrics["roc_auc"] is None and metrics["accuracy"] == 1.0
    binary = IRIS.target[IRIS.target < 2]
    two = good().fit(FEATURES[IRIS.target < 2], binary)
    assert (
        compute_metrics("classification", two, FEATURES[IRIS.target < 2], binary)["roc_auc"] == 1.0
    )


def test_evaluation_reads_declared_data_for_the_env(registry: Registry, tmp_path: Path) -> None:
    seen: list[str] = []

    def evaluation_data(env: str) -> tuple[pd.DataFrame, pd.Series]:
        seen.append(env)
        return FEATURES.iloc[::3], IRIS.target.iloc[::3]

    model = ModelDefinition(
        name="iris",
        task="classification",
        load_data=lambda: (FEATURES, IRIS.target),
        estimator=good,
        load_evaluation_data=evaluation_data,
        gates=("accuracy >= 0.9",),
    )
    train(model, registry=registry, env="staging", workspace=tmp_path / "ws")
    report = evaluate_declared(model, registry, "1", env="staging")
    assert seen == ["staging"] and report.data["rows"] == 50 and report.passed
    assert report.data["source"].endswith("evaluation_data")


def test_each_version_is_scored_on_its_own_columns_and_refused_data_names_it(
    registry: Registry, tmp_path: Path
) -> None:
    narrow = iris_version(registry, tmp_path, good())
    wide_features = FEATURES.assign(petal_area=FEATURES.petal_length * FEATURES.petal_width)
    wide_model = ModelDefinition(
        name="iris",
        task="classification",
        load_data=lambda: (wide_features, IRIS.target),
        estimator=good,
    )
    wide = train(wide_model, registry=registry, env="dev", workspace=tmp_path / "ws")
    registry.set_alias("iris", "champion", narrow.version, env="dev", reason="first")
    reordered = wide_features.iloc[:, ::-1]  # each version takes its columns in its own order
    compared = evaluate(registry, wide.version, env="dev", features=reordered, target=IRIS.target)
    assert compared.against == {"ref": "champion", "version": narrow.version}
    assert compared.metrics["accuracy"] > 0.9 and compared.champion_metrics["accuracy"] > 0.9

    registry.set_alias("iris", "champion", wide.version.version, env="dev", reason="second")
    with pytest.raises(DataValidationError) as refused:
        evaluate_iris(registry, narrow)
    assert str(refused.value) == (
        "evaluation data (evaluation data) does not fit the schema iris:v2 (champion) was "
        "trained on: missing_column (petal_area: column is missing (was float64)); "
        "nothing was evaluated"
    )
    assert refused.value.exit_code == 6 and registry.reports(narrow) == []


class _Predicts:
    """An estimator whose predict spends `seconds` computing, or waiting."""

    def __init__(self, seconds: float, *, computing: bool) -> None:
        self.seconds, self.computing = seconds, computing

    def predict(self, features):  # noqa: ANN001, ANN201 - the estimator protocol
        if self.computing:
            until = time.process_time() + self.seconds
            while time.process_time() < until:
                pass
        else:
            time.sleep(self.seconds)
        return np.zeros(len(features))


def test_latency_is_the_models_cpu_time_so_a_busy_machine_does_not_fail_a_gate() -> None:
    """What a latency gate measures is the model's own cost: time spent computing counts,
    time spent waiting for the CPU (or sleeping) does not."""
    from mlinfra.evaluation._metrics import measure_latency

    rows = pd.DataFrame({"x": np.arange(5.0)})
    computing = measure_latency(_Predicts(0.02, computing=True), rows)
    waiting = measure_latency(_Predicts(0.02, computing=False), rows)
    assert computing["latency_ms_single_row"] >= 19
    assert waiting["latency_ms_single_row"] < 5
