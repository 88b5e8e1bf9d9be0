"""`:`: a one-line prompt naming a view (or an env) to go to; → takes the suggestion, Esc
cancels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input

__all__ = ["JumpScreen"]


class JumpScreen(ModalScreen[str | None]):
    """The text entered, or None when cancelled."""

    CSS_PATH = Path(__file__).with_name("_jump.tcss")  # absolute: subclasses live elsewhere
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self._names = list(names)

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="view or env: " + ", ".join(self._names),
            suggester=SuggestFromList(self._names, case_sensitive=False),
            id="jump",
        )

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
