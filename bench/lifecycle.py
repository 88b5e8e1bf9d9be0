"""Lifecycle benchmarks: train overhead, search speed-up, `models list` at 10,000 versions.

Run by hand from the repository root and paste the table into docs/benchmarks.md:

    .venv/bin/python bench/lifecycle.py [--only overhead,search,listing]
        [--baseline-ref REV] [--baseline-python PY]

1. `train()` (checks, split, fit, test metrics, importances, skops, registry) against a plain
   `fit` of the same random forest on the same data, and on the same training split.
2. A 16-trial grid search (3 folds each) in this process, then on a real local Dask cluster
   (the training cluster's provider) of one worker and of two; with `--baseline-ref`, the same
   search by the mlinfra of that git revision (say, the loky pool before the Dask cluster) with
   two workers, run by `--baseline-python` (default: this interpreter) in a checkout of it.
3. `mlinfra models list --json`, whole process, on a real `up` of the iris example with 10,000
   versions, beside `mlinfra outputs --json` (the same start-up and stack lookup, no listing).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from mlinfra.registry import Registry, initialize
from mlinfra.training import ModelDefinition, train

ROOT = Path(__file__).resolve().parent.parent
MLINFRA = [sys.executable, "-m", "mlinfra"]
VERSIONS = 10_000


def dataset(rows: int) -> tuple[pd.DataFrame, pd.Series]:
    features, target = make_classification(
        n_samples=rows, n_features=20, n_informative=10, random_state=0
    )
    return pd.DataFrame(features, columns=[f"f{i}" for i in range(20)]), pd.Series(target, name="y")


def timed(action) -> float:  # noqa: ANN001 - any callable
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def train_overhead(work: Path, repeats: int = 3) -> list[tuple[str, str]]:
    features, target = dataset(20_000)

    def forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=60, n_jobs=1, random_state=0)

    model = ModelDefinition(
        name="bench", task="classification", load_data=lambda: (features, target), estimator=forest
    )
    x_train, _, y_train, _ = model.split(features, target)
    initialize(work / "overhead")
    plain, split, trained = [], [], []
    with Registry.open(work / "overhead") as registry:
        for _ in range(repeats):
            plain.append(timed(lambda: forest().fit(features, target)))
            split.append(timed(lambda: forest().fit(x_train, y_train)))
            trained.append(
                timed(lambda: train(model, registry=registry, env="bench", workspace=work / "ws"))
            )
    p, s, t = (statistics.median(x) for x in (plain, split, trained))
    return [
        ("plain fit, all 20,000 rows (forest of 60 trees)", f"{p:.2f} s"),
        ("plain fit, the 16,000-row training split", f"{s:.2f} s"),
        ("`train()`, search none, one worker", f"{t:.2f} s"),
        ("train / plain fit on the same data (target <= 1.3x)", f"{t / p:.2f}x"),
        ("train / plain fit on the training split (pure overhead)", f"{t / s:.2f}x"),
    ]


SEARCH_MODEL = """
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from mlinfra.training import ModelDefinition

features, target = make_classification(
    n_samples=6_000, n_features=20, n_informative=10, random_state=0
)
features = pd.DataFrame(features, columns=[f"f{i}" for i in range(20)])
target = pd.Series(target, name="y")
model = ModelDefinition(
    name="search",
    task="classification",
    load_data=lambda: (features, target),
    estimator=lambda: RandomForestClassifier(n_estimators=80, n_jobs=1, random_state=0),
    search_space={"max_depth": [6, 8, 10, 12], "min_samples_leaf": [1, 2, 4, 8]},
)
"""
# The baseline revision's API: `train(..., workers=2)` ran the folds on its loky pool.
BASELINE = (
    SEARCH_MODEL
    + """
import sys
from pathlib import Path
from mlinfra.registry import Registry, initialize
from mlinfra.training import train

work = Path(sys.argv[1])
initialize(work / "registry")
with Registry.open(work / "registry") as registry:
    for run in ("cold", "warm"):
        result = train(model, registry=registry, env="bench", workspace=work / "ws", workers=2)
        print(run, result.seconds["search"])
"""
)


def search_speedup(
    work: Path, baseline_ref: str | None, baseline_python: str
) -> list[tuple[str, str]]:
    from mlinfra.providers.local import DaskClusterProvider

    namespace: dict = {}
    exec(SEARCH_MODEL, namespace)  # the same model as the baseline's
    model = namespace["model"]
    initialize(work / "search")
    seconds: dict = {}
    with Registry.open(work / "search") as registry:

        def search(scheduler: str | None) -> float:
            result = train(
                model, registry=registry, env="bench", workspace=work / "ws", scheduler=scheduler
            )
            assert len(result.search.trials) == 16
            return result.seconds["search"]

        seconds["in process"] = search(None)
        for workers in (1, 2):
            provider = DaskClusterProvider()
            cluster = provider.create(
                {"run_dir": str(work / f"cluster-{workers}"), "workers": workers}
            )
            try:  # the first search on a new cluster also imports scikit-learn in its workers
                seconds[workers, "cold"] = search(cluster.outs["scheduler"])
                seconds[workers] = search(cluster.outs["scheduler"])
            finally:
                provider.delete(cluster.id, cluster.outs)
    rows = [
        ("16-trial grid search x 3 folds, in process", f"{seconds['in process']:.2f} s"),
        ("same, Dask cluster of 1 worker", f"{seconds[1]:.2f} s"),
        ("same, Dask cluster of 2 workers", f"{seconds[2]:.2f} s"),
        ("same, 2 workers, first search on the new cluster", f"{seconds[2, 'cold']:.2f} s"),
        ("speed-up, 2 workers over 1 (target >= 1.7x)", f"{seconds[1] / seconds[2]:.2f}x"),
        ("speed-up, 2 workers over in process", f"{seconds['in process'] / seconds[2]:.2f}x"),
    ]
    if baseline_ref is not None:
        cold, warm = baseline(work, baseline_ref, baseline_python)
        rows += [
            (f"same at {baseline_ref}, its pool of 2 workers, cold", f"{cold:.2f} s"),
            (f"same at {baseline_ref}, its pool of 2 workers, warm", f"{warm:.2f} s"),
            (
                "Dask 2 workers / the baseline's warm pool (target <= 1.1x)",
                f"{seconds[2] / warm:.2f}x",
            ),
        ]
    return rows


def baseline(work: Path, ref: str, python: str) -> tuple[float, float]:
    """The baseline revision's two-worker search (cold, warm), in a checkout of it."""
    checkout = work / "baseline"
    checkout.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "mlinfra"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive.stdout, check=True)
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [python, "-c", BASELINE, str(work / "baseline-run")],
        cwd=checkout,  # `-c` puts the working directory first on the path: not this checkout
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the baseline at {ref} failed: {done.stderr[-2000:]}")
    found = dict(line.split() for line in done.stdout.splitlines())
    return float(found["cold"]), float(found["warm"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [*MLINFRA, *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"mlinfra {' '.join(args)} failed: {done.stderr}")
    return done


def listing(work: Path, runs: int = 7) -> list[tuple[str, str]]:
    project = work / "iris"
    shutil.copytree(ROOT / "examples" / "iris", project, ignore=shutil.ignore_patterns(".mlinfra"))
    config = project / "mlinfra.toml"
    text = config.read_text().replace('"../../stacks"', f'"{ROOT / "stacks"}"')
    text = text.replace("serving.port = 8701", f"serving.port = {free_port()}")
    config.write_text(text.replace("serving.port = 8702", f"serving.port = {free_port()}"))
    cli(project, "up", "--env", "dev", "--yes")
    try:
        cli(project, "train", "--env", "dev", "--search", "none")
        database = project / ".mlinfra" / "envs" / "dev" / "registry" / "registry.db"
        with sqlite3.connect(database) as db:  # copies of the real version, made in SQL for speed
            db.execute(
                "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO versions SELECT model, i, env, created_at, created_by, "
                "artifact_sha256, artifact_size, reference_sha256, params, metrics, lineage, "
                "trusted_types, metric, score, git_commit, git_dirty, data_hash "
                "FROM versions JOIN n WHERE version = 1",
                (VERSIONS,),
            )
            db.execute("UPDATE models SET last_version = ?", (VERSIONS,))
        listed = [
            timed(lambda: cli(project, "models", "list", "--env", "dev", "--json"))
            for _ in range(runs)
        ]
        outputs = [
            timed(lambda: cli(project, "outputs", "--env", "dev", "--json")) for _ in range(runs)
        ]
        with Registry.open(database.parent) as registry:
            library = min(timed(registry.summaries) for _ in range(runs))
    finally:
        cli(project, "destroy", "--env", "dev", "--yes")
    return [
        (f"`mlinfra models list --json`, {VERSIONS:,} versions, median (target < 0.5 s)",
         f"{statistics.median(listed):.3f} s"),
        ("same, best run", f"{min(listed):.3f} s"),
        ("`mlinfra outputs --json` (start-up and stack lookup only), median",
         f"{statistics.median(outputs):.3f} s"),
        (f"`Registry.summaries()` in process, {VERSIONS:,} versions", f"{library:.3f} s"),
    ]  # fmt: skip


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="overhead,search,listing", help="comma-separated parts")
    parser.add_argument("--baseline-ref", help="git revision to time the search against")
    parser.add_argument("--baseline-python", default=sys.executable, help="its interpreter")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    started_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlinfra-bench-lifecycle-") as folder:
        work = Path(folder)
        rows = []
        if "overhead" in parts:
            rows += train_overhead(work)
        if "search" in parts:
            rows += search_speedup(work, args.baseline_ref, args.baseline_python)
        if "listing" in parts:
            rows += listing(work)
    cpu = platform.processor() or platform.machine()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; {date.today().isoformat()}; "
          f"load average {started_load:.1f} before, {load} after\n")  # fmt: skip
    print("| measurement | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
