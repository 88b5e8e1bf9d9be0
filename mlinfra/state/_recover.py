"""`mlinfra state recover`: put a good copy of state.db back, keeping the one it replaces.

Plan first (what is wrong, what would be restored), then restore: the copy is made and checked
beside the state before anything moves, the current file and its -wal/-shm are renamed aside
(never deleted), and the copy is renamed into place.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import StateError, StateLockedError
from ._backup import BACKUP_DIR, StateBackup, copy_database, list_backups
from ._integrity import check_database, is_damage, open_read_only
from ._model import UpdateRecord
from ._sqlite import SCHEMA_VERSION, UPDATE_SELECT, holder_alive, update_record

__all__ = [
    "Recovery",
    "RecoveryPlan",
    "StateFile",
    "inspect_state_file",
    "plan_recovery",
    "recover",
]

STATE_FILE = "state.db"
_SIDECARS = ("-wal", "-shm")


@dataclass(frozen=True)
class StateFile:
    """What a state file holds, read without changing it."""

    path: Path
    problem: str | None
    """Why it cannot be used ("missing", "empty (0 bytes)", SQLite's finding), None if sound."""
    resources: dict[str, int]
    """Resources per stack."""
    last_update: UpdateRecord | None
    """The newest update it records; in an automatic backup, the one it was taken before."""


@dataclass(frozen=True)
class RecoveryPlan:
    current: StateFile
    source: StateFile | None
    """What would be restored; None when the state is sound and no file was asked for."""
    backup: StateBackup | None
    """The automatic backup `source` is, if it is one."""

    @property
    def taken_at(self) -> datetime | None:
        """When the restored copy was made: the backup's time, else the file's."""
        if self.backup is not None:
            return self.backup.taken_at
        if self.source is None:
            return None
        return datetime.fromtimestamp(self.source.path.stat().st_mtime).astimezone()


@dataclass(frozen=True)
class Recovery:
    plan: RecoveryPlan
    moved_aside: list[Path]
    """Where the replaced state.db (and its -wal, -shm) now are; empty if it was missing."""


def inspect_state_file(path: Path) -> StateFile:
    """Check `path` (SQLite's quick_check) and count what it holds, opened read-only."""
    if not path.is_file():
        return StateFile(path, "missing", {}, None)
    if path.stat().st_size == 0:
        return StateFile(path, "empty (0 bytes)", {}, None)
    try:
        with open_read_only(path) as db:
            problem = check_database(db)
            if problem is not None:
                return StateFile(path, f"damaged (SQLite: {problem})", {}, None)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if version > SCHEMA_VERSION or not {"resources", "updates"} <= tables:
                return StateFile(path, "not a state of this mlinfra", {}, None)
            counts = db.execute("SELECT stack, COUNT(*) FROM resources GROUP BY stack")
            last = db.execute(f"{UPDATE_SELECT} ORDER BY id DESC LIMIT 1").fetchone()
            return StateFile(path, None, dict(counts.fetchall()), last and update_record(last))
    except sqlite3.DatabaseError as exc:
        return StateFile(path, f"{'damaged' if is_damage(exc) else 'unreadable'} ({exc})", {}, None)


def plan_recovery(state_dir: Path, *, source: Path | None = None) -> RecoveryPlan:
    """What `recover` would do: restore `source`, else (only if the state is not sound) the
    newest backup that passes its check."""
    current = inspect_state_file(state_dir / STATE_FILE)
    _refuse_live_locks(current.path)
    if source is not None:
        source = source.absolute()
        chosen = inspect_state_file(source)
        if chosen.problem is not None:
            raise StateError(f"cannot restore {source}: it is {chosen.problem}")
        matching = [b for b in list_backups(state_dir) if b.path.resolve() == source.resolve()]
        return RecoveryPlan(current, chosen, matching[0] if matching else None)
    if current.problem is None:
        return RecoveryPlan(current, None, None)
    for backup in reversed(list_backups(state_dir)):
        found = inspect_state_file(backup.path)
        if found.problem is None:
            return RecoveryPlan(current, found, backup)
    raise StateError(
        f"{current.path} is {current.problem}, and {state_dir / BACKUP_DIR} holds no good backup "
        "to restore; restore a copy of your own with `mlinfra state recover --from FILE`"
    )


def recover(plan: RecoveryPlan) -> Recovery:
    """Restore `plan.source` as the state; the file it replaces is renamed aside, not deleted."""
    if plan.source is None:
        raise StateError(f"{plan.current.path} is sound; nothing to restore")
    state = plan.current.path
    _refuse_live_locks(state)  # again: a run may have started while the user was asked
    partial = state.with_name(f".{state.name}.restoring.partial")
    try:
        with open_read_only(plan.source.path) as db:
            problem = copy_database(db, partial)
        if problem is not None:
            raise StateError(f"cannot restore {plan.source.path}: its copy is damaged ({problem})")
        _settle(partial)
        moved = _move_aside(state, "damaged" if plan.current.problem else "replaced")
        os.replace(partial, state)
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot restore {plan.source.path}: {exc}") from exc
    except OSError as exc:
        raise StateError(f"cannot restore {plan.source.path} to {state}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return Recovery(plan, moved)


def _settle(copy: Path) -> None:
    """End what the copy shows under way: a backup is taken as its update begins, and after the
    restore that update (and any other then running) will never finish in it."""
    with closing(sqlite3.connect(copy, isolation_level=None)) as db:
        db.execute(
            "UPDATE updates SET result = 'interrupted', error = ? WHERE result = 'in-progress'",
            ("the state was restored from a backup taken as this update began",),
        )
        db.execute("DELETE FROM locks")


def _move_aside(state: Path, label: str) -> list[Path]:
    """Rename the state and its sidecars to `state.db.<label>-<time>[-wal|-shm]`, sidecars first
    (a -wal left beside the restored file would be replayed into it); SQLite opens the renamed
    file with its own -wal still."""
    stamp = f"{state.name}.{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    aside = state.with_name(stamp)
    count = 1
    while any(Path(f"{aside}{suffix}").exists() for suffix in (*_SIDECARS, "")):
        count += 1  # two recoveries within a second: never rename onto the first one's file
        aside = state.with_name(f"{stamp}-{count}")
    moved = []
    for suffix in (*_SIDECARS, ""):
        current = Path(f"{state}{suffix}")
        if current.exists():
            target = Path(f"{aside}{suffix}")
            os.replace(current, target)
            moved.append(target)
    return moved[::-1]


def _refuse_live_locks(state: Path) -> None:
    """Refuse while a run holds a lock in the state it would replace (if the locks are readable)."""
    if not state.is_file() or state.stat().st_size == 0:
        return
    try:
        with open_read_only(state) as db:
            rows = db.execute("SELECT stack, pid, started_at, host, command FROM locks").fetchall()
    except sqlite3.DatabaseError:
        return
    for stack, pid, started_at, host, command in rows:
        if holder_alive(pid, started_at, host):
            raise StateLockedError(
                f"stack {stack!r} is locked by `{command}` (pid {pid} on {host}); let it finish "
                "before restoring the state"
            )
