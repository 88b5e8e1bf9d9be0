"""A model as the user declared it: their entry points, imported from their project, and settings.

Entry points are plain Python, no base classes: `data` returns (features, target) or a scikit-learn
Bunch, `estimator` is an estimator or a function returning one, `search_space` a dict (or a function
returning one). A loader that takes an `env` parameter is told which environment it loads for.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ModelSpec
from ..data import as_frame, as_series
from ..errors import ConfigError
from ..evaluation import Gate, default_metric, parse_gate
from ..evaluation._metrics import Task
from ._errors import TrainingError

if TYPE_CHECKING:
    import pandas

__all__ = ["ModelDefinition", "load_definition"]


@dataclass(frozen=True, kw_only=True)
class ModelDefinition:
    """Everything training and evaluation need to know about one model, already imported."""

    name: str
    task: Task
    load_data: Callable[..., Any]
    estimator: Callable[[], Any] | Any
    search_space: Mapping[str, Any] | None = None
    load_evaluation_data: Callable[..., Any] | None = None
    metric: str | None = None
    gates: tuple[str, ...] = ()
    slices: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    test_size: float = 0.2
    cv: int = 3
    trusted_types: tuple[str, ...] = ()
    source_dir: Path | None = None

    @property
    def primary_metric(self) -> str:
        return self.metric or default_metric(self.task)

    def parsed_gates(self) -> list[Gate]:
        return [parse_gate(text, task=self.task, slices=self.slices) for text in self.gates]

    def build_estimator(self) -> Any:
        """A fresh, unfitted estimator from the user's builder (or a clone of their instance)."""
        from sklearn.base import clone

        built = self.estimator() if _is_builder(self.estimator) else self.estimator
        if not (hasattr(built, "fit") and hasattr(built, "get_params")):
            raise ConfigError(
                f"model {self.name!r}: the estimator entry point returned {type(built).__name__}, "
                "not a scikit-learn estimator (something with fit and get_params)"
            )
        return built if _is_builder(self.estimator) else clone(built)

    def dataset(self, env: str) -> tuple[pandas.DataFrame, pandas.Series]:
        return _call_loader(self.load_data, env, f"model {self.name!r} data loader")

    def evaluation_dataset(self, env: str) -> tuple[pandas.DataFrame, pandas.Series, str]:
        """Features, target and where they came from: the declared evaluation data, or else
        the same seeded test split that training held out."""
        loader = self.load_evaluation_data
        if loader is not None:
            features, target = _call_loader(loader, env, f"model {self.name!r} evaluation data")
            return features, target, f"{loader.__module__}:{loader.__qualname__}"
        _, features, _, target = self.split(*self.dataset(env))
        return features, target, f"the test split of the training data (seed {self.seed})"

    def split(self, features: pandas.DataFrame, target: pandas.Series) -> list[Any]:
        """Seeded split, stratified for classification: x_train, x_test, y_train, y_test."""
        from sklearn.model_selection import train_test_split

        try:
            return train_test_split(
                features,
                target,
                test_size=self.test_size,
                random_state=self.seed,
                stratify=target if self.task == "classification" else None,
            )
        except ValueError as exc:
            raise TrainingError(f"cannot split the data into train and test sets: {exc}") from exc


def load_definition(name: str, spec: ModelSpec, root: Path) -> ModelDefinition:
    """Import a model's entry points from the project at `root`."""
    space = _entry_point(spec.search_space, root) if spec.search_space else None
    if callable(space):
        space = space()
    if space is not None and not isinstance(space, Mapping):
        raise ConfigError(
            f"[models.{name}] search_space must be a dict of parameter -> values, "
            f"got {type(space).__name__}"
        )
    return ModelDefinition(
        name=name,
        task=spec.task,
        load_data=_entry_point(spec.data, root),
        estimator=_entry_point(spec.estimator, root),
        search_space=space,
        load_evaluation_data=(
            _entry_point(spec.evaluation_data, root) if spec.evaluation_data else None
        ),
        metric=spec.metric,
        gates=tuple(spec.gates),
        slices=dict(spec.slices),
        seed=spec.seed,
        test_size=spec.test_size,
        cv=spec.cv,
        trusted_types=tuple(spec.trusted_types),
        source_dir=root,
    )


def _entry_point(reference: str, root: Path) -> Any:
    module_name, _, attribute = reference.partition(":")
    module = _import_from(module_name, root)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"entry point {reference!r}: {module.__file__} has no {attribute!r}"
        ) from None


def _import_from(module_name: str, root: Path) -> Any:
    """Import `module_name` from the project at `root`, even if another project's module of the
    same name was imported before (a long-lived process, or tests with several projects)."""
    folder = str(root.resolve())
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)  # also reaches worker processes, which copy the parent's sys.path
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(folder):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"cannot import {module_name!r} from {root}: {exc}") from exc
        raise


def _is_builder(estimator: Any) -> bool:
    return inspect.isclass(estimator) or (
        callable(estimator) and not hasattr(estimator, "get_params")
    )


def _call_loader(
    loader: Callable[..., Any], env: str, what: str
) -> tuple[pandas.DataFrame, pandas.Series]:
    wants_env = "env" in inspect.signature(loader).parameters
    loaded = loader(env=env) if wants_env else loader()
    if hasattr(loaded, "data") and hasattr(loaded, "target"):
        features, target = loaded.data, loaded.target
    elif isinstance(loaded, tuple | list) and len(loaded) == 2:
        features, target = loaded
    else:
        raise ConfigError(
            f"{what} returned {type(loaded).__name__}; return (features, target) "
            "or a Bunch with .data and .target"
        )
    frame = as_frame(features)
    return frame, as_series(target, index=frame.index)
