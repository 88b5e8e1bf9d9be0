"""The project's code for the workers of an existing Dask cluster (`training.scheduler`), which
cannot see this machine's code paths: a worker plugin, in a module of its own as workers import
it by name, and importing distributed only where a search sends code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["ProjectCode"]


class ProjectCode(WorkerPlugin):
    """A zip of a code path in each worker's directory, first on its import path, so that what
    the folds unpickle imports from it (nothing is imported now)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def setup(self, worker: Any) -> None:
        archive = Path(worker.local_directory) / self.name
        archive.write_bytes(self.data)
        if str(archive) not in sys.path:
            sys.path.insert(0, str(archive))
