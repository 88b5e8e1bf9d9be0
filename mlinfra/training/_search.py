"""Hyperparameter search: grid, random, or successive halving, one fold per cluster task.

We run the folds ourselves (rather than through GridSearchCV) so that every trial reports its
progress as it goes and the whole search spreads over the training cluster, fold by fold.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from ..evaluation import greater_is_better
from ._errors import ParameterError, TrainingError
from ._folds import FoldResult, FoldRunner, FoldTask

__all__ = [
    "DEFAULT_TRIALS",
    "SearchResult",
    "Strategy",
    "Trial",
    "TrialProgress",
    "plan_candidates",
    "run_search",
]

Strategy = Literal["grid", "random", "halving"]
DEFAULT_TRIALS = 16
HALVING_FACTOR = 3


class TrialProgress(Protocol):
    def trial_started(self, trial: int, params: dict[str, Any], steps: int) -> None: ...

    def trial_advanced(self, trial: int) -> None: ...

    def trial_finished(self, trial: int, score: float | None) -> None: ...


@dataclass
class Trial:
    id: int
    params: dict[str, Any]
    round: int = 0
    rows: int = 0
    scores: list[float | None] = field(default_factory=list)  # by fold
    fit_seconds: float = 0.0
    error: str | None = None

    @property
    def mean(self) -> float | None:
        if self.error or not self.scores or None in self.scores:
            return None
        return statistics.fmean(self.scores)  # type: ignore[arg-type]

    @property
    def std(self) -> float | None:
        return None if self.mean is None else statistics.pstdev(self.scores)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class SearchResult:
    strategy: Strategy
    metric: str
    cv: int
    trials: list[Trial]
    best_trial: int
    seconds: float

    @property
    def best(self) -> Trial:
        return self.trials[self.best_trial]

    @property
    def candidates(self) -> int:
        """Parameter sets tried: all of them run in the first round (halving reruns the best)."""
        return sum(1 for trial in self.trials if trial.round == 0)

    @property
    def rounds(self) -> int:
        return 1 + max(trial.round for trial in self.trials)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "metric": self.metric,
            "cv": self.cv,
            "candidates": self.candidates,
            "rounds": self.rounds,
            "best_trial": self.best_trial,
            "best_params": self.best.params,
            "best_score": self.best.mean,
            "seconds": self.seconds,
            "trials": [trial.to_dict() for trial in self.trials],
        }


def plan_candidates(
    space: Mapping[str, Any], strategy: Strategy, trials: int | None, seed: int
) -> list[dict[str, Any]]:
    """The parameter sets to try: the whole grid, or `trials` seeded draws from the space."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if strategy == "grid":
        if trials is not None:
            raise ParameterError("--trials applies to random and halving search; grid tries all")
        return list(ParameterGrid(dict(space)))
    if trials is not None and trials < 1:
        raise ParameterError(f"--trials must be at least 1, got {trials}")
    wanted = trials or DEFAULT_TRIALS
    if all(isinstance(values, list | tuple) for values in space.values()):
        grid = list(ParameterGrid(dict(space)))
        if len(grid) <= wanted:  # the space is small: try all of it, each once
            return grid
    return list(ParameterSampler(dict(space), n_iter=wanted, random_state=seed))


def run_search(
    folds_on: FoldRunner,
    estimator: Any,
    candidates: Sequence[dict[str, Any]],
    features: Any,
    target: Any,
    *,
    strategy: Strategy,
    task: str,
    metric: str,
    cv: int,
    seed: int,
    progress: TrialProgress,
) -> SearchResult:
    """Score every candidate by cross-validation; halving drops the weaker ones as rows grow."""
    import numpy as np

    started = time.perf_counter()
    data = folds_on.share(features, target)
    rows = len(target)
    schedule = (
        _halving_rows(rows, len(candidates), task, target, cv) if strategy == "halving" else [rows]
    )
    order = np.random.default_rng(seed).permutation(rows)
    trials: list[Trial] = []
    survivors = list(candidates)
    for round_, used in enumerate(schedule):
        subset = np.sort(order[:used]) if used < rows else np.arange(rows)
        folds = _folds(task, target.iloc[subset], cv, seed)
        batch = [
            Trial(len(trials) + i, dict(params), round_, used, [None] * len(folds))
            for i, params in enumerate(survivors)
        ]
        trials += batch
        tasks = [
            FoldTask(trial.id, fold, trial.params, subset[train], subset[test])
            for trial in batch
            for fold, (train, test) in enumerate(folds)
        ]
        for trial in batch:
            progress.trial_started(trial.id, trial.params, len(folds))
        folds_on.run(data, estimator, metric, tasks, _Recorder(trials, progress))
        ranked = _ranked(batch, metric)
        if not ranked:
            raise TrainingError(f"every trial failed; the first error: {batch[0].error}")
        survivors = [trial.params for trial in ranked[: math.ceil(len(ranked) / HALVING_FACTOR)]]
    best = _ranked([t for t in trials if t.round == len(schedule) - 1], metric)[0]
    return SearchResult(strategy, metric, cv, trials, best.id, time.perf_counter() - started)


class _Recorder:
    """Folds in, trials updated and progress reported; a trial finishes with its last fold."""

    def __init__(self, trials: list[Trial], progress: TrialProgress) -> None:
        self.trials, self.progress = trials, progress
        self.done: dict[int, int] = {}

    def __call__(self, result: FoldResult) -> None:
        trial = self.trials[result.trial]
        trial.fit_seconds += result.fit_seconds
        if result.error is not None:
            trial.error = trial.error or result.error
        else:
            trial.scores[result.fold] = result.score
        self.done[trial.id] = self.done.get(trial.id, 0) + 1
        self.progress.trial_advanced(trial.id)
        if self.done[trial.id] == len(trial.scores):
            self.progress.trial_finished(trial.id, trial.mean)


def _ranked(trials: list[Trial], metric: str) -> list[Trial]:
    """Trials that scored, best first (ties: the earlier trial)."""
    sign = 1.0 if greater_is_better(metric) else -1.0
    scored = [trial for trial in trials if trial.mean is not None]
    return sorted(scored, key=lambda trial: (-sign * trial.mean, trial.id))  # type: ignore[operator]


def _folds(task: str, target: Any, cv: int, seed: int) -> list[tuple[Any, Any]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if task == "classification" else KFold)(
        n_splits=cv, shuffle=True, random_state=seed
    )
    return list(splitter.split(target.to_frame(), target))


def _halving_rows(rows: int, candidates: int, task: str, target: Any, cv: int) -> list[int]:
    """Rows per round: the last round uses all of them, each earlier one a factor fewer."""
    classes = target.nunique() if task == "classification" else 1
    smallest = max(cv * 2 * classes, 20)
    needed = 1 + math.floor(math.log(max(candidates, 1), HALVING_FACTOR))
    possible = 1 + math.floor(math.log(max(rows / smallest, 1), HALVING_FACTOR))
    rounds = max(1, min(needed, possible))
    return [int(rows / HALVING_FACTOR ** (rounds - 1 - i)) for i in range(rounds)]
