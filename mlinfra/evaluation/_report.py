"""An evaluation's outcome: metrics, slices, gate verdicts; as JSON and as Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import GateFailedError
from ._gates import GateResult

__all__ = ["EvaluationReport"]


@dataclass(frozen=True)
class EvaluationReport:
    model: str
    version: int
    env: str
    task: str
    created_at: str
    data: dict[str, Any]
    metrics: dict[str, float | None]
    gates: list[GateResult]
    against: dict[str, Any] | None = None  # {"ref": "champion", "version": 3}
    champion_metrics: dict[str, float | None] | None = None
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    report_id: int | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[GateResult]:
        return [gate for gate in self.gates if gate.failed]

    def raise_if_failed(self) -> None:
        if self.failures:
            raise GateFailedError(self.failure_message())

    def failure_message(self) -> str:
        """One line naming each failed gate and by how much it missed."""
        listed = "; ".join(f"{gate.gate} ({gate.detail})" for gate in self.failures)
        where = f" (report {self.report_id} in the registry)" if self.report_id else ""
        return f"{self.model} v{self.version} failed {len(self.failures)} gate(s){where}: {listed}"

    @classmethod
    def from_dict(cls, body: dict[str, Any], *, report_id: int | None = None) -> EvaluationReport:
        """The report as `to_dict` wrote it (a report stored in the registry)."""
        return cls(
            model=body["model"],
            version=body["version"],
            env=body["env"],
            task=body["task"],
            created_at=body["created_at"],
            data=body["data"],
            metrics=body["metrics"],
            gates=[GateResult(**gate) for gate in body["gates"]],
            against=body.get("against"),
            champion_metrics=body.get("champion_metrics"),
            slices=body.get("slices") or {},
            report_id=report_id if report_id is not None else body.get("report_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "env": self.env,
            "task": self.task,
            "created_at": self.created_at,
            "passed": self.passed,
            "data": self.data,
            "against": self.against,
            "metrics": self.metrics,
            "champion_metrics": self.champion_metrics,
            "slices": self.slices,
            "gates": [gate.to_dict() for gate in self.gates],
            "report_id": self.report_id,
        }

    def to_markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        against = (
            f"against {self.against['ref']} (v{self.against['version']})."
            if self.against
            else "with no champion."
        )
        champion = f"v{self.against['version']}" if self.against else None
        lines = [
            f"# {self.model} v{self.version} in {self.env}: {verdict}",
            "",
            f"Evaluated {self.created_at} on {self.data['source']} ({self.data['rows']} rows, "
            f"data sha256 {self.data['hash'][:12]}), " + against,
            "",
            "## Gates",
            "",
            "| gate | result | detail |",
            "| --- | --- | --- |",
            *(f"| `{g.gate}` | {g.status} | {g.detail} |" for g in self.gates),
            "",
            "## Metrics",
            "",
            *_metric_table(self.metrics, self.champion_metrics, champion),
        ]
        for name, found in self.slices.items():
            lines += [
                "",
                f"## Slice `{name}`: `{found['query']}` ({found['rows']} rows)",
                "",
                *_metric_table(found["metrics"], found.get("champion_metrics"), champion),
            ]
        return "\n".join(lines) + "\n"


def _metric_table(
    metrics: dict[str, float | None], champion: dict[str, float | None] | None, label: str | None
) -> list[str]:
    if champion is None:
        rows = ["| metric | value |", "| --- | --- |"]
        return rows + [f"| {name} | {_number(value)} |" for name, value in metrics.items()]
    rows = [f"| metric | value | {label} | change |", "| --- | --- | --- | --- |"]
    for name, value in metrics.items():
        other = champion.get(name)
        change = "" if value is None or other is None else f"{value - other:+.4g}"
        rows.append(f"| {name} | {_number(value)} | {_number(other)} | {change} |")
    return rows


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
