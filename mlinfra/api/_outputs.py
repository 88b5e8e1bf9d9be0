"""The stack outputs mlinfra reads: a typed contract between a stack program and the tool.

A user's stack program may export more, or name things its own way for its own readers. Each
export mlinfra needs is checked where it is read, so that a program that forgets one gets an
error naming the export when a command needs it (`deploy` needs the server's URL, `models list`
only the registry), not a KeyError later, and a stack that declares only a registry still
serves the commands that need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["REQUIRED_EXPORTS", "StackOutputs"]

# export name -> what it is, for the error that names a missing one
REQUIRED_EXPORTS = {
    "registry_path": "the model registry's directory (`registry.path`)",
    "serving_url": "the model server's URL (`serving.url`)",
    "training_workspace": "the training cluster's workspace (`training.workspace`)",
    "training_workers": "the training cluster's worker count (`training.workers`)",
}
OPTIONAL_EXPORTS = (
    "serving_token",
    "monitoring_dir",
    "training_code_paths",
    "training_scheduler",
    "training_dashboard",
)


@dataclass(frozen=True)
class StackOutputs:
    """An env's (plain) stack outputs: the ones mlinfra needs typed, the rest in `extra`.

    Reading a required export the program did not make raises ConfigError naming it."""

    env: str
    program: Path
    """The stack program, named in the error about a missing export."""
    exported: dict[str, Any] = field(repr=False)

    def _required(self, name: str) -> Any:
        value = self.exported.get(name)
        if value in (None, ""):
            raise ConfigError(
                f"env {self.env}'s stack does not export {name!r}, {REQUIRED_EXPORTS[name]}; add "
                f"`pulumi.export({name!r}, ...)` to {self.program} and run "
                f"`mlinfra up --env {self.env}`"
            )
        return value

    @property
    def registry_path(self) -> Path:
        return Path(self._required("registry_path"))

    @property
    def serving_url(self) -> str:
        return str(self._required("serving_url"))

    @property
    def training_workspace(self) -> Path:
        return Path(self._required("training_workspace"))

    @property
    def training_workers(self) -> int:
        value = self._required("training_workers")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"env {self.env}'s stack exports training_workers = {value!r}; "
                f"it must be a whole number"
            ) from None

    @property
    def serving_token(self) -> str | None:
        """The bearer token of the server's writes; None when the env needs none (dev)."""
        token = self.exported.get("serving_token")
        return str(token) if token else None

    @property
    def monitoring_dir(self) -> Path | None:
        """Where the drift monitor keeps its log, alerts and report; None when monitoring is off."""
        monitoring = self.exported.get("monitoring_dir")
        return Path(monitoring) if monitoring else None

    @property
    def training_code_paths(self) -> list[str] | None:
        """What the training workers import the project's code from; None: the project root."""
        paths = self.exported.get("training_code_paths")
        return list(paths) if paths else None

    @property
    def training_scheduler(self) -> str | None:
        """The Dask scheduler a search's folds run on; None: they run in `mlinfra train`."""
        scheduler = self.exported.get("training_scheduler")
        return str(scheduler) if scheduler else None

    @property
    def training_dashboard(self) -> str | None:
        """The Dask dashboard of the env's own training cluster, when it has one."""
        dashboard = self.exported.get("training_dashboard")
        return str(dashboard) if dashboard else None

    @property
    def extra(self) -> dict[str, Any]:
        """What else the program exports, for its own readers."""
        known = {*REQUIRED_EXPORTS, *OPTIONAL_EXPORTS}
        return {key: value for key, value in self.exported.items() if key not in known}

    @property
    def masked_token(self) -> str | None:
        """The token as shown to people: its first four characters."""
        return None if self.serving_token is None else f"{self.serving_token[:4]}…"
