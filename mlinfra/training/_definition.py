"""A model as the user declared it: their entry points, imported from their project, and settings.

Entry points are plain Python, no base classes: `data` returns (features, target) or a scikit-learn
Bunch, `estimator` is an estimator or a function returning one, `search_space` a dict (or a function
returning one). A loader that takes an `env` parameter is told which environment it loads for.

Whatever the user's code raises (or a `sys.exit` in it) is their mistake, not mlinfra's: it
becomes a ConfigError naming the entry point and the line of their code that raised.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._code_paths import put_first_on_path
from ..config import ModelSpec
from ..config._models import BRANCH_SEPARATOR
from ..data import as_frame, as_series
from ..errors import ConfigError, MlinfraError
from ..evaluation import Gate, default_metric, parse_gate
from ..evaluation._metrics import Task
from ._errors import TrainingError

if TYPE_CHECKING:
    import pandas

__all__ = ["ModelDefinition", "load_definition"]

_LIBRARY_PATHS = ("stdlib", "platstdlib", "purelib", "platlib")


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
        """A fresh, unfitted estimator from the user's builder (or a clone of their instance),
        refused if it is not one for the model's task."""
        from sklearn.base import clone

        builder = _is_builder(self.estimator)
        if builder:
            with _user_code(_reference(self.estimator), self.source_dir, "fix the estimator"):
                built = self.estimator()
        else:
            built = self.estimator
        if not (hasattr(built, "fit") and hasattr(built, "get_params")):
            raise ConfigError(
                f"model {self.name!r}: the estimator entry point returned {type(built).__name__}, "
                "not a scikit-learn estimator (something with fit and get_params)"
            )
        self._refuse_other_task(built)
        return built if builder else clone(built)

    def _refuse_other_task(self, built: Any) -> None:
        from sklearn.base import is_classifier, is_regressor

        wanted, other = ("classifier", "regressor")
        if self.task == "regression":
            wanted, other = other, wanted
        kinds = {"classifier": is_classifier(built), "regressor": is_regressor(built)}
        if kinds[wanted]:
            return
        where = f"[models.{self.name}] estimator ({_reference(self.estimator)})"
        if kinds[other]:
            other_task = "regression" if other == "regressor" else "classification"
            raise ConfigError(
                f"{where} is a {type(built).__name__}, a {other}, but the task is {self.task}; "
                f'return a {wanted}, or set task = "{other_task}" there'
            )
        raise ConfigError(
            f"{where} is a {type(built).__name__}, which scikit-learn does not take for a "
            f"{wanted} (sklearn.base.is_{wanted}); return a {wanted} for the {self.task} task "
            f"(your own class: inherit sklearn.base.{wanted.capitalize()}Mixin)"
        )

    def dataset(self, env: str) -> tuple[pandas.DataFrame, pandas.Series]:
        return _call_loader(
            self.load_data, env, f"model {self.name!r} data loader", self.source_dir
        )

    def evaluation_dataset(self, env: str) -> tuple[pandas.DataFrame, pandas.Series, str]:
        """Features, target and where they came from: the declared evaluation data, or else
        the same seeded test split that training held out."""
        loader = self.load_evaluation_data
        if loader is not None:
            features, target = _call_loader(
                loader, env, f"model {self.name!r} evaluation data", self.source_dir
            )
            return features, target, _reference(loader)
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
        with _user_code(spec.search_space or "", root, "fix the search space function"):
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
    module = _import_from(module_name, root, reference)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"entry point {reference!r}: {module.__file__} has no {attribute!r}"
        ) from None


def _import_from(module_name: str, root: Path, reference: str) -> Any:
    """Import `module_name` from the project at `root`, even if another project's module of the
    same name was imported before (a long-lived process, or tests with several projects)."""
    folder = str(root.resolve())
    put_first_on_path([folder])  # the training cluster's code paths do the same in its workers
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is not None and not str(getattr(loaded, "__file__", "") or "").startswith(folder):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
    with _user_code(f"importing {module_name} for {reference}", root, "fix the module"):
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
    loader: Callable[..., Any], env: str, what: str, root: Path | None
) -> tuple[pandas.DataFrame, pandas.Series]:
    wants_env = "env" in inspect.signature(loader).parameters
    base = env.split(BRANCH_SEPARATOR, 1)[0]  # a branch env loads what the env it derives from does
    with _user_code(_reference(loader), root, "fix the loader or the data it reads"):
        loaded = loader(env=base) if wants_env else loader()
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


@contextmanager
def _user_code(entry_point: str, root: Path | None, fix: str) -> Iterator[None]:
    """Run the user's code: what it raises, and a `sys.exit` in it, become one ConfigError line
    naming `entry_point` and the line of their code that raised, instead of mlinfra's bug report
    (or of ending mlinfra with their exit code)."""
    try:
        yield
    except MlinfraError:
        raise
    except (Exception, SystemExit) as exc:
        where = _user_frame(exc, root)
        at = f" at {where}" if where else ""
        if isinstance(exc, SystemExit):
            raise ConfigError(
                f"{entry_point} called sys.exit({exc.code!r}){at}; an entry point must return "
                "its result or raise an exception, not exit"
            ) from exc
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"{entry_point} raised {type(exc).__name__}{at}{': ' if detail else ''}{detail}; {fix}"
        ) from exc


def _user_frame(exc: BaseException, root: Path | None) -> str | None:
    """`file:line` of the innermost frame in the user's own code: not in the standard library,
    an installed package or mlinfra (the file is relative to the project root when inside it)."""
    frames: list[tuple[str, int | None]]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames = [(exc.filename, exc.lineno)]
    else:
        frames = [
            (frame.filename, frame.lineno) for frame in traceback.extract_tb(exc.__traceback__)
        ]
    installed = sysconfig.get_paths()
    libraries = {Path(installed[key]).resolve() for key in _LIBRARY_PATHS}
    libraries.add(Path(__file__).resolve().parents[1])
    for filename, line in reversed(frames):
        if filename.startswith("<"):  # frozen importlib, exec'd strings
            continue
        path = Path(filename).resolve()
        if any(path.is_relative_to(folder) for folder in libraries):
            continue
        if root is not None and path.is_relative_to(root.resolve()):
            path = path.relative_to(root.resolve())
        return f"{path}:{line}"
    return None


def _reference(entry_point: Any) -> str:
    """`module:name` of a function or class, as mlinfra.toml names it; else its type's name."""
    module = getattr(entry_point, "__module__", None)
    name = getattr(entry_point, "__qualname__", None)
    return f"{module}:{name}" if module and name else type(entry_point).__name__
