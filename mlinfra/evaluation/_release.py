"""Release clearance: may this version be served in this env, and on what grounds.

A version is cleared by the latest evaluation report of it made in the env under today's
conditions: the gates and slices mlinfra.toml declares now, against the env's current champion
(or with none while there is none). With no such report it is evaluated first. A model with no
gates declared is cleared as such. Failed gates refuse the release (exit 7) unless an override
reason is given; the override is then recorded in the registry, beside the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .._identity import current_user
from ..errors import GateFailedError
from ..registry import ModelVersion, Registry
from ..registry._types import utc_now
from ._evaluate import DeclaredModel, evaluate_declared
from ._report import EvaluationReport

if TYPE_CHECKING:
    from ..registry import Report

__all__ = [
    "EVALUATION_KIND",
    "OVERRIDE_KIND",
    "Clearance",
    "Override",
    "ReleaseRefusedError",
    "check_release",
]

EVALUATION_KIND = "evaluation"
OVERRIDE_KIND = "override"
_CHAMPION = "champion"


class Override(BaseModel):
    """A person releasing a version past its failed gates: who, when, why, with which command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: str
    at: str
    reason: str
    command: str
    failed_gates: list[str]
    report_id: int = Field(description="the override's record among the version's reports")


class Clearance(BaseModel):
    """The grounds on which a version is released in an env; kept with the rollout it starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    version: int
    env: str
    gates: list[str] = Field(default_factory=list, description="declared when cleared")
    against: int | None = Field(default=None, description="the champion it was judged against")
    report_id: int | None = Field(default=None, description="the evaluation relied on")
    evaluated_now: bool = False
    failed_gates: list[str] = Field(default_factory=list)
    override: Override | None = None
    _report: EvaluationReport | None = PrivateAttr(default=None)

    @property
    def report(self) -> EvaluationReport | None:
        """The evaluation relied on, as this process read or made it (not kept in JSON)."""
        return self._report

    @property
    def forced(self) -> bool:
        return self.override is not None

    @property
    def grounds(self) -> str:
        """One line for people: why this version may serve (or, refused, why not)."""
        if not self.gates:
            return "no gates declared"
        if self.override is not None:
            return (
                f"forced past failed gates ({'; '.join(self.failed_gates)}) by "
                f"{self.override.by}: {self.override.reason} (override report "
                f"{self.override.report_id})"
            )
        against = "with no champion yet" if self.against is None else f"against v{self.against}"
        where = f"report {self.report_id}" + (
            ", evaluated for this release" if self.evaluated_now else ""
        )
        if self.failed_gates:
            failed = "; ".join(self.failed_gates)
            return f"failed {len(self.failed_gates)} gate(s) {against}: {failed} ({where})"
        return f"passed {len(self.gates)} gate(s) {against} ({where})"

    @property
    def note(self) -> str:
        """What an alias move made on these grounds adds to its reason: only an override."""
        if self.override is None:
            return ""
        return (
            f"; forced past failed gates: {'; '.join(self.failed_gates)} ({self.override.reason})"
        )


class ReleaseRefusedError(GateFailedError):
    """Gates failed and nothing overrode them; carries the clearance refused, to show its report."""

    def __init__(self, message: str, *, clearance: Clearance) -> None:
        super().__init__(message)
        self.clearance = clearance


def check_release(
    model: DeclaredModel,
    registry: Registry,
    version: ModelVersion,
    *,
    env: str,
    command: str,
    override: str | None = None,
    actor: str | None = None,
) -> Clearance:
    """Clear `version` for release in `env`, evaluating it first if no stored report fits.

    Failed gates raise ReleaseRefusedError (exit 7), unless `override` gives the reason to
    release anyway: that is recorded as a report of kind "override" on the version.
    """
    if not model.gates:
        return Clearance(model=version.model, version=version.version, env=env)
    champion = registry.aliases(version.model, env=env).get(_CHAMPION)
    report = _matching_report(registry.reports(version), model, env=env, champion=champion)
    evaluated_now = report is None
    if report is None:
        report = evaluate_declared(model, registry, str(version.version), env=env)
    fields: dict[str, Any] = {
        "model": version.model,
        "version": version.version,
        "env": env,
        "gates": list(model.gates),
        "against": (report.against or {}).get("version"),
        "report_id": report.report_id,
        "evaluated_now": evaluated_now,
        "failed_gates": [gate.gate for gate in report.failures],
    }
    if report.failures and override:
        fields["override"] = _record_override(
            registry, version, report, env=env, reason=override, command=command, actor=actor
        )
    clearance = Clearance(**fields)
    clearance._report = report
    if report.failures and not override:
        raise ReleaseRefusedError(
            f"{report.failure_message()}; not released in env {env!r}: fix the model, run "
            "`mlinfra evaluate` again if the data changed, or pass --force --reason TEXT",
            clearance=clearance,
        )
    return clearance


def _matching_report(
    reports: list[Report], model: DeclaredModel, *, env: str, champion: int | None
) -> EvaluationReport | None:
    """The latest evaluation made in `env` with today's gates and slices, against `champion`."""
    gates = sorted(model.gates)
    slices = dict(model.slices)
    for stored in reversed(reports):
        body = stored.body
        if stored.kind != EVALUATION_KIND or stored.env != env:
            continue
        if sorted(gate["gate"] for gate in body.get("gates", [])) != gates:
            continue
        if {name: s.get("query") for name, s in (body.get("slices") or {}).items()} != slices:
            continue
        if (body.get("against") or {}).get("version") != champion:
            continue
        return EvaluationReport.from_dict(body, report_id=stored.id)
    return None


def _record_override(
    registry: Registry,
    version: ModelVersion,
    report: EvaluationReport,
    *,
    env: str,
    reason: str,
    command: str,
    actor: str | None,
) -> Override:
    """Write the override into the registry's audit trail before anything is served."""
    by = actor or current_user()
    body: dict[str, Any] = {
        "by": by,
        "at": utc_now(),
        "reason": reason,
        "command": command,
        "failed_gates": [gate.gate for gate in report.failures],
        "evaluation_report": report.report_id,
    }
    listed = "\n".join(f"- `{gate.gate}`: {gate.detail}" for gate in report.failures)
    markdown = (
        f"# {version.model} v{version.version} in {env}: released past failed gates\n\n"
        f"By {by} at {body['at']}: {reason}\n\n{listed}\n\n"
        f"Evaluation report {report.report_id}; command `{command}`\n"
    )
    stored = registry.add_report(
        version,
        env=env,
        kind=OVERRIDE_KIND,
        passed=False,
        body=body,
        markdown=markdown,
        created_by=by,
    )
    return Override(
        by=by,
        at=body["at"],
        reason=reason,
        command=command,
        failed_gates=body["failed_gates"],
        report_id=stored.id,
    )
