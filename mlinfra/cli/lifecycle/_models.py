"""`mlinfra models list|show|compare|alias|tag|promote`: reading and curating the env's registry,
and promoting a version from one env's registry to the next."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ...api import open_project
from ...errors import ConfigError
from .._options import (
    BranchOption,
    EnvOption,
    ForceOption,
    JsonOption,
    ModelOption,
    ProjectOption,
    ReasonOption,
    VersionArgument,
    command_line,
    open_env,
    override_reason,
    pinned_env,
)
from .._output import console, emit_json
from ..serving import (
    CanaryOption,
    IntervalOption,
    MinSamplesOption,
    RolloutPlan,
    ShadowOption,
    StepsOption,
    StickyHeaderOption,
    WaitOption,
    print_clearance,
    print_result,
    raise_if_stopped,
    release_json,
    serve,
    show_refusal,
)
from ._render import metrics_table, number, print_alias_history, version_label

if TYPE_CHECKING:
    from ...evaluation import Promotion
    from ...registry import ModelVersion, Registry, Report

__all__ = ["alias", "compare", "list_versions", "promote", "show", "tag"]


def list_versions(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Newest N.")] = None,
    json_: JsonOption = False,
) -> None:
    """List registered versions, newest first, with the env's aliases."""
    environment = open_env(project, env, branch)
    with environment.registry() as registry:
        versions = registry.summaries(model, limit=limit)
        aliases = _aliases_by_version(registry, {v.model for v in versions}, environment.name)
    rows = [
        {**version.to_dict(), "aliases": aliases.get((version.model, version.version), [])}
        for version in versions
    ]
    if json_:
        emit_json(rows, compact=True)
        return
    table = Table("model", "version", "created", "by", "aliases", "metric", "tags")
    for row in rows:
        metric = row["metric"]
        table.add_row(
            row["model"],
            f"v{row['version']}",
            row["created_at"][:16].replace("T", " "),
            row["created_by"],
            ", ".join(row["aliases"]),
            f"{metric} {number(row['score'])}" if metric else "",
            ", ".join(f"{k}={v}" for k, v in row["tags"].items()),
        )
    console.print(table if rows else "no versions registered yet; run `mlinfra train`")


def show(
    version: VersionArgument,
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    report: Annotated[
        bool, typer.Option("--report", help="Print the latest evaluation report (Markdown).")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Everything about one version: lineage, params, metrics, schema, importances, reports,
    and its audit trail: where it came from, where it was promoted, gates overridden."""
    from ...evaluation import EVALUATION_KIND

    environment = open_env(project, env, branch)
    with environment.registry() as registry:
        found = registry.resolve(environment.model_name(model), version, env=environment.name)
        details = _details(registry, found, environment.name)
        reports = registry.reports(found)
    if report:
        evaluations = [entry for entry in reports if entry.kind == EVALUATION_KIND]
        if not evaluations:
            raise ConfigError(f"{found.ref} has no evaluation report yet; run `mlinfra evaluate`")
        console.print(evaluations[-1].markdown, markup=False, highlight=False)
        return
    if json_:
        emit_json(details)
        return
    console.print(f"[bold]{found.model} v{found.version}[/]  aliases: {details['aliases'] or '-'}")
    lineage = found.lineage
    for key in ("created_at", "created_by", "env"):
        console.print(f"  {key}: {details[key]}")
    for key in (
        "git_commit",
        "git_dirty",
        "data_hash",
        "fit_seconds",
        "search",
        "trials",
        "metric",
    ):
        console.print(f"  {key}: {lineage.get(key)}")
    console.print(f"  artifact: sha256 {found.artifact_sha256}")
    origin = details["origin"]
    if origin:
        console.print(
            f"  origin: {escape(origin['env'])} v{origin['version']} (registry "
            f"{escape(origin['registry'])})",
            soft_wrap=True,
        )
    console.print(metrics_table({f"v{found.version}": found.metrics}))
    importances = (details["importances"] or {}).get("features", [])
    if importances:
        shown = ", ".join(f"{row['feature']} {row['mean']:.3g}" for row in importances[:5])
        console.print(f"  importances: {shown}")
    for entry in reports:
        console.print(f"  report {entry.id}: {escape(_report_line(entry))}", soft_wrap=True)


def compare(
    versions: Annotated[list[str], typer.Argument(help="Two or more versions or aliases.")],
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    json_: JsonOption = False,
) -> None:
    """Metrics side by side, and the params and lineage that differ."""
    if len(versions) < 2:
        raise ConfigError("compare needs at least two versions")
    environment = open_env(project, env, branch)
    with environment.registry() as registry:
        name = environment.model_name(model)
        found = [registry.resolve(name, ref, env=environment.name) for ref in versions]
    labels = [f"v{v.version}" for v in found]
    lineage_keys = ("data_hash", "git_commit", "git_dirty", "search", "trials", "fit_seconds")
    result: dict[str, Any] = {
        "versions": [v.version for v in found],
        "metrics": _side_by_side([v.metrics for v in found], only_different=False),
        "params": _side_by_side([v.params for v in found], only_different=True),
        "lineage": _side_by_side(
            [{k: v.lineage.get(k) for k in lineage_keys} for v in found], only_different=False
        ),
    }
    if json_:
        emit_json(result)
        return
    for section in ("metrics", "params", "lineage"):
        table = Table(section, *labels, title=None)
        for key, values in result[section].items():
            table.add_row(key, *(escape(number(value)) for value in values))
        console.print(table if result[section] else f"{section}: all the same")


def alias(
    name: Annotated[str, typer.Argument(help="Alias, e.g. champion or challenger.")],
    version: Annotated[
        str | None, typer.Argument(help="Version to point it at; omit to show its history.")
    ] = None,
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the registry's audit trail.")
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
    json_: JsonOption = False,
) -> None:
    """Move an alias of the env to a version (audited), remove it, or show who moved it when."""
    with pinned_env(project, env, branch) as environment:
        declared_name = environment.model_name(model)
        if version is None and not remove:
            events = environment.alias_history(declared_name, alias=name)
            current = environment.aliases(declared_name).get(name)
            print_alias_history(name, current, [event.to_dict() for event in events], json_)
            return
        if not reason:
            raise ConfigError("give --reason: the audit trail records why an alias moved")
        with environment.registry() as registry:
            if remove or version is None:
                event = registry.remove_alias(
                    declared_name, name, env=environment.name, reason=reason
                )
            else:
                target = registry.resolve(declared_name, version, env=environment.name)
                event = registry.set_alias(
                    declared_name, name, target.version, env=environment.name, reason=reason
                )
    if json_:
        emit_json(event.to_dict())
        return
    moved = f"v{event.to_version}" if event.to_version is not None else "nothing (removed)"
    was = version_label(event.from_version)
    console.print(f"{declared_name} {name} in {environment.name}: {was} -> {moved}")


def tag(
    version: VersionArgument,
    tags: Annotated[list[str] | None, typer.Argument(help="Tags to set, as key=value.")] = None,
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Tag key to remove; repeatable.")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Set or remove key=value tags on a version."""
    pairs = dict(item.partition("=")[::2] for item in tags or [])
    if any("=" not in item for item in tags or []):
        raise ConfigError("tags are key=value")
    environment = open_env(project, env, branch)
    with environment.registry() as registry:
        found = registry.resolve(environment.model_name(model), version, env=environment.name)
        updated = registry.tag(found, pairs, remove or [])
    if json_:
        emit_json({"model": updated.model, "version": updated.version, "tags": updated.tags})
        return
    shown = ", ".join(f"{k}={v}" for k, v in updated.tags.items()) or "none"
    console.print(f"{updated.ref} tags: {shown}")


def promote(
    version: VersionArgument,
    from_env: Annotated[str, typer.Option("--from", help="The env the version is in.")],
    to_env: Annotated[str, typer.Option("--to", help="The env to promote it to.")],
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            envvar="MLINFRA_BRANCH",
            help="Take the version from this branch's env of --from (a preview).",
        ),
    ] = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    deploy: Annotated[
        bool, typer.Option("--deploy", help="Then serve it there, as `mlinfra deploy` would.")
    ] = False,
    canary: CanaryOption = None,
    steps: StepsOption = None,
    interval: IntervalOption = RolloutPlan.DEFAULT_INTERVAL,
    wait: WaitOption = False,
    shadow: ShadowOption = False,
    sticky_header: StickyHeaderOption = None,
    min_samples: MinSamplesOption = RolloutPlan.DEFAULT_MIN_SAMPLES,
    force: ForceOption = False,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Promote a version to another env: copy it there, then clear it against that env's gates.

    The copy keeps its artifact (sha256 verified), schema, reference sample, metrics and reports,
    with where it came from in lineage.origin; envs sharing a registry share the version. It is
    judged on the target env's data against its champion; failed gates exit 7 (the copy stays
    registered with its report) unless --force --reason. --deploy then serves it there.
    """
    from ...evaluation import ReleaseRefusedError, promote_version

    override = override_reason(force, reason)
    plan = RolloutPlan.parse(
        canary=canary,
        steps=steps,
        interval=interval,
        wait=wait,
        shadow=shadow,
        sticky_header=sticky_header,
        min_samples=min_samples,
    )
    if not deploy and (plan.steps is not None or wait or sticky_header):
        raise ConfigError("--canary, --steps, --shadow, --sticky-header and --wait need --deploy")
    loaded = open_project(project)
    source_env, target_env = loaded.env(from_env, branch=branch or None), loaded.env(to_env)
    with source_env.pinned(), target_env.pinned():
        declared = target_env.definition(model)
        with source_env.registry() as source, target_env.registry() as target:
            try:
                promotion = promote_version(
                    declared,
                    source,
                    target,
                    version,
                    source_env=source_env.name,
                    target_env=target_env.name,
                    command=command_line(),
                    override=override,
                )
            except ReleaseRefusedError as refused:
                show_refusal(refused, json_=json_)
                raise
        served = None
        if deploy:
            served = serve(target_env, promotion.clearance, plan=plan, json_=json_)
    if json_:
        emit_json(
            {
                **promotion.to_dict(),
                **release_json(promotion.clearance),
                "deployment": None if served is None else served.model_dump(mode="json"),
            }
        )
    else:
        console.print(escape(_landed(promotion)), soft_wrap=True)
        print_clearance(promotion.clearance)
        if served is not None:
            print_result(served)
    if served is not None:
        raise_if_stopped(served)


# -- rendering ---------------------------------------------------------------------------------


def _landed(promotion: Promotion) -> str:
    came = f"{promotion.source_env} v{promotion.source.version}"
    landed = f"{promotion.env} v{promotion.version.version}"
    if promotion.copied:
        return f"copied {promotion.version.model} {came} to {landed} (artifact sha256 verified)"
    if promotion.shared_registry:
        return f"{promotion.env} shares the registry of {promotion.source_env}: {landed} is {came}"
    return f"{promotion.env} already holds {promotion.version.model} {came} as {landed}"


def _aliases_by_version(
    registry: Registry, models: set[str], env: str
) -> dict[tuple[str, int], list[str]]:
    found: dict[tuple[str, int], list[str]] = {}
    for name in sorted(models):
        for alias_name, pointed in registry.aliases(name, env=env).items():
            found.setdefault((name, pointed), []).append(alias_name)
    return found


def _details(registry: Registry, version: ModelVersion, env: str) -> dict[str, Any]:
    from ...evaluation import OVERRIDE_KIND, PROMOTION_KIND

    search = registry.search_results(version)
    reports = registry.reports(version)
    return {
        **version.to_dict(),
        "aliases": [
            a for a, n in registry.aliases(version.model, env=env).items() if n == version.version
        ],
        "schema": registry.schema(version),
        "importances": registry.importances(version),
        "search": search,
        "reports": [r.to_dict(markdown=False) for r in reports],
        "origin": version.lineage.get("origin"),
        "promotions": _audit(reports, PROMOTION_KIND),
        "overrides": _audit(reports, OVERRIDE_KIND),
    }


def _audit(reports: list[Report], kind: str) -> list[dict[str, Any]]:
    return [{"report_id": r.id, "env": r.env, **r.body} for r in reports if r.kind == kind]


def _report_line(report: Report) -> str:
    """A stored report in one line: a verdict, a promotion, or an override of failed gates."""
    from ...evaluation import OVERRIDE_KIND, PROMOTION_KIND

    body, at = report.body, report.created_at[:19]
    if report.kind == PROMOTION_KIND:
        return (
            f"promotion {body['direction']} {body['env']} v{body['version']} in {report.env} "
            f"by {body['by']} ({at})"
        )
    if report.kind == OVERRIDE_KIND:
        return (
            f"FORCED past failed gates ({'; '.join(body['failed_gates'])}) in {report.env} by "
            f"{body['by']}: {body['reason']} ({at}; {body['command']})"
        )
    verdict = "passed" if report.passed else "FAILED"
    return f"{report.kind} in {report.env} {verdict} ({at})"


def _side_by_side(records: list[dict[str, Any]], *, only_different: bool) -> dict[str, list[Any]]:
    keys = sorted({key for record in records for key in record})
    table = {key: [record.get(key) for record in records] for key in keys}
    if only_different:
        return {key: values for key, values in table.items() if len(set(map(repr, values))) > 1}
    return table
