"""What state.db holds of one stack, table by table: a gone branch env leaves no row."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def state_rows(state_db: Path, stack: str) -> dict[str, int]:
    """Rows of `stack` in each table of state.db that has a `stack` column."""
    with sqlite3.connect(state_db) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = {}
        for table in tables:
            columns = [column[1] for column in db.execute(f"PRAGMA table_info({table})")]
            if "stack" in columns:
                query = f"SELECT COUNT(*) FROM {table} WHERE stack = ?"
                found[table] = db.execute(query, (stack,)).fetchone()[0]
        return found
