"""What engines report: steps with property diffs, and the summary of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ._data import DataMove, HeldData

__all__ = [
    "DataMove",
    "DriftReport",
    "EventSink",
    "HeldData",
    "Op",
    "PropertyDiff",
    "RunResult",
    "Step",
    "StepEvent",
    "count_ops",
]


class Op(StrEnum):
    SAME = "same"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    KEEP = "keep"
    """`destroy` left it in place for the data it holds: out of the state, not deleted."""
    REFRESH = "refresh"


@dataclass(frozen=True)
class PropertyDiff:
    """One input that changes; `replaces` says it forces a replacement."""

    path: str
    kind: str  # "add", "update" or "delete"
    old: Any = None
    new: Any = None
    replaces: bool = False


@dataclass
class Step:
    urn: str
    type: str
    name: str
    op: Op
    diffs: list[PropertyDiff] = field(default_factory=list)
    error: str = ""
    data_at_risk: HeldData | None = None
    """On a delete, replace or keep: the data the resource holds (its provider said so)."""
    data_move: DataMove | None = None
    """On an update: the data it carries to a new place."""
    deletes_first: bool = False
    """On a replace: the old resource is deleted before the new one is created, so it is out of
    service in between (the provider asked `delete_before_replace`)."""

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}"


@dataclass(frozen=True)
class StepEvent:
    """Sent while a run goes: `phase` is "start", "done" or "failed"."""

    step: Step
    phase: str


EventSink = Callable[[StepEvent], None]


@dataclass
class RunResult:
    """What a preview, up or destroy did (or, for a preview, would do)."""

    stack: str
    kind: str
    steps: list[Step]
    outputs: dict[str, Any]
    seconds: float
    engine: str
    warnings: list[str] = field(default_factory=list)
    """Things the user should look at although the run succeeded."""
    notes: list[str] = field(default_factory=list)
    """What the run did beside its steps: a branch env's champion seeded, its record dropped."""

    @property
    def counts(self) -> dict[str, int]:
        return count_ops(self.steps)

    @property
    def changed(self) -> bool:
        return any(step.op is not Op.SAME for step in self.steps)


def count_ops(steps: list[Step]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.op.value] = counts.get(step.op.value, 0) + 1
    return counts


@dataclass(frozen=True)
class DriftReport:
    """What `refresh` found changed out of band for one resource."""

    urn: str
    type: str
    name: str
    status: str  # "ok", "changed" or "gone"
    diffs: list[PropertyDiff] = field(default_factory=list)
