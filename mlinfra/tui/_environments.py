"""The Environments view: every env of the project, its stack and what it serves; Enter picks
the env the other views show."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from textual import on
from textual.app import ComposeResult

from ._format import at
from ._source import EnvOverview
from ._table import Row, Rows, RowTable
from ._view import View

__all__ = ["EnvironmentsView"]

COLUMNS = (
    "",
    "env",
    "target",
    "engine",
    "status",
    "resources",
    "last update (UTC)",
    "by",
    "result",
    "infra drift (last refresh)",
    "serves",
)
READERS = 8
"""Envs read at once."""


class EnvironmentsView(View[list[Row]]):
    TITLE = "Environments"

    def compose_content(self) -> ComposeResult:
        yield RowTable(COLUMNS, id="envs")

    def on_mount(self) -> None:
        # the env names come from mlinfra.toml, read already: drawn before any stack is read
        self.show([Row(name, self._cells_reading(name)) for name in self.source.env_names])

    def read(self, env: str) -> list[Row]:
        # each env's read waits mostly on SQLite and files, which free the GIL: side by side,
        # 20 envs read in a quarter of the time they take one after the other
        with ThreadPoolExecutor(READERS, thread_name_prefix="env-overview") as pool:
            return list(pool.map(self._read_row, self.source.env_names))

    def _read_row(self, name: str) -> Row:
        try:
            return self._row(self.source.overview(name))
        except Exception as exc:  # one unreadable env must not hide the others
            cells = (*self._cells_reading(name)[:4], "unreadable", *[""] * 5, str(exc))
            return Row(name, cells, style="red")

    def show(self, data: list[Row]) -> None:
        """The rows, the current env marked (a handful: laid out here, not in the worker)."""
        current = self.tui.env_name
        marked = [
            Row(row.key, ("▸" if row.key == current else " ", *row.cells[1:]), row.style)
            for row in data
        ]
        self.query_one(RowTable).show(Rows.of(COLUMNS, marked))

    def _cells_reading(self, name: str) -> tuple[str, ...]:
        return ("", name, "", "", "reading…", *[""] * 6)

    def _row(self, env: EnvOverview) -> Row:
        update = env.last_update
        status = "up" if env.up else "not up" if env.applied_here else "not applied here"
        if env.lock is not None:
            status += f", locked by {env.lock.user} ({env.lock.command})"
        cells = (
            "",
            env.name,
            env.target,
            env.engine,
            status,
            str(env.resources),
            "-" if update is None else f"{at(update.started)} {update.kind}",
            "-" if update is None else update.user,
            "-" if update is None else update.result,
            _drift(env),
            env.problem or _serves(env),
        )
        failed = env.problem is not None or (update is not None and update.result == "failed")
        return Row(env.name, cells, style="red" if failed else "" if env.up else "dim")

    @on(RowTable.Selected, "#envs")
    def _open(self, event: RowTable.Selected) -> None:
        self.tui.select_env(event.row.key)
        self.tui.jump("resources")


def _drift(env: EnvOverview) -> str:
    found = env.last_refresh
    if found is None:
        return "never refreshed"
    when = at(found.at)
    if not found.drifted:
        return f"none ({when})"
    return f"{found.changed} changed, {found.gone} gone ({when})"


def _serves(env: EnvOverview) -> str:
    if not env.up:
        return "-"
    table = env.serving
    if table is None:
        return "nothing deployed"
    text = f"{table.model} v{table.stable}"
    if table.canary is not None:
        kind = "shadow" if table.mode == "shadow" else f"{table.canary_weight}%"
        text += f", canary v{table.canary} {kind}"
    return text
