"""`train()`: check, search, fit, score, and register one model version with its lineage.

Order matters: everything that can be refused without data (parameters, search space, types
the artifact could not be trusted with) is checked first; data is validated before any fitting;
the version is registered last, in one transaction, so a run that fails or is killed registers
nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..data import DatasetSchema, ValidationReport, data_hash, validate_data, write_sample
from ..evaluation import compute_metrics, greater_is_better, score
from ..registry import ModelVersion, NewVersion, Registry, dump_model
from ..registry._trust import refuse_untrusted
from ._definition import ModelDefinition
from ._errors import ParameterError
from ._folds import fold_runner
from ._lineage import git_lineage, jsonable, library_versions, machine
from ._params import apply_params, check_search_space
from ._runs import RunRecord
from ._search import SearchResult, Strategy, TrialProgress, plan_candidates, run_search

if TYPE_CHECKING:
    import pandas

__all__ = ["SilentProgress", "TrainResult", "TrainingProgress", "train"]

SearchChoice = Strategy | Literal["none"]
IMPORTANCE_ROWS = 1000
IMPORTANCE_MIN_ROWS = 100
IMPORTANCE_REPEATS = 5
IMPORTANCE_BUDGET = 0.1  # of the fit time
IMPORTANCE_MIN_BUDGET_S = 0.5


class TrainingProgress(TrialProgress, Protocol):
    def stage(self, name: str) -> None: ...


class SilentProgress:
    """The progress reporter for callers who want none."""

    def stage(self, name: str) -> None:
        pass

    def trial_started(self, trial: int, params: dict[str, Any], steps: int) -> None:
        pass

    def trial_advanced(self, trial: int) -> None:
        pass

    def trial_finished(self, trial: int, score: float | None) -> None:
        pass


@dataclass(frozen=True)
class TrainResult:
    version: ModelVersion
    validation: ValidationReport
    search: SearchResult | None
    run_id: str
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        search = None
        if self.search is not None:
            summary = self.search.to_dict()
            search = {
                key: summary[key] for key in ("strategy", "metric", "best_params", "best_score")
            }
            search["trials"] = len(self.search.trials)
            search.update(candidates=self.search.candidates, rounds=self.search.rounds)
        return {
            "model": self.version.model,
            "version": self.version.version,
            "metrics": self.version.metrics,
            "params": self.version.params,
            "search": search,
            "warnings": [finding.to_dict() for finding in self.validation.warnings],
            "run_id": self.run_id,
            "seconds": self.seconds,
        }


def train(
    model: ModelDefinition,
    *,
    registry: Registry,
    env: str,
    workspace: Path,
    scheduler: str | None = None,
    code_paths: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    search: SearchChoice | None = None,
    trials: int | None = None,
    progress: TrainingProgress | None = None,
) -> TrainResult:
    """Train `model` on the data its loader returns for `env` and register the new version.

    `search` None searches when the model declares a search space (grid over lists, random
    when it holds distributions); "none" fits the estimator's own parameters. A search's folds
    run on the Dask cluster at `scheduler` (the training cluster's), else in this process; its
    workers import the project's modules from `code_paths` (the training cluster's; None: the
    model's source directory).
    """
    progress = progress or SilentProgress()
    params = dict(params or {})
    estimator = apply_params(model.build_estimator(), params)
    strategy = _strategy(model, params, search, trials)
    candidates = None
    if strategy is not None:
        assert model.search_space is not None
        check_search_space(estimator, model.search_space, strategy)
        candidates = plan_candidates(model.search_space, strategy, trials, model.seed)
    _refuse_untrusted(model, estimator)
    if code_paths is None:
        code_paths = [str(model.source_dir.resolve())] if model.source_dir else []
    run = RunRecord(workspace, model.name, env)
    folds_on = fold_runner(scheduler if strategy else None, code_paths)
    if scheduler is not None and strategy is not None:
        progress.stage("connecting to the training cluster")
    folds_on.connect()
    run.start(params=jsonable(params), search=strategy, trials=trials, workers=folds_on.workers)
    clock = _Clock()
    try:
        progress.stage("loading data")
        features, target = model.dataset(env)
        clock.lap("load")
        progress.stage("checking data")
        validation = _validate(registry, model, features, target)
        digest = data_hash(features, target)
        clock.lap("check")
        x_train, x_test, y_train, y_test = model.split(features, target)
        found = None
        if strategy is not None and candidates is not None:
            progress.stage("searching")
            found = run_search(
                folds_on,
                estimator,
                candidates,
                x_train,
                y_train,
                strategy=strategy,
                task=model.task,
                metric=model.primary_metric,
                cv=model.cv,
                seed=model.seed,
                progress=progress,
            )
            estimator.set_params(**found.best.params)
            clock.lap("search")
        progress.stage("fitting")
        estimator.fit(x_train, y_train)
        clock.lap("fit")
        progress.stage("scoring")
        metrics = compute_metrics(model.task, estimator, x_test, y_test)
        importances = _importances(model, estimator, x_test, y_test, clock.laps["fit"])
        clock.lap("score")
        progress.stage("registering")
        documents: dict[str, Any] = {
            "schema": validation.schema.model_dump(),
            "importances": importances,
            "validation": validation.to_dict(),
        }
        if found is not None:
            documents["search"] = jsonable(found.to_dict())
        lineage = {
            **git_lineage(model.source_dir),
            "data_hash": digest,
            "rows": {"train": len(y_train), "test": len(y_test)},
            "libraries": library_versions(),
            **machine(),
            "fit_seconds": clock.laps["fit"],
            "seed": model.seed,
            "test_size": model.test_size,
            "metric": model.primary_metric,
            "search": strategy,
            "trials": 0 if found is None else len(found.trials),
            "cv_score": None if found is None else found.best.mean,
            "overrides": jsonable(params),
            "run_id": run.id,
        }
        version = registry.register(
            NewVersion(
                model=model.name,
                task=model.task,
                env=env,
                model_bytes=dump_model(estimator),
                params=jsonable(_leaf_params(estimator)),
                metrics=metrics,
                lineage=lineage,
                documents=documents,
                reference_sample=write_sample(x_train, seed=model.seed),
                trusted_types=list(model.trusted_types),
            )
        )
        clock.lap("register")
    except BaseException as exc:
        run.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        folds_on.close()
    run.finish("registered", version=version.version, seconds=clock.laps)
    return TrainResult(version, validation, found, run.id, clock.laps)


def _strategy(
    model: ModelDefinition,
    params: Mapping[str, Any],
    search: SearchChoice | None,
    trials: int | None,
) -> Strategy | None:
    if search == "none":
        return None
    space = model.search_space
    if space is None:
        if search is not None or trials is not None:
            raise ParameterError(
                f"--search and --trials need a search_space under [models.{model.name}]"
            )
        return None
    fixed = sorted(set(params) & set(space))
    if fixed:
        raise ParameterError(
            f"{', '.join(fixed)} is both set by --param and searched; drop one of them"
        )
    if search is not None:
        return search
    if trials is not None or any(hasattr(values, "rvs") for values in space.values()):
        return "random"
    return "grid"


def _refuse_untrusted(model: ModelDefinition, estimator: Any) -> None:
    """Refuse before the search rather than at registration after it: the unfitted estimator
    and the search space already name the classes the artifact will hold. Registration checks
    again, as fitted attributes may add types."""
    space = model.search_space or {}
    candidates = [
        value
        for values in space.values()
        if isinstance(values, list | tuple)
        for value in values
        if hasattr(value, "get_params")
    ]
    refuse_untrusted(dump_model([estimator, *candidates]), model.trusted_types, model=model.name)


def _validate(
    registry: Registry,
    model: ModelDefinition,
    features: pandas.DataFrame,
    target: pandas.Series,
) -> ValidationReport:
    """Check the data on its own and against the schema the previous version was trained on."""
    previous = registry.latest(model.name)
    stored = registry.schema(previous) if previous is not None else None
    reference = DatasetSchema.model_validate(stored) if stored else None
    report = validate_data(features, target, reference=reference, task=model.task)
    report.raise_for_errors()
    return report


def _importances(
    model: ModelDefinition,
    estimator: Any,
    features: pandas.DataFrame,
    target: pandas.Series,
    fit_seconds: float,
) -> dict[str, Any] | None:
    """Permutation importances on (a sample of) the test split: how much each feature matters.

    Permuting every feature costs a prediction per feature and repeat, which for a big forest
    rivals the fit itself; so rows and repeats shrink to a budget of a tenth of the fit time
    (at least half a second), and the report says how many were used.
    """
    from sklearn.inspection import permutation_importance

    metric = model.primary_metric
    sign = 1.0 if greater_is_better(metric) else -1.0

    def scorer(fitted: Any, x: Any, y: Any) -> float:
        return sign * score(metric, fitted, x, y)

    if len(features) > IMPORTANCE_ROWS:
        features = features.sample(n=IMPORTANCE_ROWS, random_state=model.seed)
        target = target.loc[features.index]
    try:
        started = time.perf_counter()
        scorer(estimator, features, target)
        one_pass = (time.perf_counter() - started) * features.shape[1]
        budget = max(IMPORTANCE_MIN_BUDGET_S, IMPORTANCE_BUDGET * fit_seconds)
        repeats = max(1, min(IMPORTANCE_REPEATS, int(budget / max(one_pass, 1e-9))))
        if one_pass > budget and len(features) > IMPORTANCE_MIN_ROWS:
            rows = max(IMPORTANCE_MIN_ROWS, int(len(features) * budget / one_pass))
            features = features.sample(n=rows, random_state=model.seed)
            target = target.loc[features.index]
        found = permutation_importance(
            estimator,
            features,
            target,
            scoring=scorer,
            n_repeats=repeats,
            random_state=model.seed,
        )
    except ValueError:  # the metric is undefined on this test split
        return None
    ranked = sorted(
        zip(features.columns, found.importances_mean, found.importances_std, strict=True),
        key=lambda row: -row[1],
    )
    return {
        "metric": metric,
        "rows": len(features),
        "repeats": repeats,
        "features": [
            {"feature": str(name), "mean": float(mean), "std": float(std)}
            for name, mean, std in ranked
        ],
    }


def _leaf_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters that are values, not nested estimators or lists of steps."""

    def is_leaf(value: Any) -> bool:
        if hasattr(value, "get_params"):
            return False
        if isinstance(value, list | tuple):
            return all(is_leaf(item) for item in value)
        return True

    return {key: value for key, value in estimator.get_params(deep=True).items() if is_leaf(value)}


class _Clock:
    """Seconds spent in each stage, for the run record and the benchmark."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now
