"""`mlinfra ci summary`: what a pull request's branch env did and holds, for a reviewer.

The last update's resource changes, the branch's model against the base env's champion (on the
same evaluation data), its gates, and where it serves; as Markdown or as JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MlinfraError

if TYPE_CHECKING:
    from ..api import Env
    from ..registry import ModelVersion, Registry
    from ..state import BranchEnvRecord

__all__ = ["STEP_SUMMARY_ENV", "Summary", "summarise"]

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
_EVALUATION = "evaluation"


@dataclass(frozen=True)
class Summary:
    env: str
    branch: str
    base: str
    commit: str
    url: str | None
    update: dict[str, Any] | None
    """the last update: kind, result, counts of each change, when, how long, error"""
    model: str | None
    candidate: dict[str, Any] | None
    """the branch's version: number, whether it serves, its last evaluation (gates, metrics)"""
    champion: dict[str, Any] | None
    """the base env's champion: version and metrics on the same data, or why there are none"""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "branch": self.branch,
            "base": self.base,
            "commit": self.commit,
            "url": self.url,
            "update": self.update,
            "model": self.model,
            "candidate": self.candidate,
            "champion": self.champion,
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        title = f"Preview `{self.env}` of branch `{self.branch}`" if self.branch else "Env"
        lines = [f"### {title if self.branch else f'{title} `{self.env}`'}", ""]
        commit = f" at `{self.commit[:12]}`" if self.commit else ""
        where = f"<{self.url}>" if self.url else "not serving (the env is not up)"
        derived = f", derived from env `{self.base}`" if self.branch else ""
        lines += [f"Endpoint: {where}{commit}{derived}.", ""]
        lines += self._update_lines() + self._model_lines()
        lines += [f"> {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def _update_lines(self) -> list[str]:
        update = self.update
        if update is None:
            return ["No update has run yet.", ""]
        counts = ", ".join(f"{n} {op}" for op, n in sorted(update["counts"].items())) or "none"
        line = f"Last `{update['kind']}`: **{update['result']}** ({counts}"
        line += f", {update['seconds']:.1f}s)" if update["seconds"] is not None else ")"
        return [line + (f": {update['error']}" if update["error"] else "") + ".", ""]

    def _model_lines(self) -> list[str]:
        candidate, champion = self.candidate, self.champion
        if self.model is None or candidate is None:
            return ["No model version is registered in this env yet.", ""]
        serving = "serving" if candidate["serving"] else "not deployed"
        evaluation = candidate["evaluation"]
        if evaluation is None:
            return [f"`{self.model}` v{candidate['version']} ({serving}) is not evaluated.", ""]
        verdict = "passed" if evaluation["passed"] else "**failed**"
        lines = [f"`{self.model}` v{candidate['version']} ({serving}): gates {verdict}.", ""]
        lines += _gates_table(evaluation["gates"])
        theirs = champion["metrics"] if champion else None
        heading = (
            f"{self.base} champion v{champion['version']}"
            if champion and champion.get("version")
            else f"{self.base} champion"
        )
        lines += _metrics_table(evaluation["metrics"], theirs, heading)
        if champion and champion.get("note"):
            lines += [champion["note"], ""]
        return lines

    def write_step_summary(self) -> Path | None:
        """Append the Markdown to `$GITHUB_STEP_SUMMARY` when set (a GitHub Actions step)."""
        target = os.environ.get(STEP_SUMMARY_ENV)
        if not target:
            return None
        path = Path(target)
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(self.to_markdown() + "\n")
        except OSError as exc:
            raise ConfigError(f"${STEP_SUMMARY_ENV} ({path}) cannot be written: {exc}") from exc
        return path


def summarise(env: Env, model: str | None = None) -> Summary:
    """The summary of a branch env (or of any env: then nothing is compared with a base)."""
    environment = env.environment
    branch = environment.branch
    record = _record(env)
    notes = [
        f"Seeded at creation with env {environment.base}'s champion {model} v{number}."
        for model, number in ((record.seeded or {}) if record else {}).items()
    ]
    url = None
    if env.is_up():
        url = env.outputs().serving_url
    summary_model, candidate, champion = None, None, None
    if url is not None:
        with env.pinned(), env.registry() as registry:
            summary_model = _model(env, registry, model)
            if summary_model is not None:
                candidate, version = _candidate(env, registry, summary_model)
                champion = _base_champion(env, registry, summary_model, version, candidate)
    return Summary(
        env=env.name,
        branch=branch.name if branch else "",
        base=environment.base,
        commit=record.commit if record else "",
        url=url,
        update=_update(env),
        model=summary_model,
        candidate=candidate,
        champion=champion,
        notes=notes,
    )


def _record(env: Env) -> BranchEnvRecord | None:
    from ._environments import recorded

    if env.environment.branch is None:
        return None
    return recorded(env.environment.project, env.name)


def _update(env: Env) -> dict[str, Any] | None:
    last = env.last_update()
    if last is None:
        return None
    return {
        "kind": last.kind,
        "result": last.result,
        "counts": {op: n for op, n in last.summary.items() if n},
        "started": datetime.fromtimestamp(last.started, UTC).isoformat(),
        "seconds": None if last.finished is None else round(last.finished - last.started, 3),
        "error": last.error,
    }


def _model(env: Env, registry: Registry, model: str | None) -> str | None:
    table = env.deployment()
    if model is not None:
        return model
    if table is not None:
        return table.model
    models = registry.models()
    declared = [name for name in env.environment.project.config.models if name in models]
    return declared[0] if declared else (models[0] if models else None)


def _candidate(
    env: Env, registry: Registry, model: str
) -> tuple[dict[str, Any] | None, ModelVersion | None]:
    """The version the env serves, else its newest; with its last evaluation here."""
    if model not in registry.models():
        return None, None
    table = env.deployment()
    serving = table.stable if table is not None and table.model == model else None
    version = registry.get(model, serving) if serving else registry.latest(model)
    if version is None:
        return None, None
    evaluation = _last_evaluation(registry, version, env.name)
    return {
        "version": version.version,
        "serving": serving == version.version,
        "evaluation": evaluation,
    }, version


def _last_evaluation(registry: Registry, version: ModelVersion, env: str) -> dict[str, Any] | None:
    reports = [
        report
        for report in registry.reports(version)
        if report.kind == _EVALUATION and report.env == env
    ]
    if not reports:
        return None
    body = reports[-1].body
    return {
        "report": reports[-1].id,
        "passed": reports[-1].passed,
        "gates": body.get("gates", []),
        "metrics": body.get("metrics", {}),
        "against": body.get("against"),
        "champion_metrics": body.get("champion_metrics"),
    }


def _base_champion(
    env: Env,
    registry: Registry,
    model: str,
    version: ModelVersion | None,
    candidate: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The base env's champion now, with metrics measured on the same data as the branch's
    version: from the branch's own evaluation when it was compared with a copy of that
    champion, else from the champion's last evaluation in the base env."""
    from ..api import EnvNotUpError, open_project

    base_name = env.environment.base
    if base_name == env.name:
        return None
    base = open_project(env.environment.project.root).env(base_name)
    try:
        with base.pinned(), base.registry() as base_registry:
            if model not in base_registry.models():
                return {"version": None, "metrics": None, "note": f"{base_name} has no {model}."}
            number = base_registry.aliases(model, env=base_name).get("champion")
            if number is None:
                note = f"{base_name} has no champion of {model} yet."
                return {"version": None, "metrics": None, "note": note}
            champion = base_registry.get(model, number)
            evaluation = (candidate or {}).get("evaluation")
            same_run = _compared_with(registry, evaluation, base_name, champion)
            if same_run is not None:
                return {"version": number, "metrics": same_run, "measured": "same evaluation"}
            own = _last_evaluation(base_registry, champion, base_name)
            if own is not None:
                return {
                    "version": number,
                    "metrics": own["metrics"],
                    "measured": f"its last evaluation in {base_name}",
                }
            note = f"{base_name}'s champion v{number} was never evaluated there."
            return {"version": number, "metrics": None, "note": note}
    except EnvNotUpError:
        return {"version": None, "metrics": None, "note": f"env {base_name} is not up."}
    except MlinfraError as exc:
        return {"version": None, "metrics": None, "note": f"{base_name} cannot be read: {exc}"}


def _compared_with(
    registry: Registry,
    evaluation: dict[str, Any] | None,
    base_name: str,
    champion: ModelVersion,
) -> dict[str, Any] | None:
    """The champion metrics of the branch's evaluation, if what it was compared with is a copy
    of the base env's champion (seeded, or promoted along)."""
    if evaluation is None or not evaluation.get("against"):
        return None
    against = registry.get(champion.model, evaluation["against"]["version"])
    origin = against.lineage.get("origin") or {}
    same = origin.get("env") == base_name and origin.get("version") == champion.version
    return evaluation.get("champion_metrics") if same else None


def _gates_table(gates: list[dict[str, Any]]) -> list[str]:
    if not gates:
        return ["No gates are declared.", ""]
    marks = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭️ skipped"}
    lines = ["| gate | result | detail |", "|---|---|---|"]
    for gate in gates:
        status = marks.get(gate["status"], gate["status"])
        lines.append(f"| `{gate['gate']}` | {status} | {_cell(gate['detail'])} |")
    return [*lines, ""]


def _metrics_table(mine: dict[str, Any], theirs: dict[str, Any] | None, heading: str) -> list[str]:
    lines = [f"| metric | this branch | {heading} | change |", "|---|---|---|---|"]
    for name, value in mine.items():
        other = (theirs or {}).get(name)
        change = (
            f"{value - other:+.4f}"
            if isinstance(value, int | float) and isinstance(other, int | float)
            else ""
        )
        lines.append(f"| {name} | {_number(value)} | {_number(other)} | {change} |")
    return [*lines, ""]


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "—"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")
