"""`mlinfra render`: a kubernetes env's objects as YAML, for kubectl or GitOps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._options import BranchOption, EnvOption, JsonOption, ProjectOption, open_env
from ._output import console, emit_json

__all__ = ["register"]


def render(
    out: Annotated[
        Path, typer.Option("--out", file_okay=False, help="Directory to write the files to.")
    ],
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    json_: JsonOption = False,
) -> None:
    """Write a kubernetes env's objects (one YAML file each), its Dockerfile and the images to
    build under --out, without a cluster; then `kubectl apply -R -f OUT`.
    """
    from ..kubernetes import render as render_env

    environment = open_env(project, env, branch).environment
    rendered = render_env(environment, out)
    if json_:
        emit_json(rendered.to_dict())
        return
    console.print(
        f"{len(rendered.objects)} objects of {environment.name} written to {out}; build and "
        f"push {', '.join(rendered.images)} ({out}/_build/images.txt), then "
        f"`kubectl apply -R -f {out}`",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(render)
