"""`mlinfra init`: a new project from a bundled template, with its own copy of the stack program.

The templates are the example projects (examples/iris, examples/diabetes), shipped inside the
package. The new project gets its own mlinfra.toml, written afresh: its name, `stack = "stacks"`,
and serving ports of its own, so that projects made on one machine do not clash.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import CONFIG_FILE
from ..config._models import NAME_PATTERN
from ..errors import ConfigError

__all__ = ["PORT_RANGE", "NewProject", "Template", "create_project", "project_ports"]

PORT_RANGE = range(20000, 30000)
_GITIGNORE = ".mlinfra/\n__pycache__/\n"
_BUNDLED = resources.files("mlinfra") / "_bundled"


class Template(StrEnum):
    """What the new project's model does; each is one of the bundled examples."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


_EXAMPLES = {Template.CLASSIFICATION: "iris", Template.REGRESSION: "diabetes"}


@dataclass(frozen=True)
class NewProject:
    config_file: Path
    ports: dict[str, int]
    """Serving port of each env, as written to mlinfra.toml."""


def create_project(
    destination: Path,
    *,
    template: Template = Template.CLASSIFICATION,
    name: str | None = None,
) -> NewProject:
    """Write a working project into `destination` (new or empty)."""
    if name is not None and not re.match(NAME_PATTERN, name):
        raise ConfigError(
            f"--name {name!r}: use lowercase letters, digits and dashes, starting with a letter "
            "(at most 40)"
        )
    project_name = name or _project_name(destination)
    example = _BUNDLED / _EXAMPLES[Template(template)]
    try:
        if destination.exists() and not destination.is_dir():
            raise ConfigError(f"{destination} is a file; choose a new directory")
        if destination.exists() and any(destination.iterdir()):
            raise ConfigError(f"{destination} is not empty; choose a new directory")
        config, ports = _project_config(example, project_name)
        _write_project(destination, example, config)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot create a project in {destination}: {reason}; "
            "choose a directory you can write to"
        ) from exc
    return NewProject(config_file=destination / CONFIG_FILE, ports=ports)


def project_ports(name: str, envs: dict[str, str]) -> dict[str, int]:
    """A serving port per env (env -> host), consecutive from a hash of the project name, so that
    projects of different names spread over PORT_RANGE; a port something listens on is skipped."""
    from ..providers.local._ports import port_free, spread_ports

    candidates = spread_ports(name, PORT_RANGE)
    ports: dict[str, int] = {}
    for env, host in envs.items():
        port = next((port for port in candidates if port_free(host, port)), None)
        if port is None:
            raise ConfigError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
        ports[env] = port
    return ports


def _project_config(example: Any, name: str) -> tuple[str, dict[str, int]]:
    """The example's settings under the new project's name, stack and ports, without comments."""
    document = tomllib.loads((example / CONFIG_FILE).read_text("utf-8"))
    document["project"] = {**document["project"], "name": name, "stack": "stacks"}
    envs: dict[str, dict[str, Any]] = document["env"]
    hosts = {
        env: settings.get("serving", {}).get("host", "127.0.0.1") for env, settings in envs.items()
    }
    ports = project_ports(name, hosts)
    for env, settings in envs.items():
        settings["serving"] = {**settings.get("serving", {}), "port": ports[env]}
    return _toml(document), ports


def _toml(document: dict[str, Any]) -> str:
    """mlinfra.toml as a person writes it: [project], then a table per model and per env, whose
    settings tables are dotted keys (`serving.port = 8701`), which can be added to line by line."""
    lines = ["[project]", *_assignments(document["project"])]
    for section in ("models", "env"):
        for table_name, table in document.get(section, {}).items():
            lines += ["", f"[{section}.{_key(table_name)}]"]
            lines += _assignments(table, dotted=section == "env")
    return "\n".join(lines) + "\n"


def _assignments(table: dict[str, Any], *, dotted: bool = False, prefix: str = "") -> list[str]:
    lines = []
    for key, value in table.items():
        if dotted and isinstance(value, dict):
            lines += _assignments(value, dotted=True, prefix=f"{prefix}{_key(key)}.")
        else:
            lines.append(f"{prefix}{_key(key)} = {_value(value)}")
    return lines


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's too
    if isinstance(value, list):
        if len(value) < 2:
            return f"[{', '.join(_value(item) for item in value)}]"
        return "[\n" + "".join(f"    {_value(item)},\n" for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _write_project(destination: Path, example: Any, config: str) -> None:
    """The stack program, the example's code and `config`; on failure, nothing is left."""
    created = not destination.exists()
    try:
        destination.mkdir(parents=True, exist_ok=True)
        (destination / "stacks").mkdir()
        program = (_BUNDLED / "stacks" / "__main__.py").read_text("utf-8")
        (destination / "stacks" / "__main__.py").write_text(program, "utf-8")
        for entry in example.iterdir():
            if entry.is_file() and entry.name.endswith(".py") and entry.name != "__init__.py":
                (destination / entry.name).write_text(entry.read_text("utf-8"), "utf-8")
        (destination / CONFIG_FILE).write_text(config, "utf-8")
        (destination / ".gitignore").write_text(_GITIGNORE, "utf-8")
    except OSError:
        _remove_written(destination, created)
        raise


def _remove_written(destination: Path, created: bool) -> None:
    """Leave the destination as it was: gone if we made it, else empty again."""
    if created:
        shutil.rmtree(destination, ignore_errors=True)
    elif destination.is_dir():
        for child in destination.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _project_name(destination: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", destination.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"ml-{name}".strip("-")
    return name[:40].rstrip("-")
