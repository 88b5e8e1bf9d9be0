"""Save the screenshots of docs/tui.md: `mlinfra tui` on the frozen project that the snapshot
tests draw (tests/_tui_frozen.py), so that they come out the same on every run.

    .venv/bin/python docs/images/tui_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from _tui_frozen import SIZE  # noqa: E402 - after the path to tests/
from _tui_screens import SCREENS  # noqa: E402

PICTURES = [
    "environments",
    "resources",
    "models",
    "model-comparison",
    "deployments",
    "alerts",
    "history",
    "rollback-confirmation",
    "keys",
    "filter",
    "env-not-up",
]


async def save(name: str) -> Path:
    shot = SCREENS[name]
    app = shot.app()
    async with app.run_test(size=SIZE) as pilot:
        await shot.steps(pilot)
        return Path(app.save_screenshot(f"tui-{name}.svg", path=HERE))


def main() -> None:
    os.environ.pop("NO_COLOR", None)  # pictures in colour, whoever makes them
    for name in PICTURES:
        print(asyncio.run(save(name)).relative_to(Path.cwd()))


if __name__ == "__main__":
    main()
