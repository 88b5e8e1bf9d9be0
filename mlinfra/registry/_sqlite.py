"""The registry's metadata in SQLite: WAL for readers beside one writer, file mode 0600.

Each thread of each process gets its own connection, so a long-lived server or TUI can share one
`Registry` between threads and a forked worker never reuses its parent's handle. Every SQLite call
goes through `_write` or `_rows`, where a failure becomes one line (a damaged file says so).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import EllipsisType
from typing import Any

from ..errors import StateError
from ..state import translating_sqlite_errors
from ._errors import (
    AliasConflictError,
    ModelNotFoundError,
    RegistryNotFoundError,
    RegistrySchemaError,
)
from ._types import AliasEvent, ModelVersion, NewVersion, Report, VersionSummary, utc_now

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

# Kept in the file's `PRAGMA user_version`. Bump it with every change to _SCHEMA: v2 added the
# listing columns of `versions` (metric ... data_hash).
SCHEMA_VERSION = 2
_BUSY_TIMEOUT_MS = 30_000
# mlinfra copies no model data behind the user's back: registries are data, backed up by them.
_RESTORE_HINT = (
    "stop what uses this registry and restore registry.db from your own backup of it "
    "(mlinfra makes none; the artifacts/ beside it are separate files)"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    last_version INTEGER NOT NULL,  -- only ever grows, so numbers are never reused
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    env TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_size INTEGER NOT NULL,
    reference_sha256 TEXT,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    lineage TEXT NOT NULL,
    trusted_types TEXT NOT NULL,
    -- copied out of lineage and metrics so that a listing decodes no JSON
    metric TEXT,
    score REAL,
    git_commit TEXT,
    git_dirty INTEGER,
    data_hash TEXT,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS documents (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (model, version, kind),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE IF NOT EXISTS tags (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model, version, key),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT NOT NULL,
    env TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (model, env, alias),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE IF NOT EXISTS alias_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    env TEXT NOT NULL,
    alias TEXT NOT NULL,
    from_version INTEGER,
    to_version INTEGER,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alias_events_by_model ON alias_events (model, env, alias);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    env TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    passed INTEGER NOT NULL,
    body TEXT NOT NULL,
    markdown TEXT NOT NULL,
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE INDEX IF NOT EXISTS reports_by_version ON reports (model, version);
"""

_VERSION_COLUMNS = (
    "v.model, v.version, m.task, v.env, v.created_at, v.created_by, v.artifact_sha256, "
    "v.artifact_size, v.reference_sha256, v.params, v.metrics, v.lineage, v.trusted_types"
)
_VERSION_SELECT = f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN models m ON m.name = v.model"

_SUMMARY_SELECT = (
    "SELECT v.model, v.version, m.task, v.env, v.created_at, v.created_by, v.metric, v.score, "
    "v.git_commit, v.git_dirty, v.data_hash FROM versions v JOIN models m ON m.name = v.model"
)


def _listing(model: str | None, limit: int | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE, ORDER and LIMIT of a listing: by model, newest version first."""
    where, args = ("WHERE v.model = ?", (model,)) if model else ("", ())
    clause = f"{where} ORDER BY v.model, v.version DESC LIMIT ?"
    return clause, (*args, -1 if limit is None else limit)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)


class SqliteStore:
    """`MetadataStore` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    @classmethod
    def create(cls, path: Path) -> SqliteStore:
        """Create the file (0600) and its tables if missing; safe to call again and concurrently."""
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        store = cls(path)
        with store._write() as db:
            # Only a file without tables is new; any other is checked, never stamped over.
            if db.execute("SELECT 1 FROM sqlite_master").fetchone():
                store._check_schema(db)
            # executescript() would commit our transaction first, so run the statements one by one
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return store

    def check(self) -> None:
        """Refuse a file written by an older or newer mlinfra, or not a registry at all."""
        with self._sqlite_errors():
            self._check_schema(self._db())

    def _check_schema(self, db: sqlite3.Connection) -> None:
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found == SCHEMA_VERSION:
            return
        root = self.path.parent
        if found == 0:
            raise RegistryNotFoundError(f"{self.path} is not an mlinfra registry")
        advice = (
            "upgrade mlinfra"
            if found > SCHEMA_VERSION
            else "use the mlinfra release that wrote it, or move it aside and run `mlinfra up` "
            "to start a new registry"
        )
        raise RegistrySchemaError(
            f"registry at {root} has schema v{found}, this mlinfra needs v{SCHEMA_VERSION}: "
            f"{advice}"
        )

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection | None:
        """This thread's connection, if it has one (a forked child does not inherit it)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn if conn is not None and self._local.pid == os.getpid() else None

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use; call it inside `_sqlite_errors`."""
        conn = self._connection()
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        with translating_sqlite_errors(self.path, _RESTORE_HINT, self._connection()):
            yield

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE makes concurrent writers queue instead of fail."""
        with self._sqlite_errors():
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StateError(f"the registry {self.path} stayed locked: {exc}") from exc
            try:
                yield db
            except BaseException:
                # SQLite ends the transaction itself on some errors (disk full, I/O)
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """The rows of one read."""
        with self._sqlite_errors():
            return self._db().execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local = threading.local()

    # -- versions ----------------------------------------------------------------------------

    def insert_version(
        self,
        new: NewVersion,
        *,
        artifact_sha256: str,
        reference_sha256: str | None,
        created_by: str,
    ) -> ModelVersion:
        now = utc_now()
        metric = new.lineage.get("metric")
        with self._write() as db:
            db.execute(
                "INSERT INTO models (name, task, last_version, created_at) VALUES (?, ?, 0, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (new.model, new.task, now),
            )
            task = db.execute("SELECT task FROM models WHERE name = ?", (new.model,)).fetchone()[0]
            if task != new.task:
                raise StateError(f"model {new.model!r} is registered as {task}, not {new.task}")
            (number,) = db.execute(
                "UPDATE models SET last_version = last_version + 1 WHERE name = ? "
                "RETURNING last_version",
                (new.model,),
            ).fetchone()
            db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.model,
                    number,
                    new.env,
                    now,
                    created_by,
                    artifact_sha256,
                    len(new.model_bytes),
                    reference_sha256,
                    _dump(new.params),
                    _dump(new.metrics),
                    _dump(new.lineage),
                    _dump(sorted(new.trusted_types)),
                    metric,
                    new.metrics.get(metric) if metric else None,
                    new.lineage.get("git_commit"),
                    new.lineage.get("git_dirty"),
                    new.lineage.get("data_hash"),
                ),
            )
            db.executemany(
                "INSERT INTO documents VALUES (?, ?, ?, ?)",
                [(new.model, number, kind, _dump(body)) for kind, body in new.documents.items()],
            )
            db.executemany(
                "INSERT INTO tags VALUES (?, ?, ?, ?)",
                [(new.model, number, key, value) for key, value in new.tags.items()],
            )
        found = self.get_version(new.model, number)
        assert found is not None
        return found

    def get_version(self, model: str, version: int) -> ModelVersion | None:
        rows = self._versions("WHERE v.model = ? AND v.version = ?", (model, version))
        return rows[0] if rows else None

    def latest_version(self, model: str) -> ModelVersion | None:
        rows = self._versions("WHERE v.model = ? ORDER BY v.version DESC LIMIT 1", (model,))
        return rows[0] if rows else None

    def list_versions(self, model: str | None, *, limit: int | None) -> list[ModelVersion]:
        return self._versions(*_listing(model, limit))

    def list_summaries(self, model: str | None, *, limit: int | None) -> list[VersionSummary]:
        clause, args = _listing(model, limit)
        rows = self._rows(f"{_SUMMARY_SELECT} {clause}", args)
        tags = self._tags(rows)
        return [
            VersionSummary(
                model=row[0],
                version=row[1],
                task=row[2],
                env=row[3],
                created_at=row[4],
                created_by=row[5],
                metric=row[6],
                score=row[7],
                git_commit=row[8],
                git_dirty=None if row[9] is None else bool(row[9]),
                data_hash=row[10],
                tags=tags.get((row[0], row[1]), {}),
            )
            for row in rows
        ]

    def _tags(self, rows: list[tuple[Any, ...]]) -> dict[tuple[str, int], dict[str, str]]:
        """Tags of the versions in `rows` (model and version first), in one query."""
        tags: dict[tuple[str, int], dict[str, str]] = {}
        if rows:
            models = sorted({row[0] for row in rows})
            marks = ",".join("?" * len(models))
            for model, version, key, value in self._rows(
                f"SELECT model, version, key, value FROM tags WHERE model IN ({marks})", models
            ):
                tags.setdefault((model, version), {})[key] = value
        return tags

    def _versions(self, clause: str, args: tuple[Any, ...]) -> list[ModelVersion]:
        rows = self._rows(f"{_VERSION_SELECT} {clause}", args)
        tags = self._tags(rows)
        loads = json.loads
        return [
            ModelVersion(
                model=row[0],
                version=row[1],
                task=row[2],
                env=row[3],
                created_at=row[4],
                created_by=row[5],
                artifact_sha256=row[6],
                artifact_size=row[7],
                reference_sha256=row[8],
                params=loads(row[9]),
                metrics=loads(row[10]),
                lineage=loads(row[11]),
                trusted_types=loads(row[12]),
                tags=tags.get((row[0], row[1]), {}),
            )
            for row in rows
        ]

    def model_names(self) -> list[str]:
        return [name for (name,) in self._rows("SELECT name FROM models ORDER BY name")]

    def document(self, model: str, version: int, kind: str) -> Any | None:
        rows = self._rows(
            "SELECT body FROM documents WHERE model = ? AND version = ? AND kind = ?",
            (model, version, kind),
        )
        return json.loads(rows[0][0]) if rows else None

    def documents(self, model: str, version: int) -> dict[str, Any]:
        rows = self._rows(
            "SELECT kind, body FROM documents WHERE model = ? AND version = ? ORDER BY kind",
            (model, version),
        )
        return {kind: json.loads(body) for kind, body in rows}

    def find_versions(self, model: str, artifact_sha256: str) -> list[ModelVersion]:
        return self._versions(
            "WHERE v.model = ? AND v.artifact_sha256 = ? ORDER BY v.version",
            (model, artifact_sha256),
        )

    def set_tags(self, model: str, version: int, set_: dict[str, str], remove: list[str]) -> None:
        with self._write() as db:
            self._require_version(db, model, version)
            db.executemany(
                "INSERT INTO tags VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, version, key) DO UPDATE SET value = excluded.value",
                [(model, version, key, value) for key, value in set_.items()],
            )
            db.executemany(
                "DELETE FROM tags WHERE model = ? AND version = ? AND key = ?",
                [(model, version, key) for key in remove],
            )

    @staticmethod
    def _require_version(db: sqlite3.Connection, model: str, version: int) -> None:
        found = db.execute(
            "SELECT 1 FROM versions WHERE model = ? AND version = ?", (model, version)
        ).fetchone()
        if not found:
            raise ModelNotFoundError(f"model {model!r} has no version {version}")

    # -- aliases -----------------------------------------------------------------------------

    def aliases(self, model: str, env: str) -> dict[str, int]:
        rows = self._rows(
            "SELECT alias, version FROM aliases WHERE model = ? AND env = ? ORDER BY alias",
            (model, env),
        )
        return dict(rows)

    def move_alias(
        self,
        model: str,
        env: str,
        alias: str,
        to_version: int | None,
        *,
        actor: str,
        reason: str,
        expected: int | None | EllipsisType,
    ) -> AliasEvent:
        at = utc_now()
        with self._write() as db:
            if to_version is not None:
                self._require_version(db, model, to_version)
            row = db.execute(
                "SELECT version FROM aliases WHERE model = ? AND env = ? AND alias = ?",
                (model, env, alias),
            ).fetchone()
            current = row[0] if row else None
            if expected is not ... and expected != current:
                raise AliasConflictError(
                    f"alias {alias!r} of {model!r} in env {env!r} points to {current}, "
                    f"not {expected}: someone moved it meanwhile; "
                    f"see `mlinfra models alias {alias}`"
                )
            if to_version is None:
                db.execute(
                    "DELETE FROM aliases WHERE model = ? AND env = ? AND alias = ?",
                    (model, env, alias),
                )
            else:
                db.execute(
                    "INSERT INTO aliases VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (model, env, alias) DO UPDATE SET version = excluded.version",
                    (model, env, alias, to_version),
                )
            (event_id,) = db.execute(
                "INSERT INTO alias_events (model, env, alias, from_version, to_version, at, actor, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (model, env, alias, current, to_version, at, actor, reason),
            ).fetchone()
        return AliasEvent(event_id, model, env, alias, current, to_version, at, actor, reason)

    def alias_history(self, model: str, env: str | None, alias: str | None) -> list[AliasEvent]:
        clause, args = "WHERE model = ?", [model]
        if env is not None:
            clause, args = clause + " AND env = ?", [*args, env]
        if alias is not None:
            clause, args = clause + " AND alias = ?", [*args, alias]
        rows = self._rows(
            "SELECT id, model, env, alias, from_version, to_version, at, actor, reason "
            f"FROM alias_events {clause} ORDER BY id",
            args,
        )
        return [AliasEvent(*row) for row in rows]

    # -- reports -----------------------------------------------------------------------------

    def add_report(
        self,
        model: str,
        version: int,
        *,
        env: str,
        kind: str,
        passed: bool,
        body: dict[str, Any],
        markdown: str,
        created_by: str,
    ) -> Report:
        at = utc_now()
        with self._write() as db:
            self._require_version(db, model, version)
            (report_id,) = db.execute(
                "INSERT INTO reports (model, version, env, kind, created_at, created_by, passed, "
                "body, markdown) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (model, version, env, kind, at, created_by, int(passed), _dump(body), markdown),
            ).fetchone()
        return Report(report_id, model, version, env, kind, at, created_by, passed, body, markdown)

    def reports(self, model: str, version: int) -> list[Report]:
        rows = self._rows(
            "SELECT id, model, version, env, kind, created_at, created_by, passed, body, markdown "
            "FROM reports WHERE model = ? AND version = ? ORDER BY id",
            (model, version),
        )
        return [
            Report(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), json.loads(r[8]), r[9])
            for r in rows
        ]
