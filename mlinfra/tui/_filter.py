"""The `/` filter: a line at the bottom of a view; its text narrows the view's tables as it is
typed. Enter keeps the filter and goes back to the table, Esc clears it."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

__all__ = ["FilterBar"]


class FilterBar(Input):
    """Hidden until opened; stays shown while it holds a filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "clear filter"),
    ]
    DEFAULT_CSS = """
    FilterBar { display: none; border: none; height: 1; padding: 0 1; }
    FilterBar:focus { border: none; }
    """

    class Closed(Message):
        """The filter line gave the focus back (its filter kept, or cleared)."""

    def __init__(self) -> None:
        super().__init__(placeholder="filter: rows containing this text", id="filter")

    def open(self) -> None:
        self.display = True
        self.focus()

    def close(self) -> None:
        """Clear the filter and hide."""
        self.value = ""
        self.display = False
        self.post_message(self.Closed())

    def action_close(self) -> None:
        self.close()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = bool(self.value)
        self.post_message(self.Closed())
