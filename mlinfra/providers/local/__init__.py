"""Providers of the `local` target: pulumi dynamic resources for one machine.

Each resource is a `pulumi.dynamic.Resource` with a dataclass of typed args; its provider is
stateless and lives in an importable module, so the same code runs under the embedded engine and
under the pulumi CLI. Creates are idempotent: a create killed half-way is finished or cleaned up
by the next one, never duplicated.
"""

from ._dask import DaskCluster, DaskClusterArgs, DaskClusterProvider
from ._monitor import DriftMonitorArgs, DriftMonitorProcess, DriftMonitorProvider
from ._registry import RegistryStore, RegistryStoreArgs, RegistryStoreProvider
from ._server import ModelServer, ModelServerArgs, ModelServerProvider, server_url
from ._token import GeneratedToken, GeneratedTokenArgs, GeneratedTokenProvider
from ._workspace import TrainingWorkspace, TrainingWorkspaceArgs, TrainingWorkspaceProvider

__all__ = [
    "DaskCluster",
    "DaskClusterArgs",
    "DaskClusterProvider",
    "DriftMonitorArgs",
    "DriftMonitorProcess",
    "DriftMonitorProvider",
    "GeneratedToken",
    "GeneratedTokenArgs",
    "GeneratedTokenProvider",
    "ModelServer",
    "ModelServerArgs",
    "ModelServerProvider",
    "RegistryStore",
    "RegistryStoreArgs",
    "RegistryStoreProvider",
    "TrainingWorkspace",
    "TrainingWorkspaceArgs",
    "TrainingWorkspaceProvider",
    "server_url",
]
