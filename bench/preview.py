"""Preview environments: a branch env from nothing to serving a trained, gated model.

Run by hand from the repository root and paste the table into docs/benchmarks.md:

    .venv/bin/python bench/preview.py --runs 3

On a copy of the iris example (examples/iris) whose env dev is up and serves a champion (its
gates but `latency_ms_single_row <= 5`, which on a loaded machine measures the load), each run
times the whole `mlinfra` processes a pull request's CI job runs for a new branch (`up --yes`,
`train --search none`, `evaluate latest`, `deploy latest`), then the same four for a second push
to that branch, then `destroy --yes --delete-data`. Target: the first four under 30 s in all.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_line

ROOT = Path(__file__).resolve().parent.parent
MLINFRA = [sys.executable, "-m", "mlinfra"]
STEPS = (
    ("up", ("up", "--yes")),
    ("train --search none", ("train", "--search", "none")),
    ("evaluate latest", ("evaluate", "latest")),
    ("deploy latest", ("deploy", "latest")),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_project(work: Path) -> Path:
    """The iris example with its own ports, the repository's stack program, no latency gate."""
    root = work / "iris"
    shutil.copytree(ROOT / "examples" / "iris", root, ignore=shutil.ignore_patterns(".mlinfra"))
    config = root / "mlinfra.toml"
    text = config.read_text().replace('"../../stacks"', f'"{ROOT / "stacks"}"')
    text = re.sub(r"serving\.port = \d+", lambda _: f"serving.port = {free_port()}", text)
    text = text.replace('    "latency_ms_single_row <= 5",\n', "")
    config.write_text(text)
    return root


def run(root: Path, *args: str, branch: str | None = None) -> float:
    """One whole `mlinfra` process on env dev (of `branch`); its wall time, or exit on failure."""
    env = {**os.environ, "MLINFRA_ENV": "dev", "NO_COLOR": "1"}
    if branch is not None:
        env["MLINFRA_BRANCH"] = branch
    started = time.perf_counter()
    done = subprocess.run(
        [*MLINFRA, *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"`mlinfra {' '.join(args)}` (branch {branch}) failed: {done.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="mlinfra-bench-preview-"))
    root = make_project(work)
    first: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    second: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    destroy: list[float] = []
    try:
        for _, args in (*STEPS[:2], STEPS[3]):  # the base env, serving a champion to seed from
            run(root, *args)
        for number in range(options.runs):
            branch = f"feature/bench-{number}"
            for times in (first, second):
                for name, args in STEPS:
                    times[name].append(run(root, *args, branch=branch))
            destroy.append(run(root, "destroy", "--yes", "--delete-data", branch=branch))
    finally:
        subprocess.run(
            [*MLINFRA, "destroy", "--yes", "--delete-data", "--env", "dev"],
            cwd=root,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)
    print(f"{machine_line(load_before)}; median of {options.runs} runs\n")
    print("| step | new branch env | second push |")
    print("|---|---|---|")
    for name, _ in STEPS:
        print(f"| `{name}` | {statistics.median(first[name]):.2f} s | "
              f"{statistics.median(second[name]):.2f} s |")  # fmt: skip
    totals = [sum(first[name][run] for name, _ in STEPS) for run in range(options.runs)]
    again = [sum(second[name][run] for name, _ in STEPS) for run in range(options.runs)]
    print(f"| **in all** (target < 30 s) | **{statistics.median(totals):.2f} s** | "
          f"{statistics.median(again):.2f} s |")  # fmt: skip
    print(f"| `destroy --yes --delete-data` | {statistics.median(destroy):.2f} s | |")
    print(f"\nnew branch env, each run: {', '.join(f'{total:.1f} s' for total in totals)}")


if __name__ == "__main__":
    main()
