"""Where a search's cross-validation folds run: in this process, or on a Dask cluster.

On a cluster the data is scattered once to every worker, each fold is a task (the estimator
travels with it, pickled by cloudpickle), and a worker that dies mid-fit has its folds run again
elsewhere by the scheduler, so the search ends as an undisturbed one would: a fold's result
depends only on its parameters and rows. The workers of the local cluster import the project's
modules from its code paths; an existing cluster (`training.scheduler`) is sent the code paths'
contents first.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ._errors import TrainingError

__all__ = ["DaskFolds", "FoldResult", "FoldRunner", "FoldTask", "InProcessFolds", "fold_runner"]

# Not sent to an existing cluster with the project's code: state, environments, caches.
_NOT_CODE = {".git", ".mlinfra", ".venv", "venv", "__pycache__", ".pytest_cache", "tests", "docs"}
_CONNECT_SECONDS = 10


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


OnDone = Callable[[FoldResult], None]


class FoldRunner(Protocol):
    workers: int

    def connect(self) -> None:
        """Reach the workers before the data loads, so that a dead cluster costs no waiting."""
        ...

    def share(self, features: Any, target: Any) -> Any:
        """Hand the training data to the workers once; the handle tasks refer to."""
        ...

    def run(
        self, data: Any, estimator: Any, metric: str, tasks: Sequence[FoldTask], on_done: OnDone
    ) -> list[FoldResult]:
        """Run every task, calling `on_done` as each finishes; results in task order."""
        ...

    def close(self) -> None: ...


def fold_runner(scheduler: str | None, code_paths: Sequence[str] = ()) -> FoldRunner:
    """The cluster at `scheduler`, or this process when there is none."""
    if scheduler is None:
        return InProcessFolds()
    return DaskFolds(scheduler, code_paths)


class InProcessFolds:
    """One fold after another in the training process: a training cluster of one."""

    workers = 1

    def connect(self) -> None:
        pass

    def share(self, features: Any, target: Any) -> Any:
        return features, target

    def run(
        self, data: Any, estimator: Any, metric: str, tasks: Sequence[FoldTask], on_done: OnDone
    ) -> list[FoldResult]:
        results = []
        for task in tasks:
            results.append(run_fold(data, estimator, metric, task))
            on_done(results[-1])
        return results

    def close(self) -> None:
        pass


class DaskFolds:
    """Folds as tasks of the Dask cluster at `scheduler`; connected on first use."""

    def __init__(self, scheduler: str, code_paths: Sequence[str] = ()) -> None:
        self.scheduler = scheduler
        self.code_paths = tuple(code_paths)
        self._client: Any = None
        self.workers = 0

    def connect(self) -> None:
        """Connect (say why, in one line, when the cluster cannot be reached)."""
        if self._client is not None:
            return
        from distributed import Client

        try:
            self._client = Client(self.scheduler, timeout=_CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise TrainingError(
                f"the training cluster's scheduler at {self.scheduler} cannot be reached "
                f"({type(exc).__name__}); run `mlinfra up --refresh` to repair a local cluster"
            ) from exc
        self.workers = len(self._client.scheduler_info(n_workers=-1)["workers"])
        self._send_code()

    def share(self, features: Any, target: Any) -> Any:
        self.connect()
        try:
            return self._client.scatter((features, target), broadcast=True, hash=False)
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from exc

    def run(
        self, data: Any, estimator: Any, metric: str, tasks: Sequence[FoldTask], on_done: OnDone
    ) -> list[FoldResult]:
        import cloudpickle
        from distributed import KilledWorker, as_completed

        client = self._client
        # Opaque bytes to the scheduler, which need not import the project's classes
        packed = _Packed(cloudpickle.dumps(estimator))
        futures = []
        try:
            futures = [
                client.submit(run_fold, data, packed, metric, task, pure=False) for task in tasks
            ]
            index = {future.key: i for i, future in enumerate(futures)}
            ordered: list[FoldResult | None] = [None] * len(tasks)
            for future in as_completed(futures, loop=client.loop):
                ordered[index[future.key]] = result = future.result()
                on_done(result)
        except (OSError, TimeoutError) as exc:
            raise self._lost(exc) from exc
        except KilledWorker as exc:  # a fold whose every worker died under it
            raise TrainingError(f"training workers kept dying on a fold: {exc}") from exc
        finally:
            client.cancel(futures)
        return [result for result in ordered if result is not None]

    def _lost(self, exc: BaseException) -> TrainingError:
        return TrainingError(
            f"the training cluster at {self.scheduler} was lost mid-search "
            f"({type(exc).__name__}: {exc}); run `mlinfra up --refresh`, then train again"
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _send_code(self) -> None:
        """Upload each code path some worker does not import from (an existing cluster's, on
        other machines) to every worker, present and future, as a zip first on its import
        path; the env's own cluster imports them where they are."""
        import hashlib

        from ._project_code import ProjectCode

        import_paths = self._client.run(_import_path).values()
        for path in map(Path, self.code_paths):
            if path.is_dir() and any(str(path) not in paths for paths in import_paths):
                digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
                name = f"mlinfra-code-{path.name}-{digest}"
                plugin = ProjectCode(f"{name}.zip", _zipped(path))
                self._client.register_plugin(plugin, name=name)


def _zipped(folder: Path) -> bytes:
    """The modules and data files under `folder` as a zip, importable as from `folder`; the
    folders of _NOT_CODE are not walked into (a project's .venv may hold thousands of files)."""
    import io
    import os
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for root, folders, files in os.walk(folder):
            folders[:] = sorted(name for name in folders if name not in _NOT_CODE)
            for name in sorted(files):
                if not name.endswith(".pyc"):
                    file = Path(root) / name
                    zipped.write(file, file.relative_to(folder).as_posix())
    return archive.getvalue()


def _import_path() -> list[str]:
    import sys

    return list(sys.path)


@dataclass(frozen=True)
class _Packed:
    """An estimator pickled by the client, unpickled only where a fold runs."""

    data: bytes


def run_fold(data: tuple[Any, Any], estimator: Any, metric: str, task: FoldTask) -> FoldResult:
    """Fit on one fold's training rows and score on its held-out rows; errors become results."""
    from sklearn.base import clone

    from ..evaluation import score

    features, target = data
    started = time.perf_counter()
    try:
        if isinstance(estimator, _Packed):
            estimator = pickle.loads(estimator.data)
        fitted = clone(estimator).set_params(**task.params)
        fitted.fit(features.iloc[task.train_rows], target.iloc[task.train_rows])
        fit_seconds = time.perf_counter() - started
        value = score(metric, fitted, features.iloc[task.test_rows], target.iloc[task.test_rows])
    except Exception as exc:  # a failing candidate is a result of the search, not a crash
        error = f"{type(exc).__name__}: {exc}"
        return FoldResult(task.trial, task.fold, None, time.perf_counter() - started, error)
    return FoldResult(task.trial, task.fold, value, fit_seconds, None)
