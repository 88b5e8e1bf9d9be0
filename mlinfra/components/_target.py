"""Which infrastructure a component is built on: `local` processes, or `kubernetes` objects
(mlinfra.kubernetes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Environment
    from ..kubernetes import KubernetesTarget

__all__ = ["Target", "kubernetes_target", "require_target"]

Target = Literal["local", "kubernetes"]


def require_target(target: str, kubernetes: KubernetesTarget | None, component: str) -> None:
    """Fail before anything is registered, with what to do instead.

    mlinfra.toml already refuses other targets; this guards args built by hand in a stack program.
    """
    if target not in ("local", "kubernetes"):
        raise ConfigError(
            f'{component}: unknown target {target!r}; use target = "local" or "kubernetes"'
        )
    if target == "kubernetes" and kubernetes is None:
        raise ConfigError(
            f"{component}: target kubernetes needs kubernetes=KubernetesTarget(...) in its "
            "args; from_environment(env) gives it"
        )


def kubernetes_target(env: Environment) -> KubernetesTarget | None:
    """The env's Kubernetes names and settings; None on the local target."""
    if env.settings.target != "kubernetes":
        return None
    from ..kubernetes import KubernetesTarget

    return KubernetesTarget.from_environment(env)
