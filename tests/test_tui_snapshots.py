"""Every screen of `mlinfra tui` as an SVG snapshot (pytest-textual-snapshot), drawn from the
frozen project of _tui_frozen.py (fixed clock, ports, paths and users), so the same screen comes
out on any machine. A change to what a screen shows fails here, with a report of the difference
in snapshot_report.html, until `pytest tests/test_tui_snapshots.py --snapshot-update` accepts
it; the accepted SVGs live in tests/__snapshots__/test_tui_snapshots/ and are reviewed like code.
"""

from __future__ import annotations

from typing import Any

import pytest
from _tui_frozen import SIZE, frozen_app
from _tui_screens import SCREENS, read, until

from mlinfra.tui._help import HelpScreen
from mlinfra.tui._keys import KeyBar


@pytest.fixture(autouse=True)
def colours(monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshots are in colour, whoever runs them (Textual honours NO_COLOR)."""
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(snap_compare: Any, name: str) -> None:
    shot = SCREENS[name]
    assert snap_compare(shot.app(), terminal_size=SIZE, run_before=shot.steps)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_click_on_the_key_line_presses_that_key(anyio_backend: str) -> None:
    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        await read(pilot)
        bar = app.screen.query_one(KeyBar)
        await pilot.click(KeyBar, offset=(bar.render().plain.index("? keys") + 2, 0))
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the keys, by mouse")
