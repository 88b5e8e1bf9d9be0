"""`mlinfra models list|show|compare|alias|tag`: reading and curating the env's registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ...errors import ConfigError
from .._options import EnvOption, JsonOption, ModelOption, ProjectOption
from .._output import console, emit_json
from ._context import VersionArgument, model_name, open_registry
from ._render import metrics_table, number, print_alias_history, version_label

if TYPE_CHECKING:
    from ...registry import ModelVersion, Registry

__all__ = ["alias", "compare", "list_versions", "show", "tag"]


def list_versions(
    env: EnvOption = None,
    project: ProjectOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Newest N.")] = None,
    json_: JsonOption = False,
) -> None:
    """List registered versions, newest first, with the env's aliases."""
    with open_registry(project, env) as (environment, registry, _):
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
    project: ProjectOption = None,
    model: ModelOption = None,
    report: Annotated[
        bool, typer.Option("--report", help="Print the latest evaluation report (Markdown).")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Everything about one version: lineage, params, metrics, schema, importances, reports."""
    with open_registry(project, env) as (environment, registry, _):
        found = registry.resolve(model_name(environment, model), version, env=environment.name)
        details = _details(registry, found, environment.name)
        reports = registry.reports(found)
    if report:
        if not reports:
            raise ConfigError(f"{found.ref} has no report yet; run `mlinfra evaluate`")
        console.print(reports[-1].markdown, markup=False, highlight=False)
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
    console.print(metrics_table({f"v{found.version}": found.metrics}))
    importances = (details["importances"] or {}).get("features", [])
    if importances:
        shown = ", ".join(f"{row['feature']} {row['mean']:.3g}" for row in importances[:5])
        console.print(f"  importances: {shown}")
    for entry in details["reports"]:
        verdict = "passed" if entry["passed"] else "FAILED"
        console.print(
            f"  report {entry['id']}: {entry['kind']} {verdict} ({entry['created_at'][:19]})"
        )


def compare(
    versions: Annotated[list[str], typer.Argument(help="Two or more versions or aliases.")],
    env: EnvOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    json_: JsonOption = False,
) -> None:
    """Metrics side by side, and the params and lineage that differ."""
    if len(versions) < 2:
        raise ConfigError("compare needs at least two versions")
    with open_registry(project, env) as (environment, registry, _):
        name = model_name(environment, model)
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
    project: ProjectOption = None,
    model: ModelOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the registry's audit trail.")
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
    json_: JsonOption = False,
) -> None:
    """Move an alias of the env to a version (audited), remove it, or show who moved it when."""
    with open_registry(project, env) as (environment, registry, _):
        declared_name = model_name(environment, model)
        if version is None and not remove:
            events = registry.alias_history(declared_name, env=environment.name, alias=name)
            current = registry.aliases(declared_name, env=environment.name).get(name)
            print_alias_history(name, current, [event.to_dict() for event in events], json_)
            return
        if not reason:
            raise ConfigError("give --reason: the audit trail records why an alias moved")
        if remove or version is None:
            event = registry.remove_alias(declared_name, name, env=environment.name, reason=reason)
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
    with open_registry(project, env) as (environment, registry, _):
        found = registry.resolve(model_name(environment, model), version, env=environment.name)
        updated = registry.tag(found, pairs, remove or [])
    if json_:
        emit_json({"model": updated.model, "version": updated.version, "tags": updated.tags})
        return
    shown = ", ".join(f"{k}={v}" for k, v in updated.tags.items()) or "none"
    console.print(f"{updated.ref} tags: {shown}")


# -- rendering ---------------------------------------------------------------------------------


def _aliases_by_version(
    registry: Registry, models: set[str], env: str
) -> dict[tuple[str, int], list[str]]:
    found: dict[tuple[str, int], list[str]] = {}
    for name in sorted(models):
        for alias_name, pointed in registry.aliases(name, env=env).items():
            found.setdefault((name, pointed), []).append(alias_name)
    return found


def _details(registry: Registry, version: ModelVersion, env: str) -> dict[str, Any]:
    search = registry.search_results(version)
    return {
        **version.to_dict(),
        "aliases": [
            a for a, n in registry.aliases(version.model, env=env).items() if n == version.version
        ],
        "schema": registry.schema(version),
        "importances": registry.importances(version),
        "search": search,
        "reports": [r.to_dict(markdown=False) for r in registry.reports(version)],
    }


def _side_by_side(records: list[dict[str, Any]], *, only_different: bool) -> dict[str, list[Any]]:
    keys = sorted({key for record in records for key in record})
    table = {key: [record.get(key) for record in records] for key in keys}
    if only_different:
        return {key: values for key, values in table.items() if len(set(map(repr, values))) > 1}
    return table
