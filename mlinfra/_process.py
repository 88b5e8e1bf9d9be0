"""One way to identify a process: its pid and its start time.

A pid alone names whichever process holds that number now. Once a process exits, the system
hands its number to a later one, so a record that kept only the pid (a server worker's ack, a
rollout's driver) would take a stranger for it: a deploy would wait its whole timeout for a
"worker" that is someone's shell, and a dead driver would look alive.
"""

from __future__ import annotations

import os

import psutil
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ProcessIdentity"]

# psutil derives a start time from the boot time, which the kernel may shift by a fraction of a
# second when the clock is adjusted; two reads of one process can differ by that much.
_SAME_START_SECONDS = 1.0


class ProcessIdentity(BaseModel):
    """A process as records keep it: the pid and when that process started."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int = Field(ge=1)
    started: float | None = Field(
        default=None,
        description="start time (seconds since the epoch); None in records from before it was "
        "kept, which are trusted on the pid alone",
    )

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(pid=os.getpid(), started=psutil.Process().create_time())

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The process running under `pid` now, or None if there is none."""
        try:
            return cls(pid=pid, started=psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def process(self) -> psutil.Process | None:
        """The live process this identity names; None once it exited (a zombie has exited) or
        its pid went to another process."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            if self.started is not None and (
                abs(process.create_time() - self.started) >= _SAME_START_SECONDS
            ):
                return None
        except psutil.Error:
            return None
        return process

    def alive(self) -> bool:
        return self.process() is not None
