"""TrainingCluster: where training runs live, and the Dask cluster a search's fits run on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi

from ..config import Environment
from ..errors import ConfigError
from ..providers.local import (
    DaskCluster,
    DaskClusterArgs,
    TrainingWorkspace,
    TrainingWorkspaceArgs,
)
from ..providers.local._workspace import resolve_workers
from ._target import Target, kubernetes_target, require_target

if TYPE_CHECKING:
    from ..kubernetes import KubernetesTarget

__all__ = ["TrainingCluster", "TrainingClusterArgs"]


@dataclass(frozen=True, kw_only=True)
class TrainingClusterArgs:
    workspace: pulumi.Input[str]
    """Directory for runs/ and cache/; absolute."""
    workers: int = 1
    """Dask worker processes of a local cluster; 1: no cluster, fits run in `mlinfra train`;
    0: one per core."""
    scheduler: str | None = None
    """tcp://host:port of an existing Dask cluster to use instead; nothing starts locally."""
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)
    """Directories of the project's own modules, put first on each worker's import path;
    absolute. `from_environment` gives the project root."""
    host: str = "127.0.0.1"
    """What the local cluster listens on."""
    target: Target = "local"
    kubernetes: KubernetesTarget | None = None
    """The env's namespace and settings, on the kubernetes target."""

    @classmethod
    def from_environment(cls, env: Environment) -> TrainingClusterArgs:
        training = env.settings.training
        return cls(
            workspace=str(env.env_dir / "training"),
            workers=training.workers,
            scheduler=training.scheduler,
            code_paths=[str(env.project.root.resolve())],
            target=env.settings.target,
            kubernetes=kubernetes_target(env),
        )


class TrainingCluster(pulumi.ComponentResource):
    """On `local`, a workspace directory, and a Dask scheduler with `workers` worker processes
    on this machine when there are two or more (`scheduler` and `dashboard` are None without);
    on `kubernetes`, a Dask cluster in the env's namespace (mlinfra.kubernetes.DaskCluster)."""

    workspace: pulumi.Output[str]
    workers: pulumi.Output[int]
    code_paths: pulumi.Output[list[str]]
    scheduler: pulumi.Output[str] | None
    dashboard: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: TrainingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_target(args.target, args.kubernetes, "TrainingCluster")
        super().__init__("mlinfra:index:TrainingCluster", name, None, opts)
        if args.kubernetes is not None:
            self._on_kubernetes(name, args, args.kubernetes)
            return
        workers = resolve_workers(args.workers)
        workspace = TrainingWorkspace(
            f"{name}-workspace",
            TrainingWorkspaceArgs(path=args.workspace, workers=workers, code_paths=args.code_paths),
            pulumi.ResourceOptions(parent=self),
        )
        self.workspace = workspace.path
        self.workers = workspace.workers
        self.code_paths = workspace.code_paths
        self.scheduler = self.dashboard = None
        if args.scheduler is not None:
            self.scheduler = pulumi.Output.from_input(args.scheduler)
        elif workers > 1:
            cluster = DaskCluster(
                f"{name}-dask",
                DaskClusterArgs(
                    run_dir=workspace.path.apply(lambda path: f"{path}/cluster"),
                    workers=workers,
                    host=args.host,
                    code_paths=args.code_paths,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            self.scheduler, self.dashboard = cluster.scheduler, cluster.dashboard
        self.register_outputs(
            {
                "workspace": self.workspace,
                "workers": self.workers,
                "code_paths": self.code_paths,
                "scheduler": self.scheduler,
                "dashboard": self.dashboard,
            }
        )

    def _on_kubernetes(
        self, name: str, args: TrainingClusterArgs, target: KubernetesTarget
    ) -> None:
        from ..kubernetes import DaskCluster, image_ref

        if args.scheduler is not None:
            raise ConfigError(
                "TrainingCluster: on kubernetes the env's own Dask cluster is declared; "
                "drop training.scheduler there (set it on the env that trains on this one)"
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
