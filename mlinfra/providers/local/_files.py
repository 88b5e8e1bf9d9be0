"""Directory resources: a root with a known layout, made whole on create and update, read for
missing parts, and taken apart on delete without touching files mlinfra did not make."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from ..._fs import partial_files
from ._base import AbsolutePath, LocalProvider, ProviderInputs, gone

__all__ = ["DirectoryInputs", "DirectoryProvider", "remove", "root_of"]


class DirectoryInputs(ProviderInputs):
    path: AbsolutePath


InputsT = TypeVar("InputsT", bound=DirectoryInputs)


class DirectoryProvider(LocalProvider[InputsT]):
    """Create, update and read all mean "make the layout whole, then report it", so a create
    killed half-way is finished by the next one instead of duplicated."""

    replace_on = frozenset({"path"})
    parts: ClassVar[tuple[str, ...]]
    """Entries of the layout: read reports the missing ones, delete removes them."""
    leftovers: ClassVar[tuple[str, ...]] = ()
    """Files made along the way (database sidecars) that delete also removes."""

    def build(self, root: Path, inputs: InputsT) -> None:
        """Make the layout under an existing root; must be idempotent."""
        raise NotImplementedError

    def describe(self, root: Path, inputs: InputsT) -> dict[str, Any]:
        """Outputs found on disk, overriding the echoed inputs."""
        return {}

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = self.parse(props)
        return CreateResult(id_=inputs.path, outs=self._ensure(inputs))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._ensure(self.parse(news)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        root = root_of(id_, props)
        if not root.is_dir():
            return gone()
        return ReadResult(id_=id_, outs=self._outputs(root, self.parse(props)))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self.refuse_data_loss(id_, props)
        root = root_of(id_, props)
        self._drop_partials(root)
        for name in (*self.parts, *self.leftovers):
            remove(root / name)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()

    def drifted(self, outs: dict[str, Any]) -> bool:
        return bool(outs.get("missing"))

    def _ensure(self, inputs: InputsT) -> dict[str, Any]:
        root = Path(inputs.path)
        root.mkdir(parents=True, exist_ok=True)
        self._drop_partials(root)
        self.build(root, inputs)
        return self._outputs(root, inputs)

    def _drop_partials(self, root: Path) -> None:
        """What a write killed half-way left; only this provider writes its parts (under the
        stack's lock), so no write is in flight."""
        for name in self.parts:
            for partial in partial_files(root / name):
                partial.unlink(missing_ok=True)

    def _outputs(self, root: Path, inputs: InputsT) -> dict[str, Any]:
        missing = [name for name in self.parts if not (root / name).exists()]
        return {**inputs.model_dump(), **self.describe(root, inputs), "missing": missing}


def root_of(id_: str, props: dict[str, Any]) -> Path:
    """Where the directory is now: its `path` output. The id is where it was created, which
    an update that moves the directory cannot change (ids are fixed in Pulumi)."""
    path = props.get("path")
    return Path(path if isinstance(path, str) and path else id_)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
