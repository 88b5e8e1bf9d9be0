"""Project and environment configuration: `load_project()` is the entry point."""

from ._kubernetes import KubernetesSettings
from ._models import (
    EnvSettings,
    ModelSpec,
    MonitoringSettings,
    PreviewSettings,
    ProjectConfig,
    ProjectSettings,
    PulumiSettings,
    RegistrySettings,
    ServingSettings,
    TrainingSettings,
)
from ._project import (
    CONFIG_FILE,
    STATE_DIR_ENV,
    Branch,
    Environment,
    Project,
    current_environment,
    find_project_file,
    load_project,
    using_environment,
)

__all__ = [
    "CONFIG_FILE",
    "STATE_DIR_ENV",
    "Branch",
    "EnvSettings",
    "Environment",
    "KubernetesSettings",
    "ModelSpec",
    "MonitoringSettings",
    "PreviewSettings",
    "Project",
    "ProjectConfig",
    "ProjectSettings",
    "PulumiSettings",
    "RegistrySettings",
    "ServingSettings",
    "TrainingSettings",
    "current_environment",
    "find_project_file",
    "load_project",
    "using_environment",
]
