"""`mlinfra init`: a new project from a bundled template, with its own copy of the stack program."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..config import CONFIG_FILE
from ..errors import ConfigError

__all__ = ["TEMPLATES", "create_project"]

TEMPLATES = ("iris",)
_GITIGNORE = ".mlinfra/\n__pycache__/\n"


def create_project(destination: Path, *, template: str = "iris", name: str | None = None) -> Path:
    """Write a working project into `destination` (new or empty) and return its config file."""
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}")
    if destination.exists() and any(destination.iterdir()):
        raise ConfigError(f"{destination} is not empty; choose a new directory")
    project_name = name or _project_name(destination)
    bundled = resources.files("mlinfra") / "_bundled"
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "stacks").mkdir()
    stack_program = bundled / "stacks" / "__main__.py"
    (destination / "stacks" / "__main__.py").write_text(stack_program.read_text("utf-8"), "utf-8")
    source = bundled / template
    for entry in source.iterdir():
        if (
            entry.is_file()
            and entry.name.endswith((".py", ".toml"))
            and entry.name != "__init__.py"
        ):
            (destination / entry.name).write_text(entry.read_text("utf-8"), "utf-8")
    config = destination / CONFIG_FILE
    text = config.read_text("utf-8")
    text = re.sub(r'(?m)^stack = ".*"$', 'stack = "stacks"', text)
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{project_name}"', text, count=1)
    config.write_text(text, "utf-8")
    (destination / ".gitignore").write_text(_GITIGNORE, "utf-8")
    return config


def _project_name(destination: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", destination.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"ml-{name}".strip("-")
    return name[:40]
