"""Backups of state.db, one before each update, in `<state_dir>/backups/` (0700, files 0600).

Each is a consistent copy made with SQLite's online backup API (safe beside WAL writers) and
checked before it is kept, so a damaged state is stopped at the next update instead of pushing
the good backups out. The newest `KEEP_BACKUPS` are kept.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._integrity import check_database, damaged_error

__all__ = [
    "BACKUP_DIR",
    "KEEP_BACKUPS",
    "RECOVER_HINT",
    "StateBackup",
    "copy_database",
    "list_backups",
    "write_backup",
]

BACKUP_DIR = "backups"
KEEP_BACKUPS = 10
RECOVER_HINT = "run `mlinfra state recover` to restore the newest good backup"
_STAMP = "%Y%m%d-%H%M%S"
_NAME = re.compile(r"^state-(\d{8}-\d{6})-(\d+)\.db$")


@dataclass(frozen=True)
class StateBackup:
    """One backup file, as its name describes it: when it was taken, before which update."""

    path: Path
    taken_at: datetime
    update_id: int


def list_backups(state_dir: Path) -> list[StateBackup]:
    """The backups in `state_dir`, oldest first; files not named like a backup are ignored."""
    found = []
    for path in (state_dir / BACKUP_DIR).glob("state-*.db"):
        match = _NAME.match(path.name)
        if match:
            taken_at = datetime.strptime(match[1], _STAMP).astimezone()
            found.append(StateBackup(path=path, taken_at=taken_at, update_id=int(match[2])))
    return sorted(found, key=lambda backup: (backup.taken_at, backup.update_id))


def copy_database(db: sqlite3.Connection, target: Path) -> str | None:
    """Copy the open `db` into a new file `target` (0600) with SQLite's backup API, consistent
    even beside writers; returns what checking the copy found (None: sound)."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    with closing(sqlite3.connect(target, isolation_level=None)) as copy:
        db.backup(copy)
        # A standalone file, no -wal beside it: a backup or a restore is always one whole file.
        copy.execute("PRAGMA journal_mode=DELETE")
        return check_database(copy)


def write_backup(
    db: sqlite3.Connection,
    state_dir: Path,
    *,
    update_id: int,
    source: Path,
) -> StateBackup:
    """Copy the open state `db` (the file `source`) into a new backup, and drop the oldest
    beyond `KEEP_BACKUPS`; a copy that fails its check is deleted, and the state refused."""
    folder = state_dir / BACKUP_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime(_STAMP)
    path = folder / f"state-{stamp}-{update_id}.db"
    partial = folder / f".{path.name}.partial"
    try:
        problem = copy_database(db, partial)
        if problem is not None:
            raise damaged_error(source, problem, RECOVER_HINT)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    for old in list_backups(state_dir)[:-KEEP_BACKUPS]:
        old.path.unlink(missing_ok=True)
    taken_at = datetime.strptime(stamp, _STAMP).astimezone()
    return StateBackup(path=path, taken_at=taken_at, update_id=update_id)
