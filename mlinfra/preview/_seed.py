"""Seeding a new branch env with its base env's champion, so that its first gates compare a
branch's model with what the base env serves (`f1 >= champion - 0.01`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MlinfraError

if TYPE_CHECKING:
    from ..config import Environment

__all__ = ["seed_champions"]


def seed_champions(env: Environment, registry_path: Path) -> tuple[dict[str, int], list[str]]:
    """Copy each champion of the base env into the branch env's registry (artifact verified,
    reports along) and make it the champion there; model -> base version copied, and what to
    tell the user. A base env that is not up has nothing to give: said, not an error."""
    from ..engine import open_engine
    from ..registry import Registry, copy_version
    from ..state import plain

    base = env.project.environment(env.base)
    engine = open_engine(base)
    try:
        source_path = plain(engine.outputs()).get("registry_path")
    finally:
        engine.close()
    if not source_path:
        return {}, [
            f"env {base.name} is not up: nothing to seed {env.name} with; its gates compare "
            "with no champion until its first deploy"
        ]
    seeded: dict[str, int] = {}
    notes = []
    try:
        with Registry.open(source_path) as source, Registry.open(registry_path) as target:
            for model in source.models():
                number = source.aliases(model, env=base.name).get("champion")
                if number is None:
                    continue
                copied = copy_version(
                    source,
                    target,
                    source.get(model, number),
                    source_env=base.name,
                    target_env=env.name,
                )
                target.set_alias(
                    model,
                    "champion",
                    copied.version.version,
                    env=env.name,
                    reason=f"seeded from env {base.name}'s champion v{number}",
                )
                seeded[model] = number
                notes.append(
                    f"seeded {model} champion: v{copied.version.version} here is "
                    f"{base.name}'s champion v{number}"
                )
    except MlinfraError as exc:
        return seeded, [f"could not seed from env {base.name}'s registry: {exc}"]
    if not notes:
        notes.append(f"env {base.name} has no champion yet: nothing to seed {env.name} with")
    return seeded, notes
