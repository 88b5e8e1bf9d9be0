"""The line every benchmark table opens with: the machine, the date, and its load, which on a
shared two-core machine decides more than the code does."""

from __future__ import annotations

import os
import platform
from datetime import datetime


def machine_line(load_before: float) -> str:
    """`Machine: ...; load average X before, a, b, c after` (the 1, 5 and 15 minute loads)."""
    cpu = platform.processor() or platform.machine()
    after = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {datetime.now():%Y-%m-%d %H:%M}; "
        f"load average {load_before:.1f} before, {after} after"
    )
