"""Every screen of `mlinfra tui` worth a picture, as the keys and reads that bring it up on the
frozen project (_tui_frozen.py): tests/test_tui_snapshots.py compares each with its accepted
SVG, docs/images/tui_screenshots.py saves some for docs/tui.md.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from _tui_frozen import frozen_app
from textual.pilot import Pilot
from textual.widgets import Static

from mlinfra.tui import MlinfraApp
from mlinfra.tui._confirm import ConfirmScreen
from mlinfra.tui._detail import DetailView
from mlinfra.tui._filter import FilterBar
from mlinfra.tui._help import HelpScreen
from mlinfra.tui._view import View

__all__ = ["SCREENS", "Shot", "read", "until"]

Steps = Callable[[Pilot[Any]], Awaitable[None]]
CHART_READS = 8
"""Reads of the Deployments view before its picture: the charts draw from the second on."""


async def until(pilot: Pilot[Any], condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await pilot.pause(0.02)


async def read(pilot: Pilot[Any]) -> View[Any]:
    """The current view, once its read is on screen and no other read is on its way."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, View) and app.screen.loaded, "a read")
    await until(pilot, lambda: all(worker.is_finished for worker in app.workers), "workers")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, View)
    return screen


@dataclass(frozen=True)
class Shot:
    """A screen: the steps that bring it up on the frozen app made with `options`."""

    steps: Steps
    options: dict[str, Any] = field(default_factory=dict)

    def app(self) -> MlinfraApp:
        return frozen_app(**self.options)


def shows(view: str, env: str = "dev") -> Steps:
    async def steps(pilot: Pilot[Any]) -> None:
        await read(pilot)
        pilot.app.jump(f"{view} {env}")  # type: ignore[attr-defined]
        await until(pilot, lambda: pilot.app.current_mode == view, f"the {view} view")
        await read(pilot)

    return steps


async def live_charts(pilot: Pilot[Any]) -> None:
    await shows("deployments")(pilot)
    for _ in range(CHART_READS - 1):
        (await read(pilot)).reload()
        await read(pilot)


async def comparison(pilot: Pilot[Any]) -> None:
    """`c` on v12, then `c` on v11: what differs between the two."""
    await shows("models")(pilot)
    await pilot.press("c", "down", "c")
    await until(pilot, lambda: isinstance(pilot.app.screen, DetailView), "the comparison")
    await read(pilot)
    pilot.app.clear_notifications()  # "v12 marked": gone after a few seconds, or not yet


async def keys(pilot: Pilot[Any]) -> None:
    await read(pilot)
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the keys")


async def rollback_question(pilot: Pilot[Any]) -> None:
    await read(pilot)
    await pilot.press("R")
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the question")
    await pilot.pause()


async def filtered(pilot: Pilot[Any]) -> None:
    await shows("models")(pilot)
    pilot.app.screen.query_one(FilterBar).cursor_blink = False  # its cursor stays drawn
    await pilot.press("slash", "v", "1")
    title = pilot.app.screen.query_one("#title", Static)
    await until(pilot, lambda: "filter 'v1'" in str(title.content), "the row count")


SCREENS = {
    "environments": Shot(shows("environments")),
    "resources": Shot(shows("resources")),
    "models": Shot(shows("models")),
    "model-comparison": Shot(comparison),
    "deployments": Shot(live_charts),
    "alerts": Shot(shows("alerts")),  # the first alert's feature: reference against current
    "history": Shot(shows("history")),
    "keys": Shot(keys),
    "rollback-confirmation": Shot(rollback_question),
    "filter": Shot(filtered),
    "env-not-up": Shot(shows("models", env="perf")),
    "readonly": Shot(shows("deployments", env="staging"), {"readonly": True}),
}
