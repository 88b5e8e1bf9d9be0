"""A table that draws only the lines on screen, so 10,000 rows cost what 40 do.

Textual's DataTable measures every cell of every row it is given (10,000 rows of 8 columns:
about a second to add and several more on the next idle, measured on this project's machine),
which a refresh every two seconds cannot afford. Rows here are plain strings laid out by
`Rows.of` (column widths, lower-cased text for filtering) in the worker that read them; the UI
thread only swaps them in and draws what is visible (Textual's Line API).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["Row", "RowTable", "Rows"]

MAX_COLUMN_WIDTH = 60
GAP = "  "


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a table: `key` identifies it across refreshes (the cursor follows it)."""

    key: str
    cells: tuple[str, ...]
    style: str = ""
    """A Rich style for the whole line, e.g. "red" for a failed update."""


@dataclass(frozen=True)
class Rows:
    """Rows laid out for drawing and filtering; built off the UI thread with `of`."""

    columns: tuple[str, ...]
    rows: tuple[Row, ...] = ()
    widths: tuple[int, ...] = ()
    haystacks: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, columns: Sequence[str], rows: Sequence[Row]) -> Rows:
        # column by column, so that the loops over 10,000 rows run inside max() and map()
        cells = zip_longest(*(row.cells for row in rows), fillvalue="") if rows else ()
        widths = [len(label) for label in columns]
        for index, column in enumerate(cells):
            widths[index] = max(widths[index], *map(len, column))
        return cls(
            columns=tuple(columns),
            rows=tuple(rows),
            # the last column may run on: nothing after it is pushed off screen
            widths=(*(min(width, MAX_COLUMN_WIDTH) for width in widths[:-1]), *widths[-1:]),
            haystacks=tuple(" ".join(row.cells).lower() for row in rows),
        )

    def matching(self, text: str) -> list[int]:
        """Indexes of the rows whose text contains `text` (any case)."""
        if not text:
            return list(range(len(self.rows)))
        needle = text.lower()
        return [index for index, haystack in enumerate(self.haystacks) if needle in haystack]


class RowTable(ScrollView, can_focus=True):
    """Rows under a fixed header line, a cursor, and a filter; Enter or a double click selects."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "cursor_to(0)", "first", show=False),
        Binding("end", "cursor_to(-1)", "last", show=False),
        Binding("enter", "select", "open", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--cursor",
        "row-table--cursor-blurred",
    }
    DEFAULT_CSS = """
    RowTable { height: 1fr; }
    RowTable > .row-table--header { text-style: bold; color: $text-accent; }
    RowTable > .row-table--cursor { background: $block-cursor-background;
                                     color: $block-cursor-foreground; }
    RowTable > .row-table--cursor-blurred { background: $block-cursor-blurred-background; }
    """

    class Highlighted(Message):
        """The cursor moved onto `row` (None: the table has no rows to show)."""

        def __init__(self, table: RowTable, row: Row | None) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> RowTable:
            return self.table

    class Selected(Message):
        """Enter (or a double click) on `row`."""

        def __init__(self, table: RowTable, row: Row) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> RowTable:
            return self.table

    def __init__(
        self, columns: Sequence[str], *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._data = Rows.of(columns, ())
        self._shown: list[int] = []
        self._filter = ""
        self._cursor = 0
        self._styles: dict[str, Style] = {}

    # -- data -----------------------------------------------------------------------------

    @property
    def rows(self) -> Rows:
        return self._data

    @property
    def shown(self) -> list[Row]:
        """The rows the filter lets through, in order."""
        return [self._data.rows[index] for index in self._shown]

    @property
    def shown_count(self) -> int:
        return len(self._shown)

    @property
    def cursor_row(self) -> Row | None:
        if not self._shown:
            return None
        return self._data.rows[self._shown[self._cursor]]

    def show(self, data: Rows) -> None:
        """Show these rows instead, the cursor staying on the row it was on (by key)."""
        if data is self._data:  # views hand the same Rows back for an unchanged read
            return
        key = self._key_under_cursor()
        self._data = data
        self._lay_out(key)

    def set_filter(self, text: str) -> None:
        """Show only the rows containing `text`."""
        if text == self._filter:
            return
        key = self._key_under_cursor()
        self._filter = text
        self._lay_out(key)

    def _key_under_cursor(self) -> str | None:
        row = self.cursor_row
        return row.key if row is not None else None

    def _lay_out(self, keep: str | None) -> None:
        before = self.cursor_row
        self._shown = self._data.matching(self._filter)
        width = sum(self._data.widths) + len(GAP) * max(0, len(self._data.widths) - 1)
        self.virtual_size = Size(width, len(self._shown) + 1)
        self._cursor = 0
        if keep is not None:
            for position, index in enumerate(self._shown):
                if self._data.rows[index].key == keep:
                    self._cursor = position
                    break
        self._scroll_to_cursor()
        self.refresh()
        if self.cursor_row != before:
            self.post_message(self.Highlighted(self, self.cursor_row))

    # -- moving ---------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._move(self._cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move(self._cursor + direction * max(1, self.size.height - 1))

    def action_cursor_to(self, position: int) -> None:
        self._move(position if position >= 0 else len(self._shown) - 1)

    def action_select(self) -> None:
        row = self.cursor_row
        if row is not None:
            self.post_message(self.Selected(self, row))

    def _move(self, position: int) -> None:
        if not self._shown:
            return
        position = max(0, min(position, len(self._shown) - 1))
        if position == self._cursor:
            return
        self._cursor = position
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_row))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = round(self.scroll_y)
        if self._cursor < top:
            top = self._cursor
        elif self._cursor >= top + visible:
            top = self._cursor - visible + 1
        top = max(0, min(top, len(self._shown) + 1 - self.size.height))
        if top != round(self.scroll_y):
            self.scroll_to(y=top, animate=False, immediate=True)

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0:
            return
        position = round(self.scroll_y) + offset.y - 1
        if position < len(self._shown):
            self._move(position)
            if event.chain >= 2:
                self.action_select()

    def on_resize(self) -> None:
        self._scroll_to_cursor()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            line = self._line(self._data.columns, base + self._component("row-table--header"))
        else:
            position = scroll_y + y - 1
            if position >= len(self._shown):
                return Strip.blank(width, base)
            row = self._data.rows[self._shown[position]]
            style = base + self._row_style(row.style)
            if position == self._cursor:
                cursor = "row-table--cursor" if self.has_focus else "row-table--cursor-blurred"
                style += self._component(cursor)
            line = self._line(row.cells, style)
        return line.crop_extend(scroll_x, scroll_x + width, base)

    def _line(self, cells: Sequence[str], style: Style) -> Strip:
        text = GAP.join(
            _fit(cell, width) for cell, width in zip(cells, self._data.widths, strict=False)
        )
        return Strip([Segment(text, style)])

    def _component(self, name: str) -> Style:
        return self.get_component_rich_style(name, partial=True)

    def _row_style(self, name: str) -> Style:
        if name not in self._styles:
            self._styles[name] = Style.parse(name) if name else Style()
        return self._styles[name]


def _fit(cell: str, width: int) -> str:
    """`cell` padded or cut to `width` columns, a cut marked with an ellipsis."""
    if cell_len(cell) > width > 0:
        return set_cell_size(cell, width - 1) + "…"
    return set_cell_size(cell, width)
