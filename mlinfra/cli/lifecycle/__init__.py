"""Commands of the model lifecycle: `train`, `evaluate`, and
`models list|show|compare|alias|tag|promote`.

Thin: each parses, calls one library function, and renders. scikit-learn and pandas are imported
only inside the commands that fit or score, so `mlinfra models list` starts fast.
"""

from __future__ import annotations

import typer

from ._commands import evaluate, train
from ._models import alias, compare, list_versions, promote, show, tag

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the `mlinfra` app."""
    app.command()(train)
    app.command()(evaluate)
    models = typer.Typer(
        name="models",
        help="The env's model registry: versions, aliases, tags, promotion to another env.",
        no_args_is_help=True,
    )
    models.command("list")(list_versions)
    models.command()(show)
    models.command()(compare)
    models.command()(alias)
    models.command()(tag)
    models.command()(promote)
    app.add_typer(models, name="models")
