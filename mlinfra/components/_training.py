"""TrainingCluster: where training runs live and how many workers train in parallel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi

from ..config import Environment
from ..errors import ConfigError
from ..providers.local import TrainingWorkspace, TrainingWorkspaceArgs
from ._target import Target, kubernetes_target, require_target

if TYPE_CHECKING:
    from ..kubernetes import KubernetesTarget

__all__ = ["TrainingCluster", "TrainingClusterArgs"]


@dataclass(frozen=True, kw_only=True)
class TrainingClusterArgs:
    workspace: pulumi.Input[str]
    """Directory for runs/ and cache/; absolute."""
    workers: pulumi.Input[int] = 0
    """Size of the worker pool; 0 means one per core."""
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)
    """Directories of the project's own modules, put first on each worker's import path;
    absolute. `from_environment` gives the project root."""
    target: Target = "local"
    kubernetes: KubernetesTarget | None = None
    """The env's namespace and settings, on the kubernetes target."""

    @classmethod
    def from_environment(cls, env: Environment) -> TrainingClusterArgs:
        return cls(
            workspace=str(env.env_dir / "training"),
            workers=env.settings.training.workers,
            code_paths=[str(env.project.root.resolve())],
            target=env.settings.target,
            kubernetes=kubernetes_target(env),
        )


class TrainingCluster(pulumi.ComponentResource):
    """On `local`, a workspace directory and a process pool on this machine; on
    `kubernetes`, a Dask cluster (mlinfra.kubernetes.DaskCluster)."""

    workspace: pulumi.Output[str]
    workers: pulumi.Output[int]
    code_paths: pulumi.Output[list[str]]
    scheduler: pulumi.Output[str] | None = None
    """The Dask scheduler's address on kubernetes; None on local."""
    dashboard: pulumi.Output[str] | None = None

    def __init__(
        self, name: str, args: TrainingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_target(args.target, args.kubernetes, "TrainingCluster")
        super().__init__("mlinfra:index:TrainingCluster", name, None, opts)
        if args.kubernetes is not None:
            self._on_kubernetes(name, args, args.kubernetes)
            return
        workspace = TrainingWorkspace(
            f"{name}-workspace",
            TrainingWorkspaceArgs(
                path=args.workspace, workers=args.workers, code_paths=args.code_paths
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.workspace = workspace.path
        self.workers = workspace.workers
        self.code_paths = workspace.code_paths
        self.register_outputs(
            {"workspace": self.workspace, "workers": self.workers, "code_paths": self.code_paths}
        )

    def _on_kubernetes(
        self, name: str, args: TrainingClusterArgs, target: KubernetesTarget
    ) -> None:
        from ..kubernetes import DaskCluster, image_ref

        if not isinstance(args.workers, int):
            raise ConfigError(
                "TrainingCluster: on kubernetes, workers is a number (the worker pods), "
                "known when the program runs"
            )
        cluster = DaskCluster(
            name,
            target,
            workers=args.workers,
            serving_image=image_ref(target),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.workspace = pulumi.Output.from_input("/tmp")  # each worker's scratch emptyDir
        self.workers = cluster.workers
        self.code_paths = pulumi.Output.from_input([])
        self.scheduler = cluster.scheduler
        self.dashboard = cluster.dashboard
        self.register_outputs(
            {"scheduler": self.scheduler, "dashboard": self.dashboard, "workers": self.workers}
        )
