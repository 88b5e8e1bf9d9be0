"""Promotion between environments (dev -> staging -> prod): the version is copied into the target
env's registry, both sides record where it went and came from, and it is cleared against the
target env's own data, gates and champion before anything there may serve it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._identity import current_user
from ..errors import ConfigError
from ..registry import ModelVersion, Registry, copy_version, same_registry
from ..registry._types import utc_now
from ._evaluate import DeclaredModel
from ._release import Clearance, ReleaseRefusedError, check_release

__all__ = ["PROMOTION_KIND", "Promotion", "promote_version"]

PROMOTION_KIND = "promotion"


@dataclass(frozen=True)
class Promotion:
    """Where a promoted version landed, and on what grounds it may serve there."""

    source_env: str
    source: ModelVersion
    env: str
    version: ModelVersion
    copied: bool  # False when the envs share a registry, or the copy was made before
    shared_registry: bool  # then `version` is `source` itself
    clearance: Clearance

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.version.model,
            "from": {"env": self.source_env, "version": self.source.version},
            "to": {"env": self.env, "version": self.version.version, "copied": self.copied},
            "shared_registry": self.shared_registry,
            "clearance": self.clearance.model_dump(mode="json"),
        }


def promote_version(
    model: DeclaredModel,
    source: Registry,
    target: Registry,
    ref: str,
    *,
    source_env: str,
    target_env: str,
    command: str,
    override: str | None = None,
    actor: str | None = None,
) -> Promotion:
    """Copy version `ref` of `source_env` into `target_env` and clear it there.

    Failed gates raise ReleaseRefusedError (exit 7) unless `override` says why to go on; the
    copy stays registered either way, with its report, for anyone to inspect.
    """
    if source_env == target_env:
        raise ConfigError(f"--from and --to are both {source_env!r}; promote between two envs")
    version = source.resolve(model.name, ref, env=source_env)
    by = actor or current_user()
    transfer = copy_version(
        source, target, version, source_env=source_env, target_env=target_env, actor=by
    )
    landed = transfer.version
    audit = {"copied": transfer.copied, "by": by, "at": utc_now(), "command": command}
    _record(source, version, "to", target_env, target, landed, env=source_env, audit=audit)
    _record(target, landed, "from", source_env, source, version, env=target_env, audit=audit)
    try:
        clearance = check_release(
            model, target, landed, env=target_env, command=command, override=override, actor=by
        )
    except ReleaseRefusedError as refused:
        raise ReleaseRefusedError(
            f"{refused}; the copy of {source_env} v{version.version} stays registered in env "
            f"{target_env!r} as v{landed.version}, with its failed report",
            clearance=refused.clearance,
        ) from None
    return Promotion(
        source_env=source_env,
        source=version,
        env=target_env,
        version=landed,
        copied=transfer.copied,
        shared_registry=same_registry(source, target),
        clearance=clearance,
    )


def _record(
    registry: Registry,
    version: ModelVersion,
    direction: Literal["to", "from"],
    other_env: str,
    other_registry: Registry,
    other: ModelVersion,
    *,
    env: str,
    audit: dict[str, Any],
) -> None:
    """One side of the promotion in that side's audit trail, as a report on the version."""
    body = {
        "direction": direction,
        "env": other_env,
        "version": other.version,
        "registry": str(Path(other_registry.root).resolve()),
        **audit,
    }
    markdown = (
        f"# {version.model} v{version.version} in {env}: promoted {direction} "
        f"{other_env} v{other.version}\n\nBy {audit['by']} at {audit['at']}, "
        f"registry {body['registry']}; command `{audit['command']}`\n"
    )
    registry.add_report(
        version,
        env=env,
        kind=PROMOTION_KIND,
        passed=True,
        body=body,
        markdown=markdown,
        created_by=audit["by"],
    )
