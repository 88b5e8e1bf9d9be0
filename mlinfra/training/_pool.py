"""The local training cluster's worker pool: cross-validation folds run on every core.

Workers are loky processes (what joblib and scikit-learn use): started fresh rather than forked,
so OpenMP and BLAS thread pools in the parent cannot deadlock them, and they exit on their own if
the training process is killed. Each puts the project's code paths first on its import path
before it unpickles anything, so the project's own classes load as they did here. The data goes
to the run's scratch directory once, not with every task, and each worker reads it once. With one
worker, folds run in this process.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._code_paths import put_first_on_path
from ._errors import TrainingError

__all__ = ["FoldResult", "FoldTask", "WorkerPool"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_IDLE_TIMEOUT_S = 300
_PARENT_CHECK_S = 0.25
# Per worker process: the data of the current run, read once from its scratch file.
_data_cache: dict[str, Any] = {}


@dataclass(frozen=True)
class FoldTask:
    trial: int
    fold: int
    params: dict[str, Any]
    train_rows: Any  # positional indices (numpy array)
    test_rows: Any


@dataclass(frozen=True)
class FoldResult:
    trial: int
    fold: int
    score: float | None
    fit_seconds: float
    error: str | None


@dataclass(frozen=True)
class _Job:
    """What every fold of one search shares."""

    data_path: str
    estimator: Any
    metric: str


class WorkerPool:
    """`workers` processes for one training run; `scratch` is the run's own directory;
    `code_paths` the directories of the project's own modules (the training cluster's)."""

    def __init__(self, workers: int, scratch: Path, code_paths: Sequence[str] = ()) -> None:
        self.workers = max(1, workers)
        self.scratch = scratch
        self.code_paths = tuple(code_paths)
        self._executor: Any = None

    def start(self, estimator: Any) -> None:
        """Start the workers now, so their imports overlap with loading and checking the data."""
        if self.workers == 1 or self._executor is not None:
            return
        from joblib.externals.loky import get_reusable_executor

        threads = str(max(1, (os.cpu_count() or 1) // self.workers))
        self._executor = get_reusable_executor(
            max_workers=self.workers,
            timeout=_IDLE_TIMEOUT_S,
            env=dict.fromkeys(_THREAD_VARIABLES, threads),
            initializer=_start_worker,
            initargs=(os.getpid(), self.code_paths),
        )
        for _ in range(self.workers):
            self._executor.submit(_warm_up, estimator)  # unpickling it imports its modules

    def share(self, features: Any, target: Any) -> str:
        """Write the training data once for the workers; returns the handle tasks refer to."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / "search-data.pkl"
        with path.open("wb") as handle:
            pickle.dump((features, target), handle, protocol=pickle.HIGHEST_PROTOCOL)
        _data_cache[str(path)] = (features, target)  # the in-process path needs no reading back
        return str(path)

    def run(
        self,
        data: str,
        estimator: Any,
        metric: str,
        tasks: Sequence[FoldTask],
        on_done: Callable[[FoldResult], None],
    ) -> list[FoldResult]:
        """Run every task, calling `on_done` as each finishes; results come back in task order."""
        job = _Job(data, estimator, metric)
        if self.workers == 1:
            results = []
            for task in tasks:
                results.append(_run_fold(job, task))
                on_done(results[-1])
            return results
        self.start(estimator)
        futures: dict[Future[FoldResult], int] = {
            self._executor.submit(_run_fold, job, task): i for i, task in enumerate(tasks)
        }
        ordered: list[FoldResult | None] = [None] * len(tasks)
        try:
            for future in as_completed(futures):
                ordered[futures[future]] = result = future.result()
                on_done(result)
        except Exception as exc:  # loky's TerminatedWorkerError and BrokenProcessPool
            for future in futures:
                future.cancel()
            raise TrainingError(f"a training worker failed: {exc}") from exc
        return [result for result in ordered if result is not None]

    def close(self) -> None:
        """Forget this run's data; the workers stay up for the next run until idle."""
        _data_cache.clear()
        (self.scratch / "search-data.pkl").unlink(missing_ok=True)


def _start_worker(parent: int, code_paths: tuple[str, ...]) -> None:
    """In each worker, before its first task: import the project's modules from `code_paths`,
    and exit with the training process."""
    put_first_on_path(code_paths)
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the training process is gone, even mid-fit.

    loky notices a dead parent only when a worker next talks to it; a worker fitting a big
    model, or idle until its timeout, would otherwise outlive a killed `mlinfra train`.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="mlinfra-parent-watch", daemon=True).start()


def _warm_up(estimator: Any) -> None:
    """Import what folds need (a second or two per worker) before the first fold arrives."""
    import sklearn.metrics  # noqa: F401


def _load(path: str) -> Any:
    if path not in _data_cache:
        _data_cache.clear()  # a new run: drop the last run's data
        with open(path, "rb") as handle:
            _data_cache[path] = pickle.load(handle)
    return _data_cache[path]


def _run_fold(job: _Job, task: FoldTask) -> FoldResult:
    """Fit on one fold's training rows and score on its held-out rows; errors become results."""
    from sklearn.base import clone

    from ..evaluation import score

    features, target = _load(job.data_path)
    started = time.perf_counter()
    try:
        estimator = clone(job.estimator).set_params(**task.params)
        estimator.fit(features.iloc[task.train_rows], target.iloc[task.train_rows])
        fitted = time.perf_counter() - started
        value = score(
            job.metric, estimator, features.iloc[task.test_rows], target.iloc[task.test_rows]
        )
    except Exception as exc:  # a failing candidate is a result of the search, not a crash
        error = f"{type(exc).__name__}: {exc}"
        return FoldResult(task.trial, task.fold, None, time.perf_counter() - started, error)
    return FoldResult(task.trial, task.fold, value, fitted, None)
