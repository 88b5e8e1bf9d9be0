"""The package as users and CI meet it: its public surface, a lean CLI start-up, clean lint and
types."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "mlinfra",
    "mlinfra.config",
    "mlinfra.state",
    "mlinfra.engine",
    "mlinfra.components",
    "mlinfra.providers.local",
    "mlinfra.registry",
    "mlinfra.data",
    "mlinfra.training",
    "mlinfra.evaluation",
    "mlinfra.serving",
    "mlinfra.rollout",
    "mlinfra.monitoring",
    "mlinfra.preview",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_public_surface_is_declared_and_importable(name):
    """Sorting of __all__ is ruff's job (RUF022); here every declared name must exist."""
    module = importlib.import_module(name)
    surface = module.__all__
    assert surface and len(set(surface)) == len(surface)
    for attribute in surface:
        assert hasattr(module, attribute), f"{name}.{attribute} is in __all__ but missing"


def test_stack_commands_do_not_import_sklearn_textual_or_the_web_stack():
    code = (
        "import sys, mlinfra.cli, mlinfra.engine._embedded, mlinfra.components\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'sklearn', 'textual', 'fastapi', 'starlette', 'uvicorn', 'pandas', 'skops', 'scipy'}]\n"
        "print(','.join(sorted(heavy)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_ruff_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "mlinfra", "tests", "bench", "stacks", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_mypy_finds_nothing_in_the_package():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "mlinfra"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_ci_runs_exactly_the_readme_test_command():
    import re

    blocks = re.findall(r"```(?:sh|bash|shell)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    readme_test_command = blocks[1].strip()
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == readme_test_command
