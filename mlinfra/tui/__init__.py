"""`mlinfra tui`: the project's envs in a terminal, live, k9s-style.

    from mlinfra.tui import run
    run(".", env="dev", readonly=True)

Views (`:` jumps): environments, resources, models, deployments, alerts, history. Actions (each
confirmed first): R rollback, P promote, A abort, F refresh, K acknowledge. Everything is read
and done through `mlinfra.api` in thread workers (`Source`); a test or a snapshot may hand
`MlinfraApp` a `Source` of its own and `refresh_seconds=None` for a screen that stays still.
"""

from __future__ import annotations

from pathlib import Path

from ._app import ACTIONS, DEFAULT_REFRESH_SECONDS, VIEWS, MlinfraApp
from ._source import Source

__all__ = ["ACTIONS", "DEFAULT_REFRESH_SECONDS", "VIEWS", "MlinfraApp", "Source", "run"]


def run(
    project_dir: Path | str | None = None, *, env: str | None = None, readonly: bool = False
) -> None:
    """Open the project (ConfigError for an unknown env) and run the app until `q`."""
    from ..api import open_project

    project = open_project(project_dir)
    if env is not None:
        project.env(env)  # an unknown env is a ConfigError here, not a blank screen
    MlinfraApp(Source(project), env=env, readonly=readonly).run()
