"""The instances of one model server: a run directory each, so that a new instance can start
beside the one serving and take over only once it is ready.

`<run_dir>/<n>/` holds instance n: its supervisord, config, logs and token. `<run_dir>/current`
names the instance the last successful create or update made, the one in the state. A server
started by an earlier mlinfra has its files in `<run_dir>` itself: it is an instance too, until it
is replaced.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..._fs import atomic_write_text
from ._supervisor import Supervisor, unix_socket_path

__all__ = ["Instances", "handover_path"]

_CURRENT = "current"


def handover_path(instance: Supervisor) -> Path:
    """Where the instance's master offers its listening socket to the instance replacing it."""
    return unix_socket_path(instance.run_dir, "handover.sock", tag="-handover")


@dataclass(frozen=True)
class Instances:
    run_dir: Path

    def all(self) -> list[Supervisor]:
        """Every instance with files here, oldest first."""
        found = [Supervisor(self.run_dir)] if self._legacy() else []
        return found + [Supervisor(self.run_dir / str(n)) for n in self._numbers()]

    def current(self) -> Supervisor | None:
        """The instance the state records, as far as this directory knows."""
        try:
            name = (self.run_dir / _CURRENT).read_text().strip()
        except OSError:
            return Supervisor(self.run_dir) if self._legacy() else None
        return Supervisor(self.run_dir / name) if name.isdigit() else None

    def new(self) -> Supervisor:
        """A directory for the next instance, numbered after every other and the current one."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        taken = self._numbers()
        current = self.current()
        if current is not None and current.run_dir.parent == self.run_dir:
            taken.append(int(current.run_dir.name))
        instance = Supervisor(self.run_dir / str(max(taken, default=0) + 1))
        instance.run_dir.mkdir(mode=0o700)
        return instance

    def make_current(self, instance: Supervisor) -> None:
        atomic_write_text(self.run_dir / _CURRENT, instance.run_dir.name)

    def retire(self, instance: Supervisor) -> None:
        """Stop the instance (and any orphan of it), then remove its files."""
        instance.stop()
        handover_path(instance).unlink(missing_ok=True)
        instance.socket.unlink(missing_ok=True)
        if instance.run_dir != self.run_dir:
            shutil.rmtree(instance.run_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # it was the only one, and never became current
            return
        for entry in self.run_dir.iterdir():  # the old layout: keep the instances inside
            if entry.name.isdigit() or entry.name == _CURRENT:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def retire_others(self, keep: Supervisor | None) -> None:
        """Retire every instance but `keep` (all, given None): what killed runs left, or the
        instance an update replaced."""
        for instance in self.all():
            if instance != keep:
                self.retire(instance)

    def clear(self) -> None:
        """Retire every instance and remove the directory."""
        (self.run_dir / _CURRENT).unlink(missing_ok=True)
        for instance in self.all():
            self.retire(instance)
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()

    def _legacy(self) -> bool:
        return (self.run_dir / "supervisord.conf").exists()

    def _numbers(self) -> list[int]:
        try:
            entries = list(self.run_dir.iterdir())
        except OSError:
            return []
        return sorted(int(e.name) for e in entries if e.name.isdigit() and e.is_dir())
