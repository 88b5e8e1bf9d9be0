"""A drill-down: one thing (a resource, a version, two versions compared) as a table of
section, name and value(s), read once in a worker; Esc goes back to the view it came from."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult

from ._table import Row, Rows, RowTable
from ._view import View

__all__ = ["DetailView", "Line"]

Line = tuple[str, ...]
"""(section, name, value, ...): one line of a detail."""


class DetailView(View[Rows]):
    """`load()` (in a worker) gives the lines under `columns`, about `env`."""

    live = False

    def __init__(
        self,
        title: str,
        columns: Sequence[str],
        load: Callable[[], list[Line]],
        *,
        env: str | None,
    ) -> None:
        super().__init__()
        self._heading = title
        self._columns = tuple(columns)
        self._load = load
        self._env = env

    @property
    def heading(self) -> str:
        return self._heading

    def on_screen_resume(self) -> None:
        if self._env != self.tui.env_name:  # another env was picked meanwhile: not its detail
            self.dismiss()
            return
        super().on_screen_resume()

    def compose_content(self) -> ComposeResult:
        yield RowTable(self._columns, id="detail")

    def read(self, env: str) -> Rows:
        lines = self._load()
        return Rows.of(self._columns, [Row(str(index), line) for index, line in enumerate(lines)])

    def show(self, data: Rows) -> None:
        self.query_one(RowTable).show(data)
