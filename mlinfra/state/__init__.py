"""Where the embedded engine keeps what it knows: `open_state(state_dir)` is the entry point.

SQLite today; the records in `_model` are the whole interface, so PostgreSQL can follow. Each
update is preceded by a backup (`list_backups`), and `plan_recovery` / `recover` put one back.
"""

from pathlib import Path

from ._backup import BACKUP_DIR, KEEP_BACKUPS, StateBackup, list_backups
from ._integrity import apply_schema, translating_sqlite_errors
from ._model import (
    BranchEnvRecord,
    KeptResource,
    LockHolder,
    PendingOperation,
    ResourceState,
    UpdateRecord,
)
from ._recover import (
    Recovery,
    RecoveryPlan,
    StateFile,
    inspect_state_file,
    plan_recovery,
    recover,
)
from ._secrets import PASSPHRASE_ENV, is_secret, masked, plain, wrap_secret
from ._sqlite import SqliteStateStore

__all__ = [
    "BACKUP_DIR",
    "KEEP_BACKUPS",
    "PASSPHRASE_ENV",
    "BranchEnvRecord",
    "KeptResource",
    "LockHolder",
    "PendingOperation",
    "Recovery",
    "RecoveryPlan",
    "ResourceState",
    "SqliteStateStore",
    "StateBackup",
    "StateFile",
    "UpdateRecord",
    "apply_schema",
    "inspect_state_file",
    "is_secret",
    "list_backups",
    "masked",
    "open_state",
    "plain",
    "plan_recovery",
    "recover",
    "translating_sqlite_errors",
    "wrap_secret",
]


def open_state(state_dir: Path) -> SqliteStateStore:
    return SqliteStateStore(state_dir)
