"""How the TUI writes times and numbers: UTC wall-clock times (never "3 s ago", so that a
screen of the same data always reads the same), short numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["at", "milliseconds", "number", "percent", "short"]


def at(when: float | str | datetime | None) -> str:
    """`2026-12-03 14:34:10`, in UTC, from Unix seconds, an ISO string or a datetime."""
    if when is None or when == "":
        return "-"
    if isinstance(when, int | float):
        moment = datetime.fromtimestamp(when, UTC)
    elif isinstance(when, str):
        try:
            moment = datetime.fromisoformat(when)
        except ValueError:
            return when
    else:
        moment = when
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def number(value: Any) -> str:
    """A metric or parameter as people read it: four significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def short(text: str | None, length: int = 12) -> str:
    """A hash or commit cut to `length` characters."""
    return "-" if not text else text[:length]
