"""`evaluate()`: a registered version's metrics on evaluation data, judged by gates, reported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    there is no champion: relative gates are then skipped, and the report says so.
    """
    from ..data import data_hash

    slices = dict(slices or {})
    parsed = [parse_gate(text, task=version.task, slices=slices) for text in gates]  # type: ignore[arg-type]
    masks = _slice_masks(features, slices)
    candidate = _measure(registry.load(version), version.task, features, target, masks)
    champion_version = _champion(registry, version, against, env)
    champion = None
    if champion_version is not None:
        estimator = registry.load(champion_version)
        champion = _measure(estimator, champion_version.task, features, target, masks)
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
