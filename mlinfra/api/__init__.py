"""The public Python API over a project's environments, shared by the CLI and the TUI.

    import mlinfra
    project = mlinfra.open_project(".")
    env = project.env("dev")
    env.outputs().serving_url, env.deployment(), env.alerts()
    env.rollback(reason="p99 doubled")

See docs/python-api.md.
"""

from ._outputs import REQUIRED_EXPORTS, StackOutputs
from ._project import (
    Env,
    EnvNotUpError,
    LastRefresh,
    Project,
    Resource,
    StackStatus,
    VersionComparison,
    open_project,
)
from ._traffic import VariantTraffic, traffic_between

__all__ = [
    "REQUIRED_EXPORTS",
    "Env",
    "EnvNotUpError",
    "LastRefresh",
    "Project",
    "Resource",
    "StackOutputs",
    "StackStatus",
    "VariantTraffic",
    "VersionComparison",
    "open_project",
    "traffic_between",
]
