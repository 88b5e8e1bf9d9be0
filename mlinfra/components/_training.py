"""TrainingCluster: where training runs live and how many workers train in parallel."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from ..config import Environment
from ..providers.local import TrainingWorkspace, TrainingWorkspaceArgs
from ._target import Target, require_local

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

    @classmethod
    def from_environment(cls, env: Environment) -> TrainingClusterArgs:
        return cls(
            workspace=str(env.env_dir / "training"),
            workers=env.settings.training.workers,
            code_paths=[str(env.project.root.resolve())],
            target=env.settings.target,
        )


class TrainingCluster(pulumi.ComponentResource):
    """On `local`, a workspace directory and a process pool on this machine."""

    workspace: pulumi.Output[str]
    workers: pulumi.Output[int]
    code_paths: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: TrainingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_local(args.target, "TrainingCluster")
        super().__init__("mlinfra:index:TrainingCluster", name, None, opts)
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
