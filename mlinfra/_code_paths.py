"""The project's own modules on the import path of every process mlinfra starts for an env.

A model may hold classes from the project (`features.RatioFeatures`), so whatever unpickles it
imports them as `train` did. The stack declares the directories (`code_paths`, the project root
by default); training workers, the model server and the rollout driver are each handed them
explicitly (`--code-path DIR`) and put them first on `sys.path`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._fs import atomic_write_text

__all__ = [
    "CODE_PATH_OPTION",
    "add_code_path_option",
    "code_path_arguments",
    "put_first_on_path",
    "record_code_paths",
    "recorded_code_paths",
]

CODE_PATH_OPTION = "--code-path"
_RECORD_FILE = "code-paths.json"


def put_first_on_path(paths: Iterable[str]) -> None:
    """Put `paths` first on `sys.path`, in their order; one already there moves to the front."""
    for folder in reversed([str(path) for path in paths]):
        while folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)


def code_path_arguments(paths: Iterable[str]) -> list[str]:
    """The command-line options that hand `paths` to `python -m mlinfra.serving` or `.rollout`."""
    return [argument for path in paths for argument in (CODE_PATH_OPTION, str(path))]


def add_code_path_option(parser: argparse.ArgumentParser) -> None:
    """`--code-path DIR`, repeatable, into `args.code_paths` as absolute paths."""
    parser.add_argument(
        CODE_PATH_OPTION,
        dest="code_paths",
        action="append",
        default=[],
        type=lambda text: str(Path(text).resolve()),
        metavar="DIR",
        help="directory of the project's own modules, put first on the import path; repeatable",
    )


def record_code_paths(directory: Path, paths: Sequence[str]) -> None:
    """Say, in a server's deployment directory, which code paths it runs with."""
    atomic_write_text(directory / _RECORD_FILE, json.dumps(list(paths)) + "\n")


def recorded_code_paths(directory: Path) -> list[str]:
    """The code paths the env's server runs with, so its rollout driver imports the same; none
    when no server has recorded them."""
    try:
        paths = json.loads((directory / _RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(paths, list):
        return []
    return [str(path) for path in paths]
