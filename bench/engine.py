"""Benchmark the embedded engine: whole-process `mlinfra preview` and no-op `mlinfra up`.

    python bench/engine.py            # stacks of 10, 100, 1000 resources, and the iris dev env
    python bench/engine.py --runs 7

Prints a markdown table; copy it into docs/benchmarks.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SYNTHETIC_PROVIDER = '''
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class ValueProvider(ResourceProvider):
    """Stores its inputs and nothing else: the engine's own cost, without provider work."""

    serialize_as_secret_always = False

    def create(self, props):
        return CreateResult(id_=props["key"], outs=props)


class Value(Resource, module="bench", name="Value"):
    key: pulumi.Output[str]

    def __init__(self, name, opts=None):
        super().__init__(ValueProvider(), name, {"key": name, "payload": "x" * 64}, opts)
'''

SYNTHETIC_PROGRAM = """
import os
import pulumi
from value_provider import Value

values = [Value(f"v{i}") for i in range(int(os.environ["BENCH_RESOURCES"]))]
pulumi.export("count", len(values))
"""


def _synthetic_project(folder: Path) -> Path:
    (folder / "stack").mkdir(parents=True)
    (folder / "stack" / "value_provider.py").write_text(SYNTHETIC_PROVIDER)
    (folder / "stack" / "__main__.py").write_text(SYNTHETIC_PROGRAM)
    (folder / "mlinfra.toml").write_text(
        '[project]\nname = "bench"\nstack = "stack"\n\n[env.dev]\nengine = "embedded"\n'
    )
    return folder


def _time(args: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mlinfra", *args],
            cwd=cwd,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _measure(project: Path, label: str, env: dict[str, str], runs: int) -> str:
    subprocess.run(
        [sys.executable, "-m", "mlinfra", "up", "--yes", "--env", "dev"],
        cwd=project,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    preview = _time(["preview", "--env", "dev"], project, env, runs)
    noop = _time(["up", "--yes", "--env", "dev"], project, env, runs)
    return f"| {label} | {preview:.2f} s | {noop:.2f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--skip-example", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, NO_COLOR="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = _synthetic_project(Path(tmp) / "synthetic")
        for size in (int(s) for s in args.sizes.split(",")):
            shutil.rmtree(project / ".mlinfra", ignore_errors=True)
            env["BENCH_RESOURCES"] = str(size)
            rows.append(_measure(project, f"synthetic, {size} dynamic resources", env, args.runs))
        if not args.skip_example:
            example = Path(tmp) / "iris"
            shutil.copytree(
                ROOT / "examples" / "iris", example, ignore=shutil.ignore_patterns(".mlinfra")
            )
            (example / "mlinfra.toml").write_text(
                (example / "mlinfra.toml")
                .read_text()
                .replace('"../../stacks"', f'"{ROOT / "stacks"}"')
            )
            try:
                rows.append(
                    _measure(example, "examples/iris, env dev (3 components)", env, args.runs)
                )
            finally:
                subprocess.run(
                    [sys.executable, "-m", "mlinfra", "destroy", "--yes", "--env", "dev"],
                    cwd=example,
                    env=env,
                    stdout=subprocess.DEVNULL,
                )
    print(f"Embedded engine, whole process, median of {args.runs} runs")
    print(
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')})\n"
    )
    print("| stack | `mlinfra preview` | no-op `mlinfra up --yes` |")
    print("|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
