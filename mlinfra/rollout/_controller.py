"""Deploy, promote, abort and roll back: every change of what an env serves goes through here.

Each change is a transition: (1) check the new version loads (sha256, trusted types, schema);
(2) record the alias moves it owes in `pending.json`; (3) write the deployment table and wait
until every server worker has loaded it, or put the old table back if one refused; (4) move the
registry aliases, save the rollout record, append to the history. A crash after (2) is finished
by the next command, or by the next driver of the rollout.

Whether a version may be released at all is decided before, by the caller
(`mlinfra.evaluation.check_release`, which reads the env's gates from mlinfra.toml); the
`Clearance` it gives is checked against the version, kept with the rollout, and an override in
it is named in the alias moves it leads to.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError as PydanticValidationError

from .._code_paths import put_first_on_path, recorded_code_paths
from .._process import ProcessIdentity
from ..errors import (
    ConfigError,
    DeploymentError,
    MlinfraError,
    RolloutConflictError,
    StateLockedError,
    ValidationError,
)
from ..evaluation import Clearance
from ..serving import (
    Deployment,
    WorkerAck,
    deployment_dir,
    read_acks,
    read_deployment,
    write_deployment,
)
from ._model import AnalysisPolicy, Rollout, StepResult, check_interval, check_step_count
from ._store import AliasMove, Pending, RolloutStore

__all__ = [
    "Target",
    "abort",
    "active_rollout",
    "advance",
    "begin",
    "claim",
    "pause",
    "promote",
    "recover",
    "reopen",
    "rollback",
    "switch",
    "watched_by",
]

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True, kw_only=True)
class Target:
    """An env's serving endpoint and the registry beside it; everything a rollout acts on."""

    registry: Path
    env: str
    url: str
    token: str | None = None
    load_timeout: float = 60.0  # for every worker to load a new generation

    @property
    def directory(self) -> Path:
        return deployment_dir(self.registry, self.env)

    @property
    def store(self) -> RolloutStore:
        return RolloutStore(self.directory)


def _actor(actor: str | None) -> str:
    from ..registry import current_user

    return actor or current_user()


# --- the transition every change goes through ----------------------------------------------


def switch(
    target: Target,
    *,
    model: str,
    stable: int,
    canary: int | None = None,
    weight: int = 0,
    mode: Literal["split", "shadow"] = "split",
    sticky_header: str | None = None,
    moves: list[AliasMove],
    event: dict[str, Any],
    actor: str,
    rollout: Rollout | None = None,
) -> Deployment:
    """Serve a new table, then move aliases and record it (and `rollout`, the rollout record as
    it stands once the table is served); called with the store locked."""
    store = target.store
    previous = read_deployment(target.directory)
    generation = (previous.generation if previous else 0) + 1
    table = Deployment(
        env=target.env,
        model=model,
        generation=generation,
        stable=stable,
        canary=canary,
        canary_weight=weight if canary is not None else 0,
        mode=mode,
        sticky_header=sticky_header,
    )
    store.set_pending(
        Pending(
            model=model,
            generation=generation,
            moves=moves,
            event=event,
            actor=actor,
            previous=previous,
            rollout=rollout,
        )
    )
    write_deployment(target.directory, table)
    refusal = _await_workers(target, generation)
    if refusal is not None:
        keeps = _put_back(target, previous, generation)
        error = ValidationError if refusal.refused else DeploymentError
        raise error(f"the server refused the change: {refusal.error}; {keeps}")
    _finish(target, store.pending())
    return table


def _put_back(target: Target, previous: Deployment | None, refused: int) -> str:
    """Serve `previous` again after generation `refused` was refused; says what serves now."""
    target.store.set_pending(None)
    if previous is None:
        (target.directory / "deployment.json").unlink(missing_ok=True)
        return "nothing was deployed before"
    write_deployment(target.directory, previous.model_copy(update={"generation": refused + 1}))
    _await_workers(target, refused + 1)
    return f"v{previous.stable} keeps serving"


def _await_workers(target: Target, generation: int) -> WorkerAck | None:
    """Wait until every live worker serves `generation`; the first refusal, if any."""
    deadline = time.monotonic() + target.load_timeout
    while True:
        acks = read_acks(target.directory)
        refused = [ack for ack in acks if ack.failed == generation]
        if refused:
            return refused[0]
        if all(ack.settled(generation) for ack in acks):
            return None  # also when no server runs: it reads the table when it starts
        if time.monotonic() > deadline:
            late = [ack.pid for ack in acks if not ack.settled(generation)]
            return WorkerAck(
                pid=late[0],
                failed=generation,
                error=f"workers {late} did not load it within {target.load_timeout:.0f} s",
            )
        time.sleep(0.05)


def _finish(target: Target, pending: Pending | None) -> None:
    """Make the alias moves and history entry a served table owes (idempotent)."""
    if pending is None:
        return
    table = read_deployment(target.directory)
    if table is None or table.generation < pending.generation:
        target.store.set_pending(None)  # the table was never written: nothing is owed
        return
    from ..registry import Registry

    with Registry.open(target.registry) as registry:
        aliases = registry.aliases(pending.model, env=target.env)
        for move in pending.moves:
            if aliases.get(move.alias) == move.version:
                continue
            if move.version is None:
                registry.remove_alias(
                    pending.model,
                    move.alias,
                    env=target.env,
                    reason=move.reason,
                    actor=pending.actor,
                )
            else:
                registry.set_alias(
                    pending.model,
                    move.alias,
                    move.version,
                    env=target.env,
                    reason=move.reason,
                    actor=pending.actor,
                )
    if pending.rollout is not None:
        target.store.save(pending.rollout)
    target.store.record({**pending.event, "generation": pending.generation, "actor": pending.actor})
    target.store.set_pending(None)


def recover(target: Target) -> None:
    """Finish a transition a crashed command left half done; called with the store locked.

    If the server refused the table it was writing, the previous one is put back instead.
    """
    pending = target.store.pending()
    if pending is not None and any(
        ack.failed == pending.generation for ack in read_acks(target.directory)
    ):
        table = read_deployment(target.directory)
        if table is not None and table.generation == pending.generation:
            _put_back(target, pending.previous, pending.generation)
            return
    _finish(target, pending)


# --- commands --------------------------------------------------------------------------------


def _verified(target: Target, model: str | None, ref: str) -> tuple[str, int]:
    """Resolve `ref` and check it can be served: it has a schema, and its artifact loads.

    A running server loads (and so checks sha256 and trusted types of) every version it is
    given, and refuses bad ones; only with no server up is the load tried here, as it costs the
    seconds of importing scikit-learn and skops.
    """
    from ..registry import Registry

    with Registry.open(target.registry) as registry:
        name = model or _only_model(registry.models(), read_deployment(target.directory))
        version = registry.resolve(name, ref, env=target.env)
        if registry.schema(version) is None:
            raise DeploymentError(f"{version.ref} has no stored input schema; it cannot be served")
        if not read_acks(target.directory):
            put_first_on_path(recorded_code_paths(target.directory))  # the project's classes
            registry.load(version)
    return name, version.version


def _only_model(models: list[str], table: Deployment | None) -> str:
    if table is not None:
        return table.model
    if len(models) == 1:
        return models[0]
    if not models:
        raise ConfigError("the registry holds no model yet; run `mlinfra train` first")
    raise ConfigError(f"the registry holds several models ({', '.join(models)}); pass --model")


def begin(
    target: Target,
    ref: str,
    *,
    model: str | None = None,
    steps: tuple[int, ...] | None = None,
    interval_seconds: float = 30.0,
    policy: AnalysisPolicy | None = None,
    mode: Literal["split", "shadow"] = "split",
    sticky_header: str | None = None,
    actor: str | None = None,
    clearance: Clearance | None = None,
) -> Rollout | Deployment:
    """Serve version `ref` at once (no steps, or nothing served yet), or start a canary rollout
    at its first step; returns the new table, or the started rollout.

    `clearance` (for this version in this env) is recorded with the deploy or the rollout.
    """
    actor = _actor(actor)
    store = target.store
    with store.locked():
        recover(target)
        current = store.rollout()
        if current is not None and current.active:
            raise RolloutConflictError(
                f"a rollout of {current.model} v{current.canary} is in progress in env "
                f"{target.env!r}; run `mlinfra promote` or `mlinfra abort` first"
            )
        name, version = _verified(target, model, ref)
        _check_clearance(clearance, target, name, version)
        table = read_deployment(target.directory)
        serving = table.stable if table is not None and table.model == name else None
        if table is not None and serving == version and _served(target, table):
            return table  # nothing to do
        if steps is None or serving is None or serving == version:
            why = "deployed directly" if serving != version else _REAPPLIED
            why += _note(clearance)
            event = {"action": "deploy", "model": name, "from": serving, "to": version}
            if clearance is not None:
                event["gates"] = clearance.grounds
            return switch(
                target,
                model=name,
                stable=version,
                moves=[
                    AliasMove(alias=CHAMPION, version=version, reason=why),
                    AliasMove(alias=CHALLENGER, version=None, reason=why),
                ],
                event=event,
                actor=actor,
            )
        check_interval(interval_seconds)
        check_step_count(steps)
        try:
            rollout = Rollout(
                id=f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
                env=target.env,
                model=name,
                stable=serving,
                canary=version,
                steps=steps,
                interval_seconds=interval_seconds,
                policy=policy or AnalysisPolicy(),
                mode=mode,
                sticky_header=sticky_header,
                actor=actor,
                clearance=clearance,
            )
        except PydanticValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(part) for part in problem["loc"])
            raise ConfigError(f"rollout {field}: {problem['msg']}") from None
        _serve_step(target, rollout, reason=f"canary at {rollout.weight}%")
        return rollout


_REAPPLIED = "deployed again: a server worker was not serving it"


def _served(target: Target, table: Deployment) -> bool:
    """Whether every live server worker serves `table` (true with no server up: it reads the
    table when it starts). A worker that refused it, say because its artifact was missing when
    the server restarted, is not."""
    return all(ack.serving == table.generation for ack in read_acks(target.directory))


def _check_clearance(clearance: Clearance | None, target: Target, model: str, version: int) -> None:
    """A clearance speaks for one version in one env, judged against the champion of the time;
    refuse one given for another, or one whose champion has moved since (a concurrent deploy)."""
    if clearance is None:
        return
    if (clearance.model, clearance.version, clearance.env) != (model, version, target.env):
        raise DeploymentError(
            f"the gate clearance is for {clearance.model} v{clearance.version} in env "
            f"{clearance.env!r}, not {model} v{version} in env {target.env!r}; check it again"
        )
    if not clearance.gates:
        return
    from ..registry import Registry

    with Registry.open(target.registry) as registry:
        champion = registry.aliases(model, env=target.env).get(CHAMPION)
    if champion != clearance.against:
        now, then = (
            "none" if number is None else f"v{number}" for number in (champion, clearance.against)
        )
        raise DeploymentError(
            f"the champion of env {target.env!r} is {now} now, but v{version}'s gates were "
            f"checked against {then}; run the command again to check them against {now}"
        )


def _note(clearance: Clearance | None) -> str:
    return "" if clearance is None else clearance.note


def _serve_step(target: Target, rollout: Rollout, *, reason: str) -> None:
    switch(
        target,
        model=rollout.model,
        stable=rollout.stable or rollout.canary,
        canary=rollout.canary,
        weight=0 if rollout.mode == "shadow" else rollout.weight,
        mode=rollout.mode,
        sticky_header=rollout.sticky_header,
        rollout=rollout,
        moves=[
            AliasMove(
                alias=CHALLENGER, version=rollout.canary, reason=reason + _note(rollout.clearance)
            )
        ],
        event={
            "action": "step",
            "rollout": rollout.id,
            "model": rollout.model,
            "canary": rollout.canary,
            "weight": rollout.weight,
            "mode": rollout.mode,
        },
        actor=rollout.actor,
    )


def advance(target: Target, rollout_id: str, result: StepResult) -> Rollout:
    """Record a step's verdict and act on it: next weight, promotion, or abort."""
    store = target.store
    with store.locked():
        rollout = active_rollout(store, rollout_id)
        rollout.results.append(result)
        if result.verdict == "fail":
            return _end(target, rollout, "aborted", "; ".join(result.reasons))
        if result.verdict == "inconclusive":
            reasons = "; ".join(result.reasons)
            return _pause(store, rollout, f"inconclusive at {rollout.weight}%: {reasons}")
        if rollout.step == len(rollout.steps) - 1:
            return _end(target, rollout, "promoted", "analysis passed at every step")
        rollout.step += 1
        _serve_step(target, rollout, reason=f"canary at {rollout.weight}%")
        return rollout


def pause(target: Target, rollout_id: str, reason: str) -> Rollout:
    """Hold the running rollout at its current weight until a person resumes, promotes or
    aborts it."""
    with target.store.locked():
        recover(target)
        return _pause(target.store, active_rollout(target.store, rollout_id), reason)


def _pause(store: RolloutStore, rollout: Rollout, reason: str) -> Rollout:
    rollout.phase = "paused"
    rollout.reason = f"{reason}; run `mlinfra rollout resume`, `mlinfra promote` or `mlinfra abort`"
    _release(rollout)
    store.save(rollout)
    return rollout


def _release(rollout: Rollout) -> None:
    """No one drives the rollout any more; a driver that died instead leaves its mark."""
    rollout.controller_pid = rollout.controller_started = rollout.watchdog = None


def claim(target: Target, me: ProcessIdentity) -> Rollout:
    """Record `me` as the driver of the env's rollout; called holding the controller lock, so
    a driver recorded before is dead, and this one takes over from it (a restart)."""
    with target.store.locked():
        recover(target)
        rollout = active_rollout(target.store)
        if rollout.phase != "progressing":
            return rollout  # paused: nothing to drive until someone resumes it
        if rollout.controller_pid is not None:
            rollout.driver_restarts += 1
        rollout.controller_pid, rollout.controller_started = me.pid, me.started
        target.store.save(rollout)
        return rollout


def watched_by(target: Target, watchdog: ProcessIdentity) -> None:
    """Record the watchdog that restarts the env's detached driver (and that destroy stops)."""
    with target.store.locked():
        rollout = target.store.rollout()
        if rollout is not None and rollout.phase == "progressing":
            rollout.watchdog = watchdog
            target.store.save(rollout)


def reopen(target: Target, *, actor: str | None = None) -> Rollout:
    """Make the env's paused or driverless rollout progressing again, for a new driver to take
    on at the step where it stands (in the window a dead driver left open, or a new one after a
    pause); refused while a driver or its watchdog is alive."""
    store = target.store
    with store.locked():
        recover(target)
        rollout = active_rollout(store)
        for process in (rollout.controller, rollout.watchdog):
            if rollout.phase == "progressing" and process is not None and process.alive():
                raise StateLockedError(
                    f"rollout {rollout.id} is being driven (pid {process.pid}); "
                    "see `mlinfra rollout status`"
                )
        if rollout.phase == "paused":
            was = rollout.reason
            store.drop_window()  # a person asked for another go: the step gets a new window
        else:
            was = "its driver had died"
        rollout.phase, rollout.reason, rollout.watchdog = "progressing", None, None
        store.save(rollout)
        store.record(
            {
                "action": "resume",
                "rollout": rollout.id,
                "model": rollout.model,
                "canary": rollout.canary,
                "weight": rollout.weight,
                "reason": was,
                "actor": _actor(actor),
            }
        )
        return rollout


def active_rollout(store: RolloutStore, rollout_id: str | None = None) -> Rollout:
    rollout = store.rollout()
    if rollout is None or not rollout.active or (rollout_id and rollout.id != rollout_id):
        raise MlinfraError("no rollout is in progress in this env; see `mlinfra rollout status`")
    return rollout


def _end(
    target: Target, rollout: Rollout, phase: Literal["promoted", "aborted"], reason: str
) -> Rollout:
    """Send all traffic to the winner and close the rollout; called with the store locked."""
    winner = rollout.canary if phase == "promoted" else rollout.stable
    if winner is None:  # only a first deploy has no stable, and a first deploy is direct
        raise DeploymentError("this rollout has no stable version to go back to")
    event = {
        "action": "promote" if phase == "promoted" else "abort",
        "rollout": rollout.id,
        "model": rollout.model,
        "from": rollout.stable,
        "to": winner,
        "reason": reason,
    }
    moves = [AliasMove(alias=CHALLENGER, version=None, reason=f"{phase}: {reason}")]
    if phase == "promoted":
        why = f"promoted: {reason}{_note(rollout.clearance)}"
        moves.insert(0, AliasMove(alias=CHAMPION, version=rollout.canary, reason=why))
    closed = rollout.model_copy(
        update={"phase": phase, "reason": reason, "finished_at": datetime.now(UTC)}
    )
    _release(closed)
    switch(
        target,
        model=rollout.model,
        stable=winner,
        moves=moves,
        event=event,
        actor=rollout.actor,
        rollout=closed,
    )
    return closed


def promote(
    target: Target,
    *,
    reason: str = "promoted by hand",
    actor: str | None = None,
    clearance: Clearance | None = None,
) -> Rollout:
    """End the running rollout now, with the canary taking all traffic.

    `clearance`, checked again for the canary just now, replaces the one it started with.
    """
    with target.store.locked():
        recover(target)
        rollout = active_rollout(target.store)
        _check_clearance(clearance, target, rollout.model, rollout.canary)
        rollout.actor = _actor(actor)
        if clearance is not None:
            rollout.clearance = clearance
        return _end(target, rollout, "promoted", reason)


def abort(target: Target, *, reason: str = "aborted by hand", actor: str | None = None) -> Rollout:
    """End the running rollout now, with all traffic back on stable."""
    with target.store.locked():
        recover(target)
        rollout = active_rollout(target.store)
        rollout.actor = _actor(actor)
        return _end(target, rollout, "aborted", reason)


def rollback(
    target: Target, *, to: str | None = None, reason: str | None = None, actor: str | None = None
) -> Deployment:
    """Serve the previous champion (or `to`) at once; a running rollout is aborted first."""
    actor = _actor(actor)
    store = target.store
    with store.locked():
        recover(target)
        table = _deployed(target)
        # Where to go is settled first: a rollback that cannot happen leaves a canary running.
        ref = to if to is not None else str(_previous_champion(target, table))
        name, version = _verified(target, table.model, ref)
        rollout = store.rollout()
        if rollout is not None and rollout.active:
            rollout.actor = actor
            _end(target, rollout, "aborted", reason or "rollback")
            table = _deployed(target)
        if version == table.stable and _served(target, table):
            return table  # nothing to do
        why = reason or (
            f"rollback from v{table.stable}" if version != table.stable else _REAPPLIED
        )
        return switch(
            target,
            model=name,
            stable=version,
            moves=[AliasMove(alias=CHAMPION, version=version, reason=why)],
            event={"action": "rollback", "model": name, "from": table.stable, "to": version},
            actor=actor,
        )


def rollback_version(target: Target) -> int:
    """The version `rollback` would serve: the champion before the one serving now
    (DeploymentError when nothing is deployed, or nothing was champion before)."""
    return _previous_champion(target, _deployed(target))


def _deployed(target: Target) -> Deployment:
    table = read_deployment(target.directory)
    if table is None:
        raise DeploymentError(f"nothing is deployed in env {target.env!r}; nothing to roll back")
    return table


def _previous_champion(target: Target, table: Deployment) -> int:
    """The version that was champion before the one serving now, from the registry's audit trail."""
    from ..registry import Registry

    with Registry.open(target.registry) as registry:
        events = registry.alias_history(table.model, env=target.env, alias=CHAMPION)
    for event in reversed(events):
        if event.to_version == table.stable and event.from_version is not None:
            return event.from_version
    raise DeploymentError(
        f"no earlier champion of {table.model} in env {target.env!r} to roll back to; "
        "pass --to VERSION"
    )
