"""Which infrastructure a component is built on; only `local` exists in this release."""

from __future__ import annotations

from typing import Literal

from ..config._models import KUBERNETES_LATER
from ..errors import ConfigError

__all__ = ["Target", "require_local"]

Target = Literal["local", "kubernetes"]


def require_local(target: str, component: str) -> None:
    """Fail before anything is registered, with what to do instead.

    mlinfra.toml already refuses other targets; this guards args built by hand in a stack program.
    """
    if target == "kubernetes":
        raise ConfigError(f"{component}: {KUBERNETES_LATER}")
    if target != "local":
        raise ConfigError(f'{component}: unknown target {target!r}; use target = "local"')
