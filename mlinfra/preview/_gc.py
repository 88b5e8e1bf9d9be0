"""Which branch envs exist and how they are, and `gc`: destroying the expired ones."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MlinfraError
from ..state import BranchEnvRecord
from ._clock import now
from ._environments import of_record, state_of

if TYPE_CHECKING:
    from ..config import Project

__all__ = ["BranchEnvStatus", "Collected", "branch_envs", "collect_garbage"]


@dataclass(frozen=True)
class BranchEnvStatus:
    """A branch env's record and how it is now, as `mlinfra envs` shows it."""

    record: BranchEnvRecord
    status: str
    """up, locked (a run holds it), down (nothing up: its up failed), or kept (destroyed
    without --delete-data: its data is still there)"""
    url: str | None
    at: float
    """when it was looked at, by mlinfra.preview's clock"""

    @property
    def age_seconds(self) -> float:
        return self.at - self.record.created_at

    @property
    def idle_seconds(self) -> float:
        return self.at - self.record.updated_at

    def expired(self, older_than: float | None = None) -> bool:
        return self.record.expires_at(older_than) <= self.at

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.record.stack,
            **{key: value for key, value in asdict(self.record).items() if key != "stack"},
            "status": self.status,
            "url": self.url,
            "age_seconds": round(self.age_seconds, 3),
            "idle_seconds": round(self.idle_seconds, 3),
            "expires_at": self.record.expires_at(),
            "expired": self.expired(),
        }


@dataclass(frozen=True)
class Collected:
    """What `gc` did with one expired branch env: destroyed, would destroy (--dry-run), or
    failed (with the error, and the exit code it stands for)."""

    env: BranchEnvStatus
    outcome: str
    deleted: int = 0
    error: str = ""
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.env.record.stack,
            "branch": self.env.record.branch,
            "base": self.env.record.base,
            "idle_seconds": round(self.env.idle_seconds, 3),
            "outcome": self.outcome,
            "deleted": self.deleted,
            "error": self.error,
        }


def branch_env_names(project: Project) -> list[str]:
    """Every branch env recorded in the project's state, oldest first, by its stack name."""
    with state_of(project) as store:
        records = store.branch_envs()
    return [record.stack for record in sorted(records, key=lambda known: known.created_at)]


def branch_envs(project: Project) -> list[BranchEnvStatus]:
    """Every branch env recorded in the project's state, oldest first."""
    from ..engine import open_engine
    from ..state import plain

    at = now()
    with state_of(project) as store:
        records = store.branch_envs()
    found = []
    for record in sorted(records, key=lambda known: known.created_at):
        engine = open_engine(of_record(project, record))
        try:
            outputs = plain(engine.outputs())
            if engine.lock_holder() is not None:
                status = "locked"
            elif outputs:
                status = "up"
            elif engine.kept():
                status = "kept"
            else:
                status = "down"
        finally:
            engine.close()
        url = outputs.get("serving_url")
        found.append(BranchEnvStatus(record, status, url if isinstance(url, str) else None, at))
    return found


def collect_garbage(
    project: Project,
    *,
    older_than: float | None = None,
    dry_run: bool = False,
    only: Collection[str] | None = None,
) -> list[Collected]:
    """Destroy every expired branch env (of those named in `only`, if given: the ones a user
    confirmed), data and all (they are previews): idle for longer than its TTL, or than
    `older_than`. One that cannot be destroyed is reported, and the others are still tried."""
    from ..engine import open_engine

    done = []
    for found in branch_envs(project):
        if not found.expired(older_than) or (only is not None and found.record.stack not in only):
            continue
        if dry_run:
            done.append(Collected(found, "would destroy"))
            continue
        engine = open_engine(of_record(project, found.record))
        try:
            result = engine.destroy(delete_data=True)
            left = len(engine.resources()) + len(engine.kept())
        except MlinfraError as exc:
            done.append(Collected(found, "failed", error=str(exc), exit_code=exc.exit_code))
            continue
        finally:
            engine.close()
        if left:
            error = f"{left} resource(s) were left after the destroy"
            done.append(Collected(found, "failed", error=error, exit_code=MlinfraError.exit_code))
        else:
            deleted = result.counts.get("delete", 0)
            done.append(Collected(found, "destroyed", deleted=deleted))
    return done
