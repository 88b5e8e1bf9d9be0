"""What SQLite says about a database that failed: damaged, unusable here, or a bug.

Both stores (the state and the registry) translate their SQLite errors here, so a damaged file
is always one line naming the file, SQLite's finding and the way to get the data back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from ..errors import StateError

__all__ = [
    "apply_schema",
    "check_database",
    "check_file",
    "damaged_error",
    "is_damage",
    "open_read_only",
    "translating_sqlite_errors",
]

_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_PROBLEMS_SHOWN = 3


def check_database(db: sqlite3.Connection) -> str | None:
    """SQLite's `quick_check` of an open database: what it finds wrong, None when it is sound
    (or when the check cannot run for a reason that is not damage, such as a locked file)."""
    try:
        found = [row[0] for row in db.execute(f"PRAGMA quick_check({_PROBLEMS_SHOWN})")]
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_damage(exc) else None
    if found == ["ok"]:
        return None
    # Problems come under a "*** in database main ***" heading: one schema, so it says nothing.
    text = "; ".join(
        " ".join(line.replace("*** in database main ***", "").split()) for line in found
    )
    return text.strip("; ")


def open_read_only(path: Path) -> closing[sqlite3.Connection]:
    """A connection that cannot change the file (no writes, no checkpoint), closed on exit."""
    return closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True))


def check_file(path: Path) -> str | None:
    """`check_database` of a file opened read-only, so that checking never changes it."""
    try:
        with open_read_only(path) as db:
            return check_database(db)
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_damage(exc) else None


@contextmanager
def translating_sqlite_errors(
    path: Path, remedy: str, db: sqlite3.Connection | None = None
) -> Iterator[None]:
    """Turn a failed SQLite call on `path` into a StateError: damaged (with `remedy`), or not
    usable here (disk full, I/O error, locked). Any other error is a bug and stays as it is."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        problem = check_database(db) if db is not None else check_file(path)
        if problem is not None or is_damage(exc):
            raise damaged_error(path, problem or str(exc), remedy, error=str(exc)) from exc
        if isinstance(exc, sqlite3.OperationalError):
            raise StateError(f"cannot use {path}: {exc}") from exc
        raise


def apply_schema(db: sqlite3.Connection, schema: str, version: int, *, what: str) -> None:
    """Create `schema`'s tables (inside the caller's transaction) and record `version`;
    refuse a file from a newer mlinfra. `what` names it: "state at PATH"."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        raise StateError(
            f"{what} has schema v{found}, this mlinfra needs v{version}: upgrade mlinfra"
        )
    # executescript() would commit the caller's transaction first: one statement at a time
    for statement in schema.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")


def damaged_error(path: Path, problem: str, remedy: str, *, error: str = "") -> StateError:
    """The one line for a damaged database: which file, what SQLite says, what to do."""
    found = problem if error in ("", problem) else f"{error}; its check found: {problem}"
    return StateError(f"{path} is damaged (SQLite: {found}); {remedy}")


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Does SQLite's error code say the file is corrupt or not a database?"""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES
