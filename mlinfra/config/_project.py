"""Finding and loading a project's mlinfra.toml, and resolving one of its environments."""

from __future__ import annotations

import contextvars
import os
import shlex
import tomllib
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ..errors import ConfigError
from ._models import BRANCH_SEPARATOR, EnvSettings, ProjectConfig

__all__ = [
    "CONFIG_FILE",
    "STATE_DIR_ENV",
    "Branch",
    "Environment",
    "Project",
    "current_environment",
    "find_project_file",
    "load_project",
    "using_environment",
]

CONFIG_FILE = "mlinfra.toml"
STATE_DIR_ENV = "MLINFRA_STATE_DIR"
"""Overrides `project.state_dir`: state that outlives a CI runner's checkout."""
_current: contextvars.ContextVar[Environment | None] = contextvars.ContextVar(
    "mlinfra_environment", default=None
)


@dataclass(frozen=True)
class Branch:
    """What a branch env derives from: a branch, and the env of mlinfra.toml it copies."""

    name: str
    base: str


@dataclass(frozen=True)
class Environment:
    """One environment of a project, with every path it owns worked out.

    A branch env (`mlinfra.preview`) has a name of its own, `dev--feature-x-217d2bf5`, and the
    settings of its base env but for its serving port and registry, which are its own."""

    project: Project
    name: str
    settings: EnvSettings
    branch: Branch | None = None

    @property
    def base(self) -> str:
        """The env of mlinfra.toml whose settings this one has: its own name, or a branch
        env's base."""
        return self.branch.base if self.branch is not None else self.name

    @property
    def stack_name(self) -> str:
        """The identity of this environment's stack (a branch env's carries its branch)."""
        return self.name

    @property
    def cli_args(self) -> str:
        """How commands name this env, for messages that say what to run next: `--env dev`,
        or `--env dev --branch feature/x` (which works before the branch env's first up)."""
        if self.branch is None:
            return f"--env {self.name}"
        return f"--env {self.branch.base} --branch {shlex.quote(self.branch.name)}"

    @property
    def state_dir(self) -> Path:
        return self.project.state_dir

    @property
    def env_dir(self) -> Path:
        """Everything the local target creates for this environment lives under here."""
        return self.project.state_dir / "envs" / self.stack_name

    @property
    def registry_path(self) -> Path:
        path = self.settings.registry.path
        return self.project.resolve(path) if path else self.env_dir / "registry"


@dataclass(frozen=True)
class Project:
    root: Path
    config: ProjectConfig

    @property
    def name(self) -> str:
        return self.config.project.name

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def state_dir(self) -> Path:
        """`$MLINFRA_STATE_DIR`, else `project.state_dir`; relative to the project's folder."""
        return self.resolve(os.environ.get(STATE_DIR_ENV) or self.config.project.state_dir)

    @property
    def stack_dir(self) -> Path:
        return self.resolve(self.config.project.stack)

    def resolve(self, path: str) -> Path:
        return (self.root / path).resolve()

    @property
    def env_names(self) -> list[str]:
        return list(self.config.env)

    def environment(self, name: str, *, branch: str | None = None) -> Environment:
        """Env `name` of mlinfra.toml; with `branch`, that branch's env derived from it (see
        mlinfra.preview); a branch env is also found by its own name."""
        if branch is not None or BRANCH_SEPARATOR in name:
            from ..preview import branch_environment

            return branch_environment(self, name, branch)
        settings = self.config.env.get(name)
        if settings is None:
            known = ", ".join(self.env_names)
            raise ConfigError(f"unknown env {name!r}; {self.config_file} defines: {known}")
        return Environment(project=self, name=name, settings=settings)


def find_project_file(start: Path | None = None) -> Path:
    """Look for mlinfra.toml in `start` and its parents, as git looks for .git."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any parent; run `mlinfra init DIR` to create a project"
    )


def load_project(start: Path | None = None) -> Project:
    """Load and validate the project that holds `start` (default: the current directory)."""
    path = find_project_file(start)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    try:
        config = ProjectConfig.model_validate(raw)
    except PydanticValidationError as exc:
        raise ConfigError(f"{path}: {_first_problem(exc)}") from exc
    return Project(root=path.parent, config=config)


def _first_problem(exc: PydanticValidationError) -> str:
    """One line naming the key, the problem and what was given."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        known = ", ".join(_keys_beside(error["loc"]))
        return f"unknown key {key!r}; the keys there are: {known} (see docs/configuration.md)"
    if kind == "missing":
        return f"missing required key {key!r}"
    message = error["msg"].removeprefix("Value error, ")
    if not key:  # a check over several keys names them itself
        return message
    given = error.get("input")
    if isinstance(given, str | int | float | bool) and kind != "value_error":
        return f"{key}: {message} (got {given!r})"
    return f"{key}: {message}"


def _keys_beside(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema allows where `loc` (an unknown key) was found."""
    node: Any = ProjectConfig
    for part in loc[:-1]:
        if _is_model(node) and part in node.model_fields:
            node = node.model_fields[part].annotation
        elif typing.get_origin(node) is dict:  # a name chosen by the user: [env.NAME]
            node = typing.get_args(node)[1]
        else:
            return []
    return list(node.model_fields) if _is_model(node) else []


def _is_model(node: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(node, type) and issubclass(node, BaseModel)


@contextmanager
def using_environment(env: Environment) -> Iterator[Environment]:
    """Make `env` the one stack programs see through current_environment()."""
    token = _current.set(env)
    try:
        yield env
    finally:
        _current.reset(token)


def current_environment() -> Environment:
    """The environment a stack program is running for.

    Set by mlinfra's engines; when the pulumi CLI runs the program directly, the stack name
    is the environment and the project is found from the working directory.
    """
    env = _current.get()
    if env is not None:
        return env
    import pulumi

    project = load_project(Path(os.environ.get("MLINFRA_PROJECT_DIR", Path.cwd())))
    return project.environment(pulumi.get_stack())  # a branch env's stack is its name
