"""The one clock of branch envs: when they were made, last brought up, and when they expire.

`MLINFRA_NOW` (seconds since the epoch, or an ISO 8601 time) stands in for the real time, so
that a test or a dry run can ask what `gc` would remove next week."""

from __future__ import annotations

import os
import time
from datetime import datetime

from ..errors import ConfigError

__all__ = ["NOW_ENV", "now"]

NOW_ENV = "MLINFRA_NOW"


def now() -> float:
    """Seconds since the epoch: `$MLINFRA_NOW` when set, else the real time."""
    text = os.environ.get(NOW_ENV, "").strip()
    if not text:
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{NOW_ENV}={text!r}: use seconds since the epoch or an ISO 8601 time "
            "(2030-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(f"{NOW_ENV}={text!r}: give the time zone (Z, or +02:00)")
    return moment.timestamp()
