"""`evaluate()`: a registered version's metrics on evaluation data, judged by gates, reported.

The data is checked first against the schema each scored version was trained on, with the rules
training uses (mlinfra.data), so data that no longer fits is a DataValidationError naming the
rule and column, not a failure inside scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from ..registry import ModelNotFoundError, ModelVersion, Registry
from ..registry._types import utc_now
from ._gates import parse_gate
from ._metrics import Task, compute_metrics, measure_latency, metric_names
from ._report import EvaluationReport

if TYPE_CHECKING:
    import pandas

__all__ = ["DeclaredModel", "evaluate", "evaluate_declared"]


class DeclaredModel(Protocol):
    """A model as mlinfra.toml declares it (mlinfra.training.ModelDefinition is one)."""

    @property
    def name(self) -> str: ...

    @property
    def task(self) -> Task: ...

    @property
    def gates(self) -> tuple[str, ...]: ...

    @property
    def slices(self) -> Mapping[str, str]: ...

    def evaluation_dataset(self, env: str) -> tuple[pandas.DataFrame, pandas.Series, str]: ...


def evaluate_declared(
    model: DeclaredModel,
    registry: Registry,
    ref: str,
    *,
    env: str,
    against: str | None = "champion",
) -> EvaluationReport:
    """`mlinfra evaluate`: resolve `ref`, load the env's evaluation data, apply the gates."""
    version = registry.resolve(model.name, ref, env=env)
    features, target, source = model.evaluation_dataset(env)
    return evaluate(
        registry,
        version,
        env=env,
        features=features,
        target=target,
        gates=model.gates,
        slices=model.slices,
        against=against,
        data_source=source,
    )


def evaluate(
    registry: Registry,
    version: ModelVersion,
    *,
    env: str,
    features: pandas.DataFrame,
    target: pandas.Series,
    gates: Sequence[str] = (),
    slices: Mapping[str, str] | None = None,
    against: str | None = "champion",
    data_source: str = "evaluation data",
) -> EvaluationReport:
    """Score `version` (and the version `against` names in `env`) and check `gates`.

    The report is stored in the registry with the version; call `raise_if_failed()` on it to
    turn failed gates into GateFailedError. An `against` alias that does not exist yet means
    there is no champion: relative gates are then skipped, and the report says so. Data that
    does not fit the schema a scored version was trained on raises DataValidationError.
    """
    from ..data import data_hash

    slices = dict(slices or {})
    parsed = [parse_gate(text, task=version.task, slices=slices) for text in gates]  # type: ignore[arg-type]
    masks = _slice_masks(features, slices)
    model, inputs = _checked_model(registry, version, features, target, data_source)
    champion_version = _champion(registry, version, against, env)
    champion_checked = None
    if champion_version is not None:  # checked before anything is measured
        champion_checked = _checked_model(
            registry, champion_version, features, target, data_source, role=against
        )
    candidate = _measure(model, version.task, inputs, target, masks)
    champion = None
    if champion_version is not None and champion_checked is not None:
        champion_model, champion_inputs = champion_checked
        champion = _measure(champion_model, champion_version.task, champion_inputs, target, masks)
    results = []
    for gate in parsed:
        mine = candidate[gate.slice]["metrics"] if gate.slice else candidate[None]
        theirs = None
        if champion is not None:
            theirs = champion[gate.slice]["metrics"] if gate.slice else champion[None]
        results.append(
            gate.check(
                mine.get(gate.metric),
                None if theirs is None else theirs.get(gate.metric),
                has_champion=champion is not None,
            )
        )
    report = EvaluationReport(
        model=version.model,
        version=version.version,
        env=env,
        task=version.task,
        created_at=utc_now(),
        data={"source": data_source, "rows": len(features), "hash": data_hash(features, target)},
        metrics=candidate[None],
        gates=results,
        against=(
            None
            if champion_version is None
            else {"ref": against, "version": champion_version.version}
        ),
        champion_metrics=None if champion is None else champion[None],
        slices={
            name: {
                "query": slices[name],
                "rows": candidate[name]["rows"],
                "metrics": candidate[name]["metrics"],
                "champion_metrics": None if champion is None else champion[name]["metrics"],
            }
            for name in slices
        },
    )
    stored = registry.add_report(
        version,
        env=env,
        kind="evaluation",
        passed=report.passed,
        body=report.to_dict(),
        markdown=report.to_markdown(),
    )
    return replace(report, report_id=stored.id)


def _champion(
    registry: Registry, version: ModelVersion, against: str | None, env: str
) -> ModelVersion | None:
    """The version to compare with. Before the first deploy there is no champion, so a missing
    `champion` means none yet; any other missing name is a typo CI must not pass over."""
    if not against:
        return None
    try:
        return registry.resolve(version.model, against, env=env)
    except ModelNotFoundError:
        if against != "champion":
            raise
        return None


def _checked_model(
    registry: Registry,
    version: ModelVersion,
    features: pandas.DataFrame,
    target: pandas.Series,
    data_source: str,
    *,
    role: str | None = None,
) -> tuple[Any, pandas.DataFrame]:
    """The version's model and the features it takes (its training columns, in their order),
    once the data passed training's checks against the schema the version was trained on."""
    from ..data import DatasetSchema, DataValidationError, validate_data

    estimator = registry.load(version)
    stored = registry.schema(version)
    if not stored:
        return estimator, features
    schema = DatasetSchema.model_validate(stored)
    report = validate_data(
        features,
        target,
        reference=schema,
        task=version.task,  # type: ignore[arg-type]
        takes_nulls=_nulls_probe(estimator, features, schema.names),
    )
    if report.errors:
        named = version.ref if role is None else f"{version.ref} ({role})"
        raise DataValidationError(
            report,
            f"evaluation data ({data_source}) does not fit the schema {named} was trained on: "
            f"{report.error_details()}; nothing was evaluated",
        )
    return estimator, features[schema.names]


def _nulls_probe(
    estimator: Any, features: pandas.DataFrame, columns: list[str]
) -> Callable[[str], bool]:
    """Whether the model predicts with a value missing in a column, tried on a complete row of
    the data with that value taken from a row where it is missing. Estimator tags cannot tell:
    a Pipeline that imputes says it takes no NaN."""

    def predicts(rows: pandas.DataFrame) -> bool:
        try:
            estimator.predict(rows[columns])
        except Exception:  # noqa: BLE001 - whatever the model raises, it cannot take these rows
            return False
        return True

    complete = features.dropna().head(1)

    def takes(column: str) -> bool:
        if complete.empty or not features.columns.is_unique or not predicts(complete):
            return True  # nothing to compare with: the share of missing values decides
        missing = features.loc[features[column].isna(), column].head(1)
        return predicts(complete.assign(**{column: missing.set_axis(complete.index)}))

    return takes


def _slice_masks(features: pandas.DataFrame, slices: Mapping[str, str]) -> dict[str, Any]:
    masks = {}
    for name, query in slices.items():
        try:
            mask = features.eval(query)
        except Exception as exc:  # pandas raises many kinds for a bad expression
            raise ConfigError(f"slice {name!r} ({query!r}) cannot be evaluated: {exc}") from exc
        if str(getattr(mask, "dtype", "")) != "bool" or len(mask) != len(features):
            raise ConfigError(f"slice {name!r} ({query!r}) must give True or False for each row")
        masks[name] = mask
    return masks


def _measure(
    estimator: Any,
    task: Any,
    features: pandas.DataFrame,
    target: pandas.Series,
    masks: Mapping[str, Any],
) -> dict[str | None, Any]:
    """Metrics and latency on all rows (key None), and metrics on each slice."""
    measured: dict[str | None, Any] = {
        None: {
            **compute_metrics(task, estimator, features, target),
            **measure_latency(estimator, features),
        }
    }
    for name, mask in masks.items():
        rows = int(mask.sum())
        metrics = (
            compute_metrics(task, estimator, features[mask], target[mask])
            if rows
            else dict.fromkeys(metric_names(task))
        )
        measured[name] = {"rows": rows, "metrics": metrics}
    return measured
