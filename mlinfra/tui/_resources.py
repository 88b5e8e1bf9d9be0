"""The Resources view: the env's stack, children under their component; Enter shows one
resource's inputs and outputs (secrets masked)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult

from ._detail import Line
from ._table import Row, Rows, RowTable
from ._view import View

if TYPE_CHECKING:
    from ..api import Resource

__all__ = ["ResourcesView"]

COLUMNS = ("name", "type", "status", "id", "key outputs")
KEY_OUTPUTS = ("url", "path", "pid", "healthy", "port", "workers")
"""Outputs worth a glance, in this order; Enter shows them all."""
PROVIDER_INPUT = "__provider"
"""A dynamic resource's pickled provider: the engine's, not the user's."""


class ResourcesView(View[tuple[Rows, dict[str, "Resource"]]]):
    TITLE = "Resources"

    def __init__(self) -> None:
        super().__init__()
        self._resources: dict[str, Resource] = {}

    def compose_content(self) -> ComposeResult:
        yield RowTable(COLUMNS, id="resources")

    def read(self, env: str) -> tuple[Rows, dict[str, Resource]]:
        resources = self.source.resources(env)
        depth: dict[str, int] = {}
        rows = []
        for resource in resources:
            depth[resource.urn] = depth[resource.parent] + 1 if resource.parent in depth else 0
            rows.append(
                Row(
                    resource.urn,
                    (
                        "  " * depth[resource.urn] + resource.name,
                        resource.type,
                        resource.status,
                        resource.id or "-",
                        _key_outputs(resource),
                    ),
                    style="yellow" if resource.status != "ok" else "",
                )
            )
        return Rows.of(COLUMNS, rows), {resource.urn: resource for resource in resources}

    def show(self, data: tuple[Rows, dict[str, Resource]]) -> None:
        rows, self._resources = data
        self.query_one(RowTable).show(rows)

    @on(RowTable.Selected, "#resources")
    def _open(self, event: RowTable.Selected) -> None:
        resource = self._resources.get(event.row.key)
        if resource is not None:
            self.tui.open_detail(
                f"Resource {resource.name}",
                ("section", "name", "value"),
                lambda: _detail(resource),
            )


def _key_outputs(resource: Resource) -> str:
    outputs = resource.outputs
    return "  ".join(
        f"{key}={outputs[key]}"
        for key in KEY_OUTPUTS
        if key in outputs and outputs[key] != resource.id  # the id is shown already
    )


def _detail(resource: Resource) -> list[Line]:
    lines: list[Line] = [
        ("resource", "urn", resource.urn),
        ("resource", "type", resource.type),
        ("resource", "id", resource.id or "-"),
        ("resource", "status", resource.status),
        ("resource", "parent", resource.parent or "-"),
        ("resource", "protect", str(resource.protect).lower()),
    ]
    lines += [("resource", "depends on", urn) for urn in resource.dependencies]
    lines += [
        ("input", key, _value(value))
        for key, value in sorted(resource.inputs.items())
        if key != PROVIDER_INPUT
    ]
    lines += [("output", key, _value(value)) for key, value in sorted(resource.outputs.items())]
    return lines


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
