"""Where the embedded engine keeps what it knows: `open_state(state_dir)` is the entry point.

SQLite today; the records in `_model` are the whole interface, so PostgreSQL can follow.
"""

from pathlib import Path

from ._model import KeptResource, LockHolder, PendingOperation, ResourceState, UpdateRecord
from ._secrets import PASSPHRASE_ENV, is_secret, plain, wrap_secret
from ._sqlite import SqliteStateStore

__all__ = [
    "PASSPHRASE_ENV",
    "KeptResource",
    "LockHolder",
    "PendingOperation",
    "ResourceState",
    "SqliteStateStore",
    "UpdateRecord",
    "is_secret",
    "open_state",
    "plain",
    "wrap_secret",
]


def open_state(state_dir: Path) -> SqliteStateStore:
    return SqliteStateStore(state_dir)
