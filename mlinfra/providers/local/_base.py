"""What every local provider shares: typed inputs checked with pydantic, and a diff decided by
which inputs force a replacement."""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
)
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN
from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from ...engine._data import DataMove, HeldData, data_loss_allowed
from ...errors import ConfigError, ProtectedResourceError

__all__ = [
    "AbsolutePath",
    "LocalProvider",
    "LocalResource",
    "ProviderInputs",
    "gone",
    "is_unknown",
]


def _absolute(path: str) -> str:
    if not os.path.isabs(path):
        raise ValueError(f"must be an absolute path (got {path!r})")
    return path


AbsolutePath = Annotated[str, AfterValidator(_absolute)]


class ProviderInputs(BaseModel):
    """A provider's inputs; other keys (`__provider`, output placeholders) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


InputsT = TypeVar("InputsT", bound=ProviderInputs)


class LocalProvider(ResourceProvider, Generic[InputsT]):
    """Base of the local providers; subclasses hold no state, so dill pickles them by reference."""

    serialize_as_secret_always = False
    inputs_model: ClassVar[type[ProviderInputs]]
    replace_on: ClassVar[frozenset[str]] = frozenset()

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        try:
            self.inputs_model.model_validate(news)
        except PydanticValidationError as exc:
            failures = [
                CheckFailure(key, error["msg"])
                for error in exc.errors()
                if (key := ".".join(str(part) for part in error["loc"]))
                and not is_unknown(news.get(key))
            ]
            return CheckResult(news, failures)
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        before, after = self.comparable(olds), self.comparable(news)
        changed = sorted(key for key in after if before.get(key) != after[key])
        replaces = [key for key in changed if key in self.replace_on]
        return DiffResult(
            changes=bool(changed) or self.drifted(olds),
            replaces=replaces,
            delete_before_replace=bool(replaces) and self.deletes_first(olds, news),
        )

    def deletes_first(self, _olds: dict[str, Any], _news: dict[str, Any]) -> bool:
        """Whether a replacement must delete the old resource before creating the new one."""
        return False

    def comparable(self, props: dict[str, Any]) -> dict[str, Any]:
        """The values diff compares, from old outputs or new inputs alike."""
        return {key: props.get(key) for key in self.inputs_model.model_fields}

    def drifted(self, _outs: dict[str, Any]) -> bool:
        """Whether outputs read by refresh show damage an update would repair."""
        return False

    def data_at_risk(self, _id: str, _outputs: dict[str, Any]) -> HeldData | None:
        """What deleting the resource would lose, read live; the engine then protects it."""
        return None

    def data_move(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DataMove | None:
        """What an update would carry to a new place (and leave where it was)."""
        return None

    def refuse_data_loss(self, id_: str, props: dict[str, Any]) -> None:
        """Called first by `delete`: the protection holds wherever the provider runs, also
        where no engine asked `data_at_risk` before (the pulumi CLI's provider process)."""
        held = self.data_at_risk(id_, props)
        if held is not None and not data_loss_allowed():
            raise ProtectedResourceError(
                f"not deleted: it holds {held}; `mlinfra destroy --delete-data` (or "
                "`mlinfra up --delete-data`) deletes it and what it holds"
            )

    def parse(self, props: dict[str, Any]) -> InputsT:
        try:
            return self.inputs_model.model_validate(props)  # type: ignore[return-value]
        except PydanticValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"])
            name = type(self).__name__.removesuffix("Provider")
            raise ConfigError(f"{name} input {key!r}: {error['msg']}") from exc


def is_unknown(value: Any) -> bool:
    """A value preview cannot know yet: the wire sentinel, or the object pulumi decodes it to."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def gone() -> ReadResult:
    """What read returns for a thing deleted out of band: the engine then drops or recreates it."""
    return ReadResult(id_="", outs={})


ArgsT = TypeVar("ArgsT")


class LocalResource(Resource, Generic[ArgsT]):
    """A dynamic resource whose props are the fields of a dataclass of args, plus a None
    placeholder for each computed output, so the SDK resolves it as an attribute."""

    provider_type: ClassVar[type[ResourceProvider]]
    computed: ClassVar[tuple[str, ...]] = ()
    secret_outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, args: ArgsT, opts: pulumi.ResourceOptions | None = None) -> None:
        fields = dataclasses.fields(args)  # type: ignore[arg-type]
        props = {field.name: getattr(args, field.name) for field in fields}
        for output in self.computed:
            props.setdefault(output, None)
        if self.secret_outputs:
            secret = pulumi.ResourceOptions(additional_secret_outputs=list(self.secret_outputs))
            opts = pulumi.ResourceOptions.merge(opts, secret)
        super().__init__(self.provider_type(), name, props, opts)
