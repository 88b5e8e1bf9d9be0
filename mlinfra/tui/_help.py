"""`?`: the keys, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

__all__ = ["KEYS", "HelpScreen"]

KEYS = (
    ("views", ""),
    (":", "jump to a view by name, or to an env: `:models`, `:staging`, `:alerts prod`"),
    ("", "views: environments resources models deployments alerts history"),
    ("/", "filter the view's tables: rows containing the text (Esc clears)"),
    ("Enter", "open the row under the cursor: an env, a resource, a version, an alert"),
    ("c", "Models: mark a version, then c on another one to compare the two"),
    ("Esc", "back: clear the filter, close a detail, or the previous view"),
    ("?", "these keys"),
    ("q", "quit"),
    ("actions: each asks first (y confirms, n or Esc cancels); --readonly refuses them", ""),
    ("R", "roll back: serve the previous champion at once"),
    ("P", "promote the running canary"),
    ("A", "abort the running canary"),
    ("F", "refresh the stack: read every resource and record what drifted"),
    ("K", "Alerts: acknowledge the alert under the cursor"),
)


class HelpScreen(ModalScreen[None]):
    CSS_PATH = Path(__file__).with_name("_help.tcss")  # absolute: subclasses live elsewhere
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="keys"):
            yield Label("Keys", id="heading", markup=False)
            for key, meaning in KEYS:
                yield Static(
                    f"  {key:<7} {meaning}" if meaning else f"\n{key}", classes="key", markup=False
                )

    def action_close(self) -> None:
        self.dismiss()
