"""ModelRegistry: where model versions, their artifacts and the per-env aliases are kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from ..config import Environment
from ..providers.local import RegistryStore, RegistryStoreArgs
from ._target import Target, kubernetes_target, require_target

if TYPE_CHECKING:
    from ..kubernetes import KubernetesTarget

__all__ = ["ModelRegistry", "ModelRegistryArgs"]


@dataclass(frozen=True, kw_only=True)
class ModelRegistryArgs:
    path: pulumi.Input[str]
    """Directory of the registry (registry.db and artifacts/); absolute."""
    shared: bool = False
    """Other environments use it too: `destroy` then leaves it in place (retain_on_delete)."""
    env: str | None = None
    """Whose aliases and deployment table move with it when `path` changes; None: every env's."""
    target: Target = "local"
    kubernetes: KubernetesTarget | None = None
    """The env's namespace and settings, on the kubernetes target."""

    @classmethod
    def from_environment(cls, env: Environment) -> ModelRegistryArgs:
        own = env.env_dir in env.registry_path.parents
        return cls(
            path=str(env.registry_path),
            shared=not own,
            env=env.name,
            target=env.settings.target,
            kubernetes=kubernetes_target(env),
        )


class ModelRegistry(pulumi.ComponentResource):
    """On `local`, a SQLite database and a content-addressed artifact directory.

    Models are data: while it holds versions, `up` will not delete or replace it and `destroy`
    keeps it, unless `--delete-data`; a new `path` moves its versions there. On `kubernetes`,
    a volume (or an S3 bucket) and the container registry the serving image is pushed to.
    """

    path: pulumi.Output[str]
    uri: pulumi.Output[str]
    image_registry: pulumi.Output[str] | None = None
    """Where serving images are pushed, on kubernetes; None on local."""

    def __init__(
        self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_target(args.target, args.kubernetes, "ModelRegistry")
        super().__init__("mlinfra:index:ModelRegistry", name, None, opts)
        if args.kubernetes is not None:
            self._on_kubernetes(name, args.kubernetes)
            return
        store = RegistryStore(
            f"{name}-store",
            RegistryStoreArgs(path=args.path, env=args.env),
            pulumi.ResourceOptions(parent=self, retain_on_delete=args.shared or None),
        )
        self.path = store.path
        self.uri = store.uri
        self.register_outputs({"path": self.path, "uri": self.uri})

    def _on_kubernetes(self, name: str, target: KubernetesTarget) -> None:
        from ..kubernetes import ContainerRegistry, ModelStorage

        child = pulumi.ResourceOptions(parent=self)
        storage = ModelStorage(f"{name}-storage", target, child)
        images = ContainerRegistry(f"{name}-images", target, child)
        self.path = storage.path
        self.uri = storage.uri
        self.image_registry = images.address
        self.register_outputs(
            {"path": self.path, "uri": self.uri, "image_registry": self.image_registry}
        )
