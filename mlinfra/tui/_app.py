"""The app: one mode per view, the keys every view shares, the live refresh, and the actions
(each planned, confirmed, then run in a worker)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen

from ..errors import MlinfraError
from ._environments import EnvironmentsView
from ._source import NothingToDoError, Plan, Source
from ._view import View

if TYPE_CHECKING:
    from textual.screen import Screen

    from ..monitoring import Alert
    from ._detail import Line

__all__ = ["ACTIONS", "DEFAULT_REFRESH_SECONDS", "VIEWS", "MlinfraApp"]


def _later(module: str, name: str) -> Callable[[], Screen[Any]]:
    """A view imported when first shown: the first screen waits for its own module only."""

    def make() -> Screen[Any]:
        return getattr(import_module(module, __package__), name)()

    return make


VIEWS: dict[str, Callable[[], Screen[Any]]] = {
    "environments": EnvironmentsView,
    "resources": _later("._resources", "ResourcesView"),
    "models": _later("._models", "ModelsView"),
    "deployments": _later("._deployments", "DeploymentsView"),
    "alerts": _later("._alerts", "AlertsView"),
    "history": _later("._history", "HistoryView"),
}
ACTIONS = ("rollback", "promote", "abort", "refresh", "acknowledge")
DEFAULT_REFRESH_SECONDS = 2.0
_NOT_WHILE_ASKING = {"act", "jump", "filter", "go_back"}


class MlinfraApp(App[None]):
    """`mlinfra tui`: the project's envs, live.

    `source` is what the views read and the actions act on; `refresh_seconds=None` reads each
    view once, for a screen that stays still (snapshots)."""

    TITLE = "mlinfra"
    ENABLE_COMMAND_PALETTE = False  # `:` is the way to go somewhere; one way, not two
    CSS_PATH = Path(__file__).with_name("_app.tcss")  # absolute: subclasses live elsewhere
    MODES: ClassVar[dict[str, Any]] = dict(VIEWS)
    DEFAULT_MODE = "environments"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("colon", "jump", "view"),
        Binding("slash", "filter", "filter"),
        Binding("question_mark", "help", "keys"),
        Binding("escape", "go_back", "back"),
        Binding("q", "quit", "quit"),
        Binding("R", "act('rollback')", "rollback"),
        Binding("P", "act('promote')", "promote"),
        Binding("A", "act('abort')", "abort"),
        Binding("F", "act('refresh')", "refresh"),
        Binding("K", "act('acknowledge')", "ack"),
    ]

    def __init__(
        self,
        source: Source,
        *,
        env: str | None = None,
        readonly: bool = False,
        refresh_seconds: float | None = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        super().__init__()
        self.source = source
        names = source.env_names
        self.env_name: str | None = env or (names[0] if names else None)
        self.readonly = readonly
        self.refresh_seconds = refresh_seconds
        self._came_from: list[str] = []
        self._acting = False

    def on_mount(self) -> None:
        if self.refresh_seconds is not None:
            self.set_interval(self.refresh_seconds, self._tick)

    def _tick(self) -> None:
        screen = self.screen
        if isinstance(screen, View) and screen.live:
            screen.reload()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry names and error messages: not markup unless asked."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # while a confirmation, the prompt or the keys are up, their keys only
        return not (action in _NOT_WHILE_ASKING and isinstance(self.screen, ModalScreen))

    # -- moving around --------------------------------------------------------------------

    def go(self, view: str) -> None:
        """Show `view`, remembering where we were for Esc."""
        if view != self.current_mode:
            self._came_from.append(self.current_mode)
            self.switch_mode(view)

    def select_env(self, name: str) -> None:
        """Make `name` the env the views show (and the actions act on)."""
        if name == self.env_name:
            return
        self.env_name = name
        while len(self.screen_stack) > 1:  # a detail of the previous env is not this env's
            self.pop_screen()
        screen = self.screen
        if isinstance(screen, View):
            screen.update_title()
            screen.reload()

    def open_detail(
        self, title: str, columns: Sequence[str], load: Callable[[], list[Line]]
    ) -> None:
        """Drill into one thing of the current env; `load` runs in a worker."""
        from ._detail import DetailView

        self.push_screen(DetailView(title, columns, load, env=self.env_name))

    def jump(self, text: str) -> None:
        """`:` text: a view, an env, or both (`models staging`); unique prefixes do."""
        view, env = None, None
        for word in text.lower().split():
            if word in self.source.env_names:
                env = word
                continue
            matches = [name for name in VIEWS if name.startswith(word)]
            if len(matches) != 1:
                views, envs = ", ".join(VIEWS), ", ".join(self.source.env_names)
                self.notify(
                    f"no view or env {word!r}: views are {views}; envs are {envs}",
                    severity="warning",
                )
                return
            view = matches[0]
        if env is not None:
            self.select_env(env)
        if view is not None:
            self.go(view)

    def action_jump(self) -> None:
        def answered(text: str | None) -> None:
            if text:
                self.jump(text)

        from ._jump import JumpScreen

        self.push_screen(JumpScreen([*VIEWS, *self.source.env_names]), answered)

    def action_filter(self) -> None:
        screen = self.screen
        if isinstance(screen, View):
            screen.open_filter()

    def action_help(self) -> None:
        from ._help import HelpScreen

        self.push_screen(HelpScreen())

    def action_go_back(self) -> None:
        """Esc: clear the filter, else close the detail, else the previous view."""
        screen = self.screen
        if isinstance(screen, View) and screen.filter_text:
            screen.clear_filter()
        elif len(self.screen_stack) > 1:
            self.pop_screen()
        elif self._came_from:
            self.switch_mode(self._came_from.pop())

    # -- actions --------------------------------------------------------------------------

    def action_act(self, action: str) -> None:
        if self.readonly:
            self.notify(
                f"read-only: {action} is disabled (mlinfra tui was started with --readonly)",
                severity="warning",
            )
            return
        env = self.env_name
        if env is None:
            self.notify("the project has no env to act on", severity="warning")
            return
        if self._acting:
            self.notify("an action is still running; wait for it to finish", severity="warning")
            return
        alert: Alert | None = None
        if action == "acknowledge":
            alert = getattr(self.screen, "selected_alert", None)
            if alert is None:
                self.notify(
                    "K acknowledges the alert under the cursor in the Alerts view (:alerts)",
                    severity="warning",
                )
                return
            if alert.acknowledged:
                self.notify(f"alert {alert.id} is already acknowledged")
                return
        self._acting = True
        self._plan(action, env, alert)

    @work(thread=True, group="action")
    def _plan(self, action: str, env: str, alert: Alert | None) -> None:
        try:
            if alert is not None:
                plan = self.source.plan_acknowledge(env, alert)
            else:
                plan = getattr(self.source, f"plan_{action}")(env)
        except NothingToDoError as exc:
            self.call_from_thread(self._finished, str(exc), "warning")
            return
        except Exception as exc:
            self.call_from_thread(self._finished, _failure(action, exc), "error")
            return
        self.call_from_thread(self._ask, plan)

    def _ask(self, plan: Plan) -> None:
        from ._confirm import ConfirmScreen

        if not self.is_running:  # quit while planning: nothing is asked, nothing runs
            return
        self.push_screen(ConfirmScreen(plan), lambda yes: self._answered(plan, bool(yes)))

    def _answered(self, plan: Plan, yes: bool) -> None:
        if not yes:
            self._finished(f"cancelled: {plan.title.lower()} did not happen", "information")
            return
        self.notify(f"{plan.title}…")
        self._run(plan)

    @work(thread=True, group="action")
    def _run(self, plan: Plan) -> None:
        severity: SeverityLevel = "information"
        try:
            message = plan.run()
        except Exception as exc:
            message, severity = _failure(plan.title.lower(), exc), "error"
        self.call_from_thread(self._finished, message, severity)

    def _finished(self, message: str, severity: SeverityLevel) -> None:
        self._acting = False
        if not self.is_running:  # quit while acting: the action has ended, no screen to say so
            return
        self.notify(message, severity=severity, timeout=10)
        screen = self.screen
        if isinstance(screen, View):
            screen.reload()


def _failure(what: str, exc: Exception) -> str:
    """An action's error for a notification: ours say what to do; anything else is a bug."""
    if isinstance(exc, MlinfraError):
        return f"{what} failed: {exc}"
    return f"{what} failed with an unexpected error (a bug): {type(exc).__name__}: {exc}"
