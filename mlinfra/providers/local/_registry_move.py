"""Moving an env's registry: what a registry holds, in words, and the move itself (every version
copied, this env's aliases and deployment files renumbered), leaving the old registry as it was.

A move is idempotent (`copy_version` copies a version once, aliases already in place are not
moved again), so one cut off by a crash is finished by the next `mlinfra up`.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DeploymentError, RolloutConflictError
from ...registry import DATABASE_FILE, Registry, copy_version, same_registry
from ...serving import deployment_dir, read_deployment, write_deployment

__all__ = ["describe_versions", "move_registry", "versions_in"]

Numbers = dict[str, dict[int, int]]
"""For each model, the number every version of the old registry has in the new one."""

_SHOWN_MODELS = 3
_SHOWN_RANGES = 3


def versions_in(root: Path) -> dict[str, list[int]]:
    """Version numbers by model in the registry at `root`; empty when there is none."""
    if not (root / DATABASE_FILE).is_file():
        return {}
    with Registry.open(root) as registry:
        found: dict[str, list[int]] = {}
        for summary in registry.summaries():
            found.setdefault(summary.model, []).append(summary.version)
    return found


def describe_versions(versions: dict[str, list[int]]) -> str:
    """ "5 model versions (iris v1-v5)", naming a few models and ranges."""
    total = sum(len(numbers) for numbers in versions.values())
    models = [f"{model} {_ranges(numbers)}" for model, numbers in sorted(versions.items())]
    hidden = len(models) - _SHOWN_MODELS
    if hidden > 0:
        models[_SHOWN_MODELS:] = [f"{hidden} more model" + ("s" if hidden > 1 else "")]
    noun = "model version" if total == 1 else "model versions"
    return f"{total} {noun} ({', '.join(models)})"


def _ranges(numbers: list[int]) -> str:
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    shown = [f"v{run[0]}" if len(run) == 1 else f"v{run[0]}-v{run[-1]}" for run in runs]
    if len(shown) > _SHOWN_RANGES:
        shown[_SHOWN_RANGES:] = ["..."]
    return ", ".join(shown)


def move_registry(source: Path, target: Path, *, env: str | None) -> Numbers:
    """Copy every version of the registry at `source` into the (initialized) one at `target`,
    then the aliases and deployment files of `env` (of every env when None), renumbered.

    Refused while a rollout is in progress or a deployment change is half done in such an env.
    """
    if not (source / DATABASE_FILE).is_file():
        return {}
    with Registry.open(source) as old, Registry.open(target) as new:
        if same_registry(old, new):
            return {}
        envs = [env] if env is not None else _envs_of(old)
        for name in envs:
            _refuse_while_changing(deployment_dir(source, name), name)
        numbers: Numbers = {}
        for version in sorted(old.list_versions(), key=lambda v: (v.model, v.version)):
            moved = copy_version(old, new, version, source_env=version.env, target_env=version.env)
            numbers.setdefault(version.model, {})[version.version] = moved.version.version
        for name in envs:
            _move_aliases(old, new, name, numbers)
            _move_deployment(source, target, name, numbers)
    return numbers


def _envs_of(registry: Registry) -> list[str]:
    """Every env that has aliases or deployment files in the registry."""
    envs = {event.env for model in registry.models() for event in registry.alias_history(model)}
    serving = Path(registry.root) / "serving"
    if serving.is_dir():
        envs |= {entry.name for entry in serving.iterdir() if entry.is_dir()}
    return sorted(envs)


def _refuse_while_changing(directory: Path, env: str) -> None:
    from ...rollout._store import RolloutStore

    store = RolloutStore(directory)
    rollout = store.rollout()
    if rollout is not None and rollout.active:
        raise RolloutConflictError(
            f"a rollout of {rollout.model} v{rollout.canary} is in progress in env {env!r}; "
            "run `mlinfra promote` or `mlinfra abort` first, then `mlinfra up` moves the registry"
        )
    if store.pending() is not None:
        raise DeploymentError(
            f"a deployment change in env {env!r} was cut off half done; the next `mlinfra "
            "deploy`, `promote`, `abort` or `rollback` finishes it: run one, then `mlinfra up`"
        )


def _move_aliases(old: Registry, new: Registry, env: str, numbers: Numbers) -> None:
    """Point the env's aliases in `new` where they point in `old`; drop the ones `old` lacks."""
    reason = f"env {env} moved from the registry at {old.root}"
    for model in sorted(set(old.models()) | set(new.models())):
        before = old.aliases(model, env=env)
        after = new.aliases(model, env=env)
        for alias, number in before.items():
            renumbered = _renumbered(numbers, model, number, old)
            if after.get(alias) != renumbered:
                new.set_alias(
                    model, alias, renumbered, env=env, reason=f"{reason} (v{number} there)"
                )
        for alias in sorted(set(after) - set(before)):
            new.remove_alias(model, alias, env=env, reason=f"{reason}, where it had no {alias}")


def _move_deployment(source: Path, target: Path, env: str, numbers: Numbers) -> None:
    """The env's deployment table (renumbered), its latest rollout and its history."""
    from ...rollout._store import RolloutStore

    here, there = deployment_dir(source, env), deployment_dir(target, env)
    if not here.is_dir():
        return
    old_store, new_store = RolloutStore(here), RolloutStore(there)
    with old_store.locked(), new_store.locked():
        _refuse_while_changing(here, env)  # again, now that no command can start one
        table = read_deployment(here)
        if table is not None:
            existing = read_deployment(there)
            generation = max(table.generation, existing.generation + 1 if existing else 0)
            update: dict[str, int | None] = {
                "stable": _renumbered(numbers, table.model, table.stable, source),
                "generation": generation,
            }
            if table.canary is not None:
                update["canary"] = _renumbered(numbers, table.model, table.canary, source)
            write_deployment(there, table.model_copy(update=update))
        rollout = old_store.rollout()
        if rollout is not None:
            stable = rollout.stable
            new_store.save(
                rollout.model_copy(
                    update={
                        "stable": None
                        if stable is None
                        else _renumbered(numbers, rollout.model, stable, source),
                        "canary": _renumbered(numbers, rollout.model, rollout.canary, source),
                    }
                )
            )
        # After what the target holds for this env already (an env moved back to a registry
        # it used before keeps both), each event once however often a move is retried.
        held = new_store.history()
        for event in old_store.history():
            if event not in held:
                new_store.record(event)
        new_store.record(
            {
                "action": "move",
                "from": str(source),
                "to": str(target),
                "reason": f"env {env} moved to another registry; versions renumbered",
                "versions": {model: dict(pairs) for model, pairs in numbers.items()},
            }
        )


def _renumbered(numbers: Numbers, model: str, number: int, source: Path | Registry) -> int:
    try:
        return numbers[model][number]
    except KeyError:
        where = source.root if isinstance(source, Registry) else source
        raise DeploymentError(
            f"{model} v{number} is named in the registry at {where} but is not in it; "
            "nothing was moved"
        ) from None
