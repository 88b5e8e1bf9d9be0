"""Which infrastructure a component is built on; only `local` exists in this release."""

from __future__ import annotations

from typing import Literal

from ..errors import ConfigError

__all__ = ["Target", "require_local"]

Target = Literal["local", "kubernetes"]


def require_local(target: str, component: str) -> None:
    """Fail before anything is registered, with what to do instead."""
    if target == "kubernetes":
        raise ConfigError(
            f"{component}: the kubernetes target arrives with a later release; "
            'use target = "local" in the env for now'
        )
    if target != "local":
        raise ConfigError(f'{component}: unknown target {target!r}; use target = "local"')
