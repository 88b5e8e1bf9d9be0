"""Atomic writes on real files, including a real process killed half-way through one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlinfra._fs import atomic_write_bytes, atomic_write_text, partial_files


def test_write_gives_the_mode_asked_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "public.json", "{}")
        atomic_write_text(tmp_path / "deep" / "private", "token", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "public.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "deep" / "private").stat().st_mode) == 0o600
    assert (tmp_path / "deep" / "private").read_text() == "token"


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "table.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_process_killed_before_the_rename_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "pool.json"
    atomic_write_text(target, "old")
    # The child dies by SIGKILL at its fsync: the new bytes are written, the rename never runs.
    child = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from mlinfra import _fs\n"
        "_fs.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
        "_fs.atomic_write_text(Path(sys.argv[1]), 'new')\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(target)], check=False)
    assert result.returncode == -9
    assert target.read_text() == "old"
    [partial] = partial_files(target)
    assert partial.read_text() == "new"
    assert partial_files(tmp_path / "other.json") == []
