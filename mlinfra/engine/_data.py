"""What providers may tell the engine about the data a resource holds, and how the engine tells
them that deleting it was allowed.

A dynamic provider may define two optional hooks, which the embedded engine asks live, before
every step that could lose data:

    data_at_risk(id, outputs) -> HeldData | None       what deleting the resource would lose
    data_move(id, olds, news) -> DataMove | None       what an update would carry elsewhere

A resource holding data is protected: `up` refuses to delete or replace it and `destroy` keeps
it (out of the state, its data in place) unless the user passed `--delete-data`. Consent reaches
the provider through the environment variable below, so its own `delete` can refuse too where
another engine (the pulumi CLI's provider process) drives it. A provider that moves data on
update copies it and leaves the original where it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DELETE_DATA_VARIABLE",
    "DataMove",
    "HeldData",
    "allowing_data_loss",
    "data_loss_allowed",
    "held_data",
    "planned_move",
]

DELETE_DATA_VARIABLE = "MLINFRA_DELETE_DATA"
"""Set to "1" while a run may delete data (`--delete-data`); inherited by provider processes."""


@dataclass(frozen=True)
class HeldData:
    """What a resource holds that its deletion would lose: "5 model versions (iris v1-v5)"."""

    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.what} at {self.where}"


@dataclass(frozen=True)
class DataMove:
    """What an update carries from `source` to `target`; the source is left in place."""

    what: str
    source: str
    target: str


def data_loss_allowed() -> bool:
    return os.environ.get(DELETE_DATA_VARIABLE) == "1"


@contextmanager
def allowing_data_loss(allowed: bool) -> Iterator[None]:
    """Tell providers, for the duration of a run, whether they may delete the data they hold."""
    before = os.environ.get(DELETE_DATA_VARIABLE)
    if allowed:
        os.environ[DELETE_DATA_VARIABLE] = "1"
    else:
        os.environ.pop(DELETE_DATA_VARIABLE, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DELETE_DATA_VARIABLE, None)
        else:
            os.environ[DELETE_DATA_VARIABLE] = before


def held_data(provider: Any, id_: str, outputs: dict[str, Any]) -> HeldData | None:
    """The provider's answer to `data_at_risk`, or None when it has no such hook."""
    hook = getattr(provider, "data_at_risk", None)
    return hook(id_, outputs) if callable(hook) else None


def planned_move(
    provider: Any, id_: str, olds: dict[str, Any], news: dict[str, Any]
) -> DataMove | None:
    """The provider's answer to `data_move`, or None when it has no such hook."""
    hook = getattr(provider, "data_move", None)
    return hook(id_, olds, news) if callable(hook) else None
