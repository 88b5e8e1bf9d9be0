"""The stack outputs mlinfra reads: a typed contract between a stack program and the tool.

A user's stack program may export more, or name things its own way for its own readers; what
it must export for `train`, `deploy` and the rest is checked here once, so that a program that
forgets one gets an error naming the export, not a KeyError later.
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


@dataclass(frozen=True)
class StackOutputs:
    """An env's stack outputs, checked: the ones mlinfra needs typed, the rest in `extra`."""

    registry_path: Path
    serving_url: str
    training_workspace: Path
    training_workers: int
    serving_token: str | None = field(default=None, repr=False)
    """The bearer token of the server's writes; None when the env needs none (dev)."""
    monitoring_dir: Path | None = None
    """Where the drift monitor keeps its log, alerts and report; None when monitoring is off."""
    training_code_paths: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, env: str, outputs: dict[str, Any], program: Path) -> StackOutputs:
        """Check a stack's (plain) outputs; ConfigError names the first missing export."""
        for name, meaning in REQUIRED_EXPORTS.items():
            if outputs.get(name) in (None, ""):
                raise ConfigError(
                    f"env {env}'s stack does not export {name!r}, {meaning}; add "
                    f"`pulumi.export({name!r}, ...)` to {program} and run `mlinfra up --env {env}`"
                )
        known = {*REQUIRED_EXPORTS, "serving_token", "monitoring_dir", "training_code_paths"}
        token = outputs.get("serving_token")
        monitoring = outputs.get("monitoring_dir")
        try:
            workers = int(outputs["training_workers"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"env {env}'s stack exports training_workers = "
                f"{outputs['training_workers']!r}; it must be a whole number"
            ) from None
        return cls(
            registry_path=Path(outputs["registry_path"]),
            serving_url=str(outputs["serving_url"]),
            training_workspace=Path(outputs["training_workspace"]),
            training_workers=workers,
            serving_token=str(token) if token else None,
            monitoring_dir=Path(monitoring) if monitoring else None,
            training_code_paths=outputs.get("training_code_paths"),
            extra={key: value for key, value in outputs.items() if key not in known},
        )

    @property
    def masked_token(self) -> str | None:
        """The token as shown to people: its first four characters."""
        return None if self.serving_token is None else f"{self.serving_token[:4]}…"
