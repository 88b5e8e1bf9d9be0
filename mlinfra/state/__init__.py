"""Where the embedded engine keeps what it knows: `open_state(state_dir)` is the entry point.

SQLite today; the records in `_model` are the whole interface, so PostgreSQL can follow.
"""

from pathlib import Path

from ._model import LockHolder, PendingOperation, ResourceState, UpdateRecord
from ._secrets import PASSPHRASE_ENV
from ._sqlite import SqliteStateStore

__all__ = [
    "PASSPHRASE_ENV",
    "LockHolder",
    "PendingOperation",
    "ResourceState",
    "SqliteStateStore",
    "UpdateRecord",
    "open_state",
]


def open_state(state_dir: Path) -> SqliteStateStore:
    return SqliteStateStore(state_dir)
