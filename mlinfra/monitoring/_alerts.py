"""Alerts an env's monitor raised, in `alerts.db` (SQLite, WAL, mode 0600), with their delivery.

Repeats are grouped: a candidate with the env, kind and feature of an open (unacknowledged)
alert raised less than the cool-down ago only counts into it, so a drift that persists pages
at most once per cool-down. Each alert is logged when raised, one line; its webhook delivery is
a state kept beside it (`_webhook.deliver_due`), so an alert not yet delivered is delivered by
whichever process runs next.
"""

from __future__ import annotations

import builtins
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from ..errors import MlinfraError, StateError
from ..state import apply_schema, translating_sqlite_errors

__all__ = [
    "SCHEMA_VERSION",
    "AckResult",
    "Acknowledgement",
    "Alert",
    "AlertCandidate",
    "AlertKind",
    "AlertNotFoundError",
    "AlertStore",
    "Delivery",
    "DeliveryStatus",
    "RaisedAlert",
    "Severity",
    "Window",
]

log = logging.getLogger("mlinfra.monitoring")

Severity = Literal["warning", "critical"]
AlertKind = Literal[
    "feature_drift", "prediction_drift", "performance", "dataset_drift", "log_dropped"
]
DeliveryStatus = Literal["pending", "delivered", "failed", "skipped"]
"""pending: to be sent (again) at `next_attempt_at`; failed: the receiver refused it for good;
skipped: not sent on purpose (no webhook, or acknowledged before it went out)."""

_SEVERITY_RANK: dict[Severity, int] = {"warning": 0, "critical": 1}

# Kept in the file's `PRAGMA user_version`; bump it with every change to _SCHEMA.
SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 30.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an id in a page stays valid
    env TEXT NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    feature TEXT,
    statistic TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    window_label TEXT NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    message TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    count INTEGER NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    delivery_status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    delivered_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (env, kind, feature)
    WHERE acknowledged_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_due ON alerts (next_attempt_at)
    WHERE delivery_status = 'pending';
"""
_COLUMNS = (
    "id, env, severity, kind, feature, statistic, value, threshold, window_label, window_start, "
    "window_end, message, first_at, last_at, count, acknowledged_by, acknowledged_at, "
    "delivery_status, attempts, next_attempt_at, delivered_at, last_error"
)
_DAMAGED_HINT = (
    "stop the env's monitor and move alerts.db aside; the monitor starts a new one "
    "(the alerts in the old file are then no longer listed)"
)
_ACKNOWLEDGED_BEFORE_DELIVERY = "acknowledged before it was delivered"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Record):
    """The live traffic a statistic was computed on: `label` as configured ("1h"), the times
    (Unix seconds) of its first and last rows."""

    label: str
    start: float
    end: float


class AlertCandidate(_Record):
    """What a check found worth raising; the store decides whether it is a new alert."""

    env: str
    severity: Severity
    kind: AlertKind
    feature: str | None
    """None for alerts about the whole model or log (prediction, dataset, dropped rows)."""
    statistic: str
    """What was measured, e.g. "ks_p_adjusted", "psi", "accuracy", "dropped_rows"."""
    value: float = Field(allow_inf_nan=False)
    threshold: float = Field(allow_inf_nan=False)
    window: Window
    message: str
    """One line for people: what moved and by how much."""

    @field_validator("message")
    @classmethod
    def _one_line(cls, message: str) -> str:
        return " ".join(message.split())


class Acknowledgement(_Record):
    by: str
    at: float


class Delivery(_Record):
    """Where the alert's webhook delivery stands; times in Unix seconds."""

    status: DeliveryStatus
    attempts: int = 0
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    last_error: str | None = None
    """Why it is not delivered (yet): the receiver's answer or the transport's failure."""


class Alert(AlertCandidate):
    """An alert as stored: the latest occurrence's figures, counted since `first_at`."""

    id: int
    first_at: float
    last_at: float
    count: int
    acknowledgement: Acknowledgement | None
    delivery: Delivery

    @computed_field  # type: ignore[prop-decorator]
    @property
    def acknowledged(self) -> bool:
        return self.acknowledgement is not None


@dataclass(frozen=True)
class RaisedAlert:
    """What `raise_alert` did: `new` alerts are to be delivered, repeats were grouped."""

    alert: Alert
    new: bool


@dataclass(frozen=True)
class AckResult:
    alert: Alert
    already: bool
    """It was acknowledged before this call; its acknowledgement is unchanged."""

    def describe(self) -> str:
        ack = self.alert.acknowledgement
        assert ack is not None
        verb = "was already acknowledged" if self.already else "acknowledged"
        return f"alert {self.alert.id} {verb} by {ack.by}"


class AlertNotFoundError(MlinfraError):
    exit_code = 1


def _alert(row: tuple[Any, ...]) -> Alert:
    (id_, env, severity, kind, feature, statistic, value, threshold, label, start, end) = row[:11]
    (message, first_at, last_at, count, ack_by, ack_at) = row[11:17]
    (status, attempts, next_attempt_at, delivered_at, last_error) = row[17:]
    return Alert(
        id=id_,
        env=env,
        severity=severity,
        kind=kind,
        feature=feature,
        statistic=statistic,
        value=value,
        threshold=threshold,
        window=Window(label=label, start=start, end=end),
        message=message,
        first_at=first_at,
        last_at=last_at,
        count=count,
        acknowledgement=None if ack_at is None else Acknowledgement(by=ack_by, at=ack_at),
        delivery=Delivery(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            delivered_at=delivered_at,
            last_error=last_error,
        ),
    )


def _figures(candidate: AlertCandidate) -> tuple[Any, ...]:
    """The columns a repeat overwrites, in `_FIGURES` order: the latest occurrence wins."""
    w = candidate.window
    return (
        candidate.statistic,
        candidate.value,
        candidate.threshold,
        w.label,
        w.start,
        w.end,
        candidate.message,
    )


_FIGURES = "statistic, value, threshold, window_label, window_start, window_end, message"


class AlertStore:
    """The alerts of one monitoring directory; safe to share between threads, and between the
    monitor and the CLI (each write is one short transaction)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(path, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create the alert store {path}: {exc}") from exc
        with translating_sqlite_errors(path, _DAMAGED_HINT):
            self._db = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        with self._transaction() as db:
            apply_schema(db, _SCHEMA, SCHEMA_VERSION, what=f"alerts at {self.path}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translating_sqlite_errors(self.path, _DAMAGED_HINT, self._db):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                # SQLite ends the transaction itself on some errors (disk full, I/O)
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _select(self, clause: str, args: tuple[Any, ...] = ()) -> builtins.list[Alert]:
        with self._lock, translating_sqlite_errors(self.path, _DAMAGED_HINT, self._db):
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM alerts {clause}", args).fetchall()
        return [_alert(row) for row in rows]

    # -- raising -----------------------------------------------------------------------------

    def raise_alert(
        self, candidate: AlertCandidate, *, now: float, cooldown_seconds: float
    ) -> RaisedAlert:
        """Group `candidate` into the open alert it repeats, or store it as a new alert due
        for delivery now; a repeat more severe than the open alert is new (it pages)."""
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE env = ? AND kind = ? AND feature IS ? "
                "AND acknowledged_at IS NULL ORDER BY id DESC LIMIT 1",
                (candidate.env, candidate.kind, candidate.feature),
            ).fetchone()
            open_ = _alert(row) if row else None
            if open_ is not None and _repeats(open_, candidate, now, cooldown_seconds):
                alert_id, new = open_.id, False
                db.execute(
                    f"UPDATE alerts SET ({_FIGURES}) = (?, ?, ?, ?, ?, ?, ?), count = count + 1, "
                    "last_at = max(last_at, ?) WHERE id = ?",
                    (*_figures(candidate), now, alert_id),
                )
            else:
                (alert_id,) = db.execute(
                    f"INSERT INTO alerts (env, severity, kind, feature, {_FIGURES}, first_at, "
                    "last_at, count, delivery_status, attempts, next_attempt_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'pending', 0, ?) "
                    "RETURNING id",
                    (
                        candidate.env,
                        candidate.severity,
                        candidate.kind,
                        candidate.feature,
                        *_figures(candidate),
                        now,
                        now,
                        now,
                    ),
                ).fetchone()
                new = True
            alert = _stored(db, alert_id)
        _log_raised(alert, new)
        return RaisedAlert(alert, new)

    # -- reading -----------------------------------------------------------------------------

    def list(
        self, env: str, *, include_acknowledged: bool = True, limit: int | None = None
    ) -> builtins.list[Alert]:
        """The env's alerts, newest first."""
        open_only = "" if include_acknowledged else "AND acknowledged_at IS NULL "
        return self._select(
            f"WHERE env = ? {open_only}ORDER BY id DESC LIMIT ?",
            (env, -1 if limit is None else limit),
        )

    def get(self, alert_id: int) -> Alert | None:
        found = self._select("WHERE id = ?", (alert_id,))
        return found[0] if found else None

    # -- acknowledging -----------------------------------------------------------------------

    def acknowledge(self, alert_id: int, *, env: str, by: str, now: float) -> AckResult:
        """Mark the env's alert `alert_id` as seen: its repeats raise a new alert from now on,
        and if it was not delivered yet, it no longer is."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT acknowledged_at, delivery_status FROM alerts WHERE id = ? AND env = ?",
                (alert_id, env),
            ).fetchone()
            if row is None:
                raise AlertNotFoundError(
                    f"no alert {alert_id} in env {env!r}; `mlinfra alerts --env {env}` lists them"
                )
            already = row[0] is not None
            if not already:
                db.execute(
                    "UPDATE alerts SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ?",
                    (by, now, alert_id),
                )
                if row[1] == "pending":
                    db.execute(
                        "UPDATE alerts SET delivery_status = 'skipped', next_attempt_at = NULL, "
                        "last_error = ? WHERE id = ?",
                        (_ACKNOWLEDGED_BEFORE_DELIVERY, alert_id),
                    )
            alert = _stored(db, alert_id)
        return AckResult(alert, already)

    # -- delivery state (written by `_webhook.deliver_due`) ----------------------------------

    def due_deliveries(self, now: float) -> builtins.list[Alert]:
        """Alerts whose (next) delivery attempt is due at `now`, oldest first."""
        return self._select(
            "WHERE delivery_status = 'pending' AND next_attempt_at <= ? ORDER BY id", (now,)
        )

    def pending_count(self) -> int:
        """Alerts still to be delivered, due now or later."""
        with self._lock, translating_sqlite_errors(self.path, _DAMAGED_HINT, self._db):
            (count,) = self._db.execute(
                "SELECT count(*) FROM alerts WHERE delivery_status = 'pending'"
            ).fetchone()
        return int(count)

    def save_delivery(self, alert_id: int, delivery: Delivery) -> None:
        """Record where the delivery of `alert_id` stands; an alert acknowledged meanwhile keeps
        its 'skipped' unless this says it was delivered after all."""
        with self._transaction() as db:
            db.execute(
                "UPDATE alerts SET delivery_status = ?, attempts = ?, next_attempt_at = ?, "
                "delivered_at = ?, last_error = ? "
                "WHERE id = ? AND (delivery_status != 'skipped' OR ? = 'delivered')",
                (
                    delivery.status,
                    delivery.attempts,
                    delivery.next_attempt_at,
                    delivery.delivered_at,
                    delivery.last_error,
                    alert_id,
                    delivery.status,
                ),
            )

    def postpone(self, alert_ids: builtins.list[int], *, until: float) -> None:
        """Move pending deliveries to `until` at the earliest, attempts unchanged: the receiver
        failed for another alert, so these wait with it rather than each try it now."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE alerts SET next_attempt_at = max(next_attempt_at, ?) "
                "WHERE id = ? AND delivery_status = 'pending'",
                [(until, alert_id) for alert_id in alert_ids],
            )


def _stored(db: sqlite3.Connection, alert_id: int) -> Alert:
    """The alert as the transaction on `db` left it."""
    return _alert(db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone())


def _repeats(open_: Alert, candidate: AlertCandidate, now: float, cooldown: float) -> bool:
    """Is `candidate` a repeat of `open_`, counted into it rather than paged again?"""
    within = now - open_.first_at < cooldown
    return within and _SEVERITY_RANK[candidate.severity] <= _SEVERITY_RANK[open_.severity]


def _log_raised(alert: Alert, new: bool) -> None:
    where = f" {alert.feature}" if alert.feature else ""
    if new:
        level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        log.log(
            level,
            "alert %d [%s] %s %s%s: %s",
            alert.id,
            alert.severity,
            alert.env,
            alert.kind,
            where,
            alert.message,
        )
    else:
        log.info(
            "alert %d repeated (%d times since it was raised): %s",
            alert.id,
            alert.count,
            alert.message,
        )
