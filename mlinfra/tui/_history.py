"""The History view: the env's stack updates (up, refresh, destroy: who, when, what changed)
and the audit trail of its aliases (who moved champion where, and why), newest first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.widgets import Label

from ._format import at
from ._table import Row, Rows, RowTable
from ._view import VIEW_CSS, View

if TYPE_CHECKING:
    from ..registry import AliasEvent
    from ..state import UpdateRecord

__all__ = ["HistoryView"]

UPDATES = ("#", "kind", "started (UTC)", "took", "by", "host", "result", "changes", "commit")
ALIASES = ("at (UTC)", "model", "alias", "from", "to", "by", "reason")


@dataclass(frozen=True)
class HistoryShown:
    updates: Rows
    aliases: Rows


class HistoryView(View[HistoryShown]):
    TITLE = "History"
    CSS_PATH = [VIEW_CSS, Path(__file__).with_name("_history.tcss")]

    def compose_content(self) -> ComposeResult:
        yield Label("stack updates", classes="section")
        yield RowTable(UPDATES, id="updates")
        yield Label("alias audit trail", classes="section")
        yield RowTable(ALIASES, id="aliases")

    def read(self, env: str) -> HistoryShown:
        data = self.source.history(env)
        return self.derived(
            data,
            lambda: HistoryShown(
                updates=Rows.of(UPDATES, [_update(record) for record in data.updates]),
                aliases=Rows.of(ALIASES, [_move(event) for event in data.aliases]),
            ),
        )

    def show(self, data: HistoryShown) -> None:
        self.query_one("#updates", RowTable).show(data.updates)
        self.query_one("#aliases", RowTable).show(data.aliases)


def _update(record: UpdateRecord) -> Row:
    took = "-" if record.finished is None else f"{record.finished - record.started:.1f} s"
    changes = ", ".join(f"{count} {kind}" for kind, count in sorted(record.summary.items()))
    commit = record.commit[:10] + ("+dirty" if record.dirty else "") if record.commit else "-"
    result = record.result + (f": {record.error}" if record.error else "")
    return Row(
        str(record.id),
        (
            str(record.id),
            record.kind,
            at(record.started),
            took,
            record.user,
            record.host,
            result,
            changes or "-",
            commit,
        ),
        style="red" if record.result == "failed" else "",
    )


def _move(event: AliasEvent) -> Row:
    return Row(
        f"{event.model}:{event.id}",
        (
            at(event.at),
            event.model,
            event.alias,
            "-" if event.from_version is None else f"v{event.from_version}",
            "removed" if event.to_version is None else f"v{event.to_version}",
            event.actor,
            event.reason,
        ),
    )
