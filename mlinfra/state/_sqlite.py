"""The state store on SQLite (WAL): resources, pending operations, outputs, history and locks.

Every write is its own short transaction, so a run killed at any line leaves a consistent state
that the next run can finish from.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .._identity import current_user
from ..errors import StateError, StateLockedError
from ._backup import BACKUP_DIR, RECOVER_HINT, StateBackup, list_backups, write_backup
from ._integrity import apply_schema, translating_sqlite_errors
from ._model import (
    BranchEnvRecord,
    KeptResource,
    LockHolder,
    PendingOperation,
    ResourceState,
    UpdateRecord,
)
from ._secrets import SecretBox, is_secret, wrap_secret

__all__ = ["SCHEMA_VERSION", "UPDATE_SELECT", "SqliteStateStore", "holder_alive", "update_record"]

# Kept in the file's `PRAGMA user_version`; bump it with every change to _SCHEMA. Changes so far
# only add tables (v2: `kept`, v3: `branch_envs`), so an older state is upgraded in place by
# creating them.
SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    stack TEXT NOT NULL, urn TEXT NOT NULL, pending_delete INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (stack, urn, pending_delete)
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, urn TEXT NOT NULL,
    kind TEXT NOT NULL, inputs TEXT NOT NULL, started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (stack TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, kind TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, user TEXT NOT NULL, host TEXT NOT NULL,
    git_commit TEXT NOT NULL, dirty INTEGER NOT NULL, result TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}', error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS kept (
    stack TEXT NOT NULL, urn TEXT NOT NULL, body TEXT NOT NULL, held TEXT NOT NULL,
    kept_at REAL NOT NULL,
    PRIMARY KEY (stack, urn)
);
CREATE TABLE IF NOT EXISTS branch_envs (
    stack TEXT PRIMARY KEY, port INTEGER NOT NULL UNIQUE, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    stack TEXT PRIMARY KEY, pid INTEGER NOT NULL, started_at REAL NOT NULL, host TEXT NOT NULL,
    user TEXT NOT NULL, command TEXT NOT NULL, since REAL NOT NULL
);
"""

_ENCRYPTED = "__mlinfra_secret__"


class SqliteStateStore:
    """State of every stack of one project, in `<state_dir>/state.db` (mode 0600)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "state.db"
        self._lock = threading.RLock()
        self._refuse_lost_state()
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            with translating_sqlite_errors(self.path, RECOVER_HINT):
                self._db = sqlite3.connect(
                    self.path, timeout=5.0, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._ensure_schema()
        except OSError as exc:
            raise StateError(f"cannot create the state directory {state_dir}: {exc}") from exc
        self._secrets = SecretBox(
            state_dir=state_dir, salt=self._salt(), holds_secrets=self._holds_secrets
        )

    def _refuse_lost_state(self) -> None:
        """Refuse a missing or empty state.db where state existed: taken for a new project, it
        would make `up` create every resource again beside the running ones."""
        backups = self.state_dir / BACKUP_DIR
        if not self.path.exists():
            if list_backups(self.state_dir):
                raise StateError(
                    f"{self.path} is missing, yet {backups} holds backups of it; {RECOVER_HINT}, "
                    f"or move {backups} aside to start a new state on purpose"
                )
            return
        if self.path.stat().st_size:
            return
        envs = self.state_dir / "envs"
        if list_backups(self.state_dir):
            evidence, fresh = f"{backups} holds backups of it", f"{self.path} and {backups}"
        elif envs.is_dir() and any(envs.iterdir()):
            evidence, fresh = f"{envs} holds environments", str(self.path)
        else:
            return
        raise StateError(
            f"{self.path} is empty (0 bytes), yet {evidence}: it was emptied or truncated, and "
            f"taken as new it would create every resource again; {RECOVER_HINT}, or move "
            f"{fresh} aside to start a new state on purpose"
        )

    def _ensure_schema(self) -> None:
        """Create the tables in a new file, add the missing ones to an older state (v0, from
        before the version was kept, has v1's tables); refuse one from a newer mlinfra."""
        with self._transaction() as db:
            apply_schema(db, _SCHEMA, SCHEMA_VERSION, what=f"state at {self.path}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Where every SQLite call of the store is translated: a damaged file is one line."""
        with translating_sqlite_errors(self.path, RECOVER_HINT, self._db):
            yield

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._sqlite_errors():
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StateError(f"the state at {self.path} is busy: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                # SQLite ends the transaction itself on some errors (disk full, I/O)
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._sqlite_errors():
            return self._db.execute(sql, params).fetchall()

    def _holds_secrets(self) -> bool:
        """Does any value in the state need the secret key to be read?"""
        tables = ("resources", "kept", "operations", "outputs")
        column = {"operations": "inputs"}
        sql = " UNION ALL ".join(
            f"SELECT 1 FROM {table} WHERE instr({column.get(table, 'body')}, ?)" for table in tables
        )
        return bool(self._query(f"{sql} LIMIT 1", (_ENCRYPTED,) * len(tables)))

    def back_up(self, update_id: int) -> StateBackup:
        """Copy the whole state (every stack) to backups/ before an update; a damaged state is
        refused here, before the update makes it worse."""
        try:
            with self._lock, self._sqlite_errors():
                return write_backup(self._db, self.state_dir, update_id=update_id, source=self.path)
        except OSError as exc:
            raise StateError(f"cannot back up the state before the update: {exc}") from exc

    def _salt(self) -> bytes:
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
            if row:
                return bytes(row[0])
            salt = os.urandom(16)
            db.execute("INSERT INTO meta (key, value) VALUES ('salt', ?)", (salt,))
            return salt

    # Secrets: pulumi's secret wrapper goes in encrypted and comes back out as the wrapper.

    def _seal(self, value: Any) -> Any:
        if isinstance(value, dict):
            if is_secret(value):
                return {_ENCRYPTED: self._secrets.encrypt(value.get("value"))}
            return {key: self._seal(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._seal(item) for item in value]
        return value

    def _unseal(self, value: Any) -> Any:
        if isinstance(value, dict):
            if _ENCRYPTED in value:
                return wrap_secret(self._secrets.decrypt(value[_ENCRYPTED]))
            return {key: self._unseal(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._unseal(item) for item in value]
        return value

    def _encode(self, value: Any) -> str:
        return json.dumps(self._seal(value), separators=(",", ":"), sort_keys=True)

    def _decode(self, text: str) -> Any:
        value = json.loads(text)
        return self._unseal(value) if _ENCRYPTED in text else value

    # Resources

    def stacks(self) -> list[str]:
        rows = self._query(
            "SELECT stack FROM resources UNION SELECT stack FROM updates ORDER BY stack"
        )
        return [row[0] for row in rows]

    def resources(self, stack: str) -> list[ResourceState]:
        """Every resource of the stack, in the order they were first created."""
        rows = self._query(
            "SELECT body FROM resources WHERE stack = ? ORDER BY seq, pending_delete", (stack,)
        )
        return [ResourceState(**self._decode(row[0])) for row in rows]

    def put_resource(
        self, stack: str, resource: ResourceState, *, clear_operation: int = 0
    ) -> None:
        """Checkpoint one resource (and close the operation that produced it, atomically)."""
        body = self._encode(resource.__dict__)
        with self._transaction() as db:
            row = db.execute(
                "SELECT seq FROM resources WHERE stack = ? AND urn = ? AND pending_delete = ?",
                (stack, resource.urn, int(resource.pending_delete)),
            ).fetchone()
            seq = row[0] if row else _next_seq(db, stack)
            db.execute(
                "INSERT OR REPLACE INTO resources (stack, urn, pending_delete, seq, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (stack, resource.urn, int(resource.pending_delete), seq, body),
            )
            if clear_operation:
                db.execute("DELETE FROM operations WHERE id = ?", (clear_operation,))

    def replace_resource(
        self, stack: str, old: ResourceState, new: ResourceState, *, clear_operation: int
    ) -> None:
        """Record a create-before-delete replacement: the new instance takes the URN, the old
        one waits for deletion."""
        old.pending_delete = True
        with self._transaction() as db:
            db.execute(
                "UPDATE resources SET pending_delete = 1, body = ? "
                "WHERE stack = ? AND urn = ? AND pending_delete = 0",
                (self._encode(old.__dict__), stack, old.urn),
            )
            db.execute(
                "INSERT OR REPLACE INTO resources (stack, urn, pending_delete, seq, body) "
                "VALUES (?, ?, 0, ?, ?)",
                (stack, new.urn, _next_seq(db, stack), self._encode(new.__dict__)),
            )
            db.execute("DELETE FROM operations WHERE id = ?", (clear_operation,))

    def remove_resource(
        self, stack: str, urn: str, *, pending_delete: bool = False, clear_operation: int = 0
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM resources WHERE stack = ? AND urn = ? AND pending_delete = ?",
                (stack, urn, int(pending_delete)),
            )
            if clear_operation:
                db.execute("DELETE FROM operations WHERE id = ?", (clear_operation,))

    # Resources destroy kept for their data

    def keep_resource(
        self, stack: str, resource: ResourceState, *, held: str, clear_operation: int = 0
    ) -> None:
        """Take a resource out of the state but remember it, in one transaction."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM resources WHERE stack = ? AND urn = ? AND pending_delete = ?",
                (stack, resource.urn, int(resource.pending_delete)),
            )
            db.execute(
                "INSERT OR REPLACE INTO kept (stack, urn, body, held, kept_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (stack, resource.urn, self._encode(resource.__dict__), held, time.time()),
            )
            if clear_operation:
                db.execute("DELETE FROM operations WHERE id = ?", (clear_operation,))

    def kept(self, stack: str) -> list[KeptResource]:
        rows = self._query(
            "SELECT body, held, kept_at FROM kept WHERE stack = ? ORDER BY kept_at", (stack,)
        )
        return [
            KeptResource(resource=ResourceState(**self._decode(r[0])), held=r[1], kept_at=r[2])
            for r in rows
        ]

    def forget_kept(self, stack: str, urn: str, *, clear_operation: int = 0) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM kept WHERE stack = ? AND urn = ?", (stack, urn))
            if clear_operation:
                db.execute("DELETE FROM operations WHERE id = ?", (clear_operation,))

    # Pending operations

    def begin_operation(self, stack: str, urn: str, kind: str, inputs: dict[str, Any]) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO operations (stack, urn, kind, inputs, started) VALUES (?, ?, ?, ?, ?)",
                (stack, urn, kind, self._encode(inputs), time.time()),
            )
            return int(cursor.lastrowid or 0)

    def end_operation(self, operation_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM operations WHERE id = ?", (operation_id,))

    def pending_operations(self, stack: str) -> list[PendingOperation]:
        rows = self._query(
            "SELECT id, urn, kind, inputs, started FROM operations WHERE stack = ? ORDER BY id",
            (stack,),
        )
        return [
            PendingOperation(id=r[0], urn=r[1], kind=r[2], inputs=self._decode(r[3]), started=r[4])
            for r in rows
        ]

    # Stack outputs

    def outputs(self, stack: str) -> dict[str, Any]:
        rows = self._query("SELECT body FROM outputs WHERE stack = ?", (stack,))
        return dict(self._decode(rows[0][0])) if rows else {}

    def set_outputs(self, stack: str, outputs: dict[str, Any]) -> None:
        with self._transaction() as db:
            if outputs:
                db.execute(
                    "INSERT OR REPLACE INTO outputs (stack, body) VALUES (?, ?)",
                    (stack, self._encode(outputs)),
                )
            else:
                db.execute("DELETE FROM outputs WHERE stack = ?", (stack,))

    # History

    def start_update(self, stack: str, kind: str, *, commit: str, dirty: bool) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO updates (stack, kind, started, user, host, git_commit, dirty, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'in-progress')",
                (
                    stack,
                    kind,
                    time.time(),
                    current_user(),
                    socket.gethostname(),
                    commit,
                    int(dirty),
                ),
            )
            return int(cursor.lastrowid or 0)

    def finish_update(
        self, update_id: int, *, result: str, summary: dict[str, int], error: str = ""
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE updates SET finished = ?, result = ?, summary = ?, error = ? WHERE id = ?",
                (time.time(), result, json.dumps(summary, sort_keys=True), error, update_id),
            )

    def history(self, stack: str, *, limit: int = 50) -> list[UpdateRecord]:
        rows = self._query(
            f"{UPDATE_SELECT} WHERE stack = ? ORDER BY id DESC LIMIT ?", (stack, limit)
        )
        return [update_record(row) for row in rows]

    # Locks

    def acquire_lock(self, stack: str, command: str, *, force: bool = False) -> LockHolder | None:
        """Take the stack's lock; returns the stale holder it replaced, if any."""
        from .._process import ProcessIdentity

        me = ProcessIdentity.current()
        with self._transaction() as db:
            row = db.execute(
                "SELECT pid, started_at, host, user, command, since FROM locks WHERE stack = ?",
                (stack,),
            ).fetchone()
            stale: LockHolder | None = None
            if row:
                holder = LockHolder(
                    pid=row[0], host=row[2], user=row[3], command=row[4], since=row[5]
                )
                if not force and holder_alive(row[0], row[1], row[2]):
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.since))
                    raise StateLockedError(
                        f"stack {stack!r} is locked by `{holder.command}` (pid {holder.pid} on "
                        f"{holder.host}, user {holder.user}, since {when}); wait for it to finish, "
                        "or pass --force-unlock if that process is gone"
                    )
                stale = holder
                db.execute(
                    "UPDATE updates SET result = 'interrupted', finished = ? "
                    "WHERE stack = ? AND result = 'in-progress'",
                    (time.time(), stack),
                )
            db.execute(
                "INSERT OR REPLACE INTO locks (stack, pid, started_at, host, user, command, since) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    stack,
                    me.pid,
                    me.started,
                    socket.gethostname(),
                    current_user(),
                    command,
                    time.time(),
                ),
            )
            return stale

    def release_lock(self, stack: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM locks WHERE stack = ? AND pid = ?", (stack, os.getpid()))

    def lock_holder(self, stack: str) -> LockHolder | None:
        rows = self._query(
            "SELECT pid, started_at, host, user, command, since FROM locks WHERE stack = ?",
            (stack,),
        )
        if not rows or not holder_alive(rows[0][0], rows[0][1], rows[0][2]):
            return None
        pid, _, host, user, command, since = rows[0]
        return LockHolder(pid=pid, host=host, user=user, command=command, since=since)

    # Branch envs: one row each, holding its serving port (UNIQUE: never two envs on one port)

    def branch_envs(self) -> list[BranchEnvRecord]:
        rows = self._query("SELECT body FROM branch_envs ORDER BY stack")
        return [BranchEnvRecord(**json.loads(row[0])) for row in rows]

    def branch_env(self, stack: str) -> BranchEnvRecord | None:
        rows = self._query("SELECT body FROM branch_envs WHERE stack = ?", (stack,))
        return BranchEnvRecord(**json.loads(rows[0][0])) if rows else None

    def claim_branch_env(
        self, draft: BranchEnvRecord, choose_port: Callable[[set[int]], int]
    ) -> BranchEnvRecord:
        """Record a branch env, or bring its record up to date (commit, last up, TTL); a new
        one gets the port `choose_port` picks among those no other branch env holds. One
        transaction, so two envs made at once never pick one port."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT body FROM branch_envs WHERE stack = ?", (draft.stack,)
            ).fetchone()
            if row:
                known = BranchEnvRecord(**json.loads(row[0]))
                record = replace(
                    known,
                    commit=draft.commit or known.commit,
                    updated_at=draft.updated_at,
                    ttl_seconds=draft.ttl_seconds,
                )
            else:
                taken = {port for (port,) in db.execute("SELECT port FROM branch_envs")}
                record = replace(draft, port=choose_port(taken))
            db.execute(
                "INSERT OR REPLACE INTO branch_envs (stack, port, body) VALUES (?, ?, ?)",
                (record.stack, record.port, json.dumps(asdict(record), sort_keys=True)),
            )
            return record

    def set_branch_env_seeded(self, stack: str, seeded: dict[str, int]) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT body FROM branch_envs WHERE stack = ?", (stack,)).fetchone()
            if row:
                body = {**json.loads(row[0]), "seeded": seeded}
                db.execute(
                    "UPDATE branch_envs SET body = ? WHERE stack = ?",
                    (json.dumps(body, sort_keys=True), stack),
                )

    def forget_stack(self, stack: str) -> None:
        """Drop every row of the stack: resources, what destroys kept, outputs, history, lock
        and branch record; for a branch env that is gone, so that nothing of it is left."""
        with self._transaction() as db:
            for table in _STACK_TABLES:
                db.execute(f"DELETE FROM {table} WHERE stack = ?", (stack,))


_STACK_TABLES = ("resources", "operations", "outputs", "updates", "kept", "locks", "branch_envs")

UPDATE_SELECT = (
    "SELECT id, stack, kind, started, finished, user, host, git_commit, dirty, result, summary, "
    "error FROM updates"
)


def update_record(row: tuple[Any, ...]) -> UpdateRecord:
    """An `UpdateRecord` from a row of `UPDATE_SELECT`."""
    return UpdateRecord(
        id=row[0],
        stack=row[1],
        kind=row[2],
        started=row[3],
        finished=row[4],
        user=row[5],
        host=row[6],
        commit=row[7],
        dirty=bool(row[8]),
        result=row[9],
        summary=json.loads(row[10]),
        error=row[11],
    )


def _next_seq(db: sqlite3.Connection, stack: str) -> int:
    row = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM resources WHERE stack = ?", (stack,))
    return int(row.fetchone()[0])


def holder_alive(pid: int, started_at: float, host: str) -> bool:
    """Is the lock holder still running? Another host's holder is assumed alive."""
    if host != socket.gethostname():
        return True
    from .._process import ProcessIdentity

    return ProcessIdentity(pid=pid, started=started_at).alive()
