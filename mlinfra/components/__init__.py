"""The deployable parts of an environment, as Pulumi ComponentResources.

Each takes a dataclass of args, built by hand or with `*Args.from_environment(env)`; for the
`local` target its children are the dynamic resources of `mlinfra.providers.local`.
"""

from ._monitoring import DriftMonitor, DriftMonitorArgs, MonitoringArgs
from ._registry import ModelRegistry, ModelRegistryArgs
from ._serving import ServingStack, ServingStackArgs
from ._target import Target
from ._training import TrainingCluster, TrainingClusterArgs

__all__ = [
    "DriftMonitor",
    "DriftMonitorArgs",
    "ModelRegistry",
    "ModelRegistryArgs",
    "MonitoringArgs",
    "ServingStack",
    "ServingStackArgs",
    "Target",
    "TrainingCluster",
    "TrainingClusterArgs",
]
