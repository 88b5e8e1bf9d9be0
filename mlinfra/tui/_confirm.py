"""The confirmation before an action: what exactly will change; `y` does it, `n` or Esc
leaves everything as it is."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ._source import Plan

__all__ = ["ConfirmScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """True when confirmed."""

    CSS_PATH = Path(__file__).with_name("_confirm.tcss")  # absolute: subclasses live elsewhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes, do it"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "cancel"),
    ]

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"{self.plan.title}?", id="question", markup=False)
            yield Static("This will:", classes="lead", markup=False)
            yield Static(
                "\n".join(f"  • {change}" for change in self.plan.changes),
                id="changes",
                markup=False,
            )
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n / Esc)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
