"""What every screen of the app shares: a title line, its content or, when the env cannot be
read, an explanation in its place, the `/` filter over its tables, and reading in a thread
worker so that input never waits for a read."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Static

from ..errors import MlinfraError
from ._filter import FilterBar
from ._keys import KeyBar
from ._table import RowTable

if TYPE_CHECKING:
    from ._app import MlinfraApp
    from ._source import Source

__all__ = ["VIEW_CSS", "NothingToShowError", "View"]

Data = TypeVar("Data")
VIEW_CSS = Path(__file__).with_name("_view.tcss")
"""Absolute, as every CSS path here: subclasses of the views may live elsewhere."""


class NothingToShowError(MlinfraError):
    """Nothing there yet (no versions, nothing deployed): said in place of an empty table."""


class View(Screen[None], Generic[Data]):
    """A screen that reads `Data` (`read`, in a worker) and shows it (`show`, on the UI thread).

    `live` views read again at every tick of the app's refresh interval; the others once."""

    CSS_PATH: ClassVar[list[str | PurePath]] = [VIEW_CSS]
    TITLE: ClassVar[str] = ""
    live: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self._reading = False
        self._read_env: str | None = None
        self._shown_once = False
        # touched by the read worker only (one read at a time)
        self._last_read: tuple[str | None, Any, str | None] = (None, None, None)
        self._derived: tuple[object, object] | None = None

    @property
    def tui(self) -> MlinfraApp:
        return cast("MlinfraApp", self.app)

    @property
    def source(self) -> Source:
        return self.tui.source

    @property
    def heading(self) -> str:
        """What the title line calls this view."""
        return self.TITLE

    @property
    def loaded(self) -> bool:
        """Whether a read has been shown (its data, or why there is none)."""
        return self._shown_once

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        with Vertical(id="content"):
            yield from self.compose_content()
        yield Static(id="explanation", markup=False)
        with Vertical(id="bottom"):  # one dock: two docked at the bottom would overlap
            yield FilterBar()
            yield KeyBar()

    def compose_content(self) -> ComposeResult:
        """The view's own widgets."""
        yield from ()

    def read(self, env: str) -> Data:
        """Everything the view shows, read through the source (runs in a thread worker)."""
        raise NotImplementedError

    def show(self, data: Data) -> None:
        """Put what `read` returned on screen: update what changed only."""
        raise NotImplementedError

    def on_mount(self) -> None:
        tables = self.query(RowTable)
        if tables:
            tables.first().focus()

    # -- reading --------------------------------------------------------------------------

    def on_screen_resume(self) -> None:
        self.update_title()
        if self.live or not self._shown_once or self._read_env != self.tui.env_name:
            self.call_after_refresh(self.reload)  # drawn first, then read

    def reload(self) -> None:
        """Read again, unless a read is still on its way (a slow read is never stacked)."""
        if self._reading:
            return
        self._reading = True
        self._read_env = self.tui.env_name
        self._read(self._read_env)

    @work(thread=True, group="read")
    def _read(self, env: str) -> None:
        try:
            outcome: tuple[Any, str | None] = (self.read(env), None)
        except MlinfraError as exc:
            outcome = (None, str(exc))
        except Exception as exc:  # a half-written file or a dropped connection: said, not fatal
            outcome = (None, f"could not read env {env}: {type(exc).__name__}: {exc}")
        last, self._last_read = self._last_read, (env, *outcome)
        unchanged = last[0] == env and last[1] is outcome[0] and last[2] == outcome[1]
        with suppress(RuntimeError):  # raised when the app quit while this read was on its way
            self.app.call_from_thread(self._settle, env, *outcome, unchanged)

    def derived(self, raw: object, build: Callable[[], Data]) -> Data:
        """What `build()` makes of `raw`, made again only when `raw` changed since the last
        read: a refresh of 10,000 unchanged rows costs one comparison, in the worker."""
        if self._derived is None or self._derived[0] != raw:
            self._derived = (raw, build())
        return cast("Data", self._derived[1])

    def _settle(self, env: str, data: Data | None, problem: str | None, unchanged: bool) -> None:
        self._reading = False
        if not (self.app.is_running and self.is_running):
            return  # the app quit, or this screen closed, while the read was on its way
        if env != self.tui.env_name:  # the env changed while reading: that read is stale
            self.reload()
            return
        if unchanged and self._shown_once:
            return
        self._shown_once = True
        self.explain(problem)
        if problem is None:
            self.show(cast("Data", data))

    def explain(self, problem: str | None) -> None:
        """Show `problem` in place of the content (None: the content)."""
        explanation = self.query_one("#explanation", Static)
        explanation.update(problem or "")
        explanation.display = problem is not None
        content = self.query_one("#content")
        content.display = problem is None
        if problem is None and self.focused is None:  # hidden content could not take it
            tables = content.query(RowTable)
            if tables:
                tables.first().focus()

    def update_title(self) -> None:
        parts = [f"mlinfra · {self.source.project_name}"]
        if self.tui.env_name is not None:
            parts.append(f"env {self.tui.env_name}")
        parts.append(self.heading)
        if self.tui.readonly:
            parts.append("read-only")
        text = "  ·  ".join(parts)
        if self.filter_text:
            text += f"   filter {self.filter_text!r}: {self._filter_counts()}"
        self.query_one("#title", Static).update(text)

    # -- the filter -----------------------------------------------------------------------

    @property
    def filter_text(self) -> str:
        return self.query_one(FilterBar).value if self.is_mounted else ""

    def open_filter(self) -> None:
        self.query_one(FilterBar).open()

    def clear_filter(self) -> None:
        self.query_one(FilterBar).close()

    @on(FilterBar.Changed)
    def _filter_changed(self, event: FilterBar.Changed) -> None:
        for table in self.query(RowTable):
            table.set_filter(event.value)
        self.update_title()

    @on(FilterBar.Closed)
    def _filter_closed(self) -> None:
        tables = self.query(RowTable)
        if tables:
            tables.first().focus()

    def _filter_counts(self) -> str:
        tables = list(self.query(RowTable))
        shown = sum(table.shown_count for table in tables)
        total = sum(len(table.rows.rows) for table in tables)
        return f"{shown} of {total} rows"
