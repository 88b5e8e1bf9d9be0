"""Gates: the conditions a version must meet, written as one line each in mlinfra.toml.

    accuracy >= 0.9                   absolute threshold
    f1 >= champion - 0.01             f1 may not drop by more than 0.01 below the champion's
    rmse <= champion * 1.05           relative to the champion, by a factor
    latency_ms_single_row <= 2        latency budget per row (also latency_ms_per_row, batched)
    accuracy[long_petals] >= 0.85     on a named slice ([models.NAME.slices])

A gate that compares with the champion is skipped (and says so) when there is no champion yet.
A gate whose metric cannot be computed (an empty slice, one class only) fails: it proved nothing.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ._metrics import LATENCY_METRICS, Task, metric_names

__all__ = ["Gate", "GateResult", "parse_gate"]

_GATE = re.compile(
    r"^\s*(?P<metric>[a-z][a-z0-9_]*)(?:\[(?P<slice>[A-Za-z0-9_-]+)\])?"
    r"\s*(?P<op><=|>=|<|>)\s*(?P<rhs>.+?)\s*$"
)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RELATIVE = re.compile(rf"^champion(?:\s*(?P<combine>[-+*])\s*(?P<value>{_NUMBER}))?$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    slice: str | None
    status: Literal["passed", "failed", "skipped"]
    actual: float | None
    bound: float | None
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    text: str
    metric: str
    slice: str | None
    op: str
    value: float
    relative: bool = False
    combine: Literal["+", "-", "*"] | None = None

    def bound(self, champion: float | None) -> float | None:
        if not self.relative:
            return self.value
        if champion is None:
            return None
        if self.combine == "*":
            return champion * self.value
        return champion + (self.value if self.combine == "+" else -self.value)

    def check(
        self, actual: float | None, champion: float | None, *, has_champion: bool
    ) -> GateResult:
        """Judge one gate given the candidate's value and the champion's (for relative gates)."""
        if self.relative and not has_champion:
            return self._result("skipped", actual, None, "no champion to compare with")
        bound = self.bound(champion)
        if actual is None or bound is None:
            whose = "this version" if actual is None else "the champion"
            return self._result("failed", actual, bound, f"{self.metric} is undefined for {whose}")
        passed = _OPERATORS[self.op](actual, bound)
        verdict = "meets" if passed else "misses"
        detail = f"{actual:.6g} {verdict} {self.op} {bound:.6g}"
        return self._result("passed" if passed else "failed", actual, bound, detail)

    def _result(
        self, status: Literal["passed", "failed", "skipped"], actual: Any, bound: Any, detail: str
    ) -> GateResult:
        return GateResult(self.text, self.metric, self.slice, status, actual, bound, detail)


def parse_gate(text: str, *, task: Task, slices: Mapping[str, str] | None = None) -> Gate:
    """Parse one gate line, checking its metric against the task and its slice against `slices`."""
    match = _GATE.match(text)
    if not match:
        raise ValueError(
            f"gate {text!r}: write METRIC[SLICE] OP VALUE, e.g. 'accuracy >= 0.9' "
            "or 'f1 >= champion - 0.01'"
        )
    metric, slice_name, op, rhs = match.group("metric", "slice", "op", "rhs")
    known = [*metric_names(task), *LATENCY_METRICS]
    if metric not in known:
        raise ValueError(
            f"gate {text!r}: unknown {task} metric {metric!r}; known: {', '.join(known)}"
        )
    if slice_name is not None:
        if metric in LATENCY_METRICS:
            raise ValueError(f"gate {text!r}: latency is measured on all rows, not per slice")
        if slice_name not in (slices or {}):
            raise ValueError(f"gate {text!r}: no slice {slice_name!r} under [models.NAME.slices]")
    if re.fullmatch(_NUMBER, rhs):
        return Gate(text, metric, slice_name, op, float(rhs))
    relative = _RELATIVE.match(rhs)
    if not relative:
        raise ValueError(
            f"gate {text!r}: compare with a number or with champion, e.g. 'champion - 0.01'"
        )
    combine, value = relative.group("combine", "value")
    if combine is None:
        return Gate(text, metric, slice_name, op, 0.0, relative=True, combine="+")
    return Gate(text, metric, slice_name, op, float(value), relative=True, combine=combine)  # type: ignore[arg-type]
