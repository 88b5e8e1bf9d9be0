"""ModelRegistry: where model versions, their artifacts and the per-env aliases are kept."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from ..config import Environment
from ..providers.local import RegistryStore, RegistryStoreArgs
from ._target import Target, require_local

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

    @classmethod
    def from_environment(cls, env: Environment) -> ModelRegistryArgs:
        own = env.env_dir in env.registry_path.parents
        return cls(
            path=str(env.registry_path), shared=not own, env=env.name, target=env.settings.target
        )


class ModelRegistry(pulumi.ComponentResource):
    """On `local`, a SQLite database and a content-addressed artifact directory.

    Models are data: while it holds versions, `up` will not delete or replace it and `destroy`
    keeps it, unless `--delete-data`; a new `path` moves its versions there.
    """

    path: pulumi.Output[str]
    uri: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_local(args.target, "ModelRegistry")
        super().__init__("mlinfra:index:ModelRegistry", name, None, opts)
        store = RegistryStore(
            f"{name}-store",
            RegistryStoreArgs(path=args.path, env=args.env),
            pulumi.ResourceOptions(parent=self, retain_on_delete=args.shared or None),
        )
        self.path = store.path
        self.uri = store.uri
        self.register_outputs({"path": self.path, "uri": self.uri})
