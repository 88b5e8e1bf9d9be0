"""Durations as people write them in mlinfra.toml and on the command line: 30s, 2m, 1h, 7d."""

from __future__ import annotations

import re

from .errors import ConfigError

__all__ = ["format_duration", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """`30s`, `2m`, `500ms`, `1h`, `7d` or plain seconds, as seconds; positive."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{what} {text!r}: use a positive duration such as 30s, 2m, 1h or 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 3600 -> '1h', 90 -> '90s', 0.5 -> '500ms'."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNIT_SECONDS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds * 1000:g}ms"
