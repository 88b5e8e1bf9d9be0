"""The training cluster for real: a Dask scheduler and workers under supervisord on loopback,
started by its provider, searched on, a worker killed mid-search, the scheduler lost; and the
iris example's staging env (two workers) brought up, trained on and repaired through the CLI."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas
import psutil
import pytest
from conftest import IrisProject, wait_for
from sklearn.ensemble import GradientBoostingClassifier

from mlinfra.errors import MlinfraError
from mlinfra.providers.local._supervisor import Supervisor
from mlinfra.training._folds import DaskFolds, FoldResult, FoldTask, InProcessFolds

pytestmark = pytest.mark.slow

WORKERS = 2  # conftest's dask_cluster


def _processes(run_dir: Path) -> list[psutil.Process]:
    return [*Supervisor(run_dir / "scheduler").marked(), *Supervisor(run_dir / "workers").marked()]


def _worker_processes(run_dir: Path) -> list[psutil.Process]:
    """The worker processes the nannies started (children of `dask worker`)."""
    program = Supervisor(run_dir / "workers").program()
    assert program is not None
    return [p for p in program.children() if "spawn_main" in " ".join(p.cmdline())]


def _search_data() -> tuple[pandas.DataFrame, pandas.Series, list[FoldTask]]:
    """Eight candidates of a boosted model, three folds each: fits of a few tenths of a second."""
    rng = np.random.default_rng(0)
    features = pandas.DataFrame(rng.normal(size=(600, 8)), columns=[f"x{i}" for i in range(8)])
    target = pandas.Series((features["x0"] + features["x1"] ** 2 > 1).astype(int))
    folds = np.array_split(np.arange(600), 3)
    tasks = [
        FoldTask(
            trial,
            fold,
            {"n_estimators": 40 + 10 * trial, "max_depth": 2},
            np.concatenate([f for i, f in enumerate(folds) if i != fold]),
            folds[fold],
        )
        for trial in range(8)
        for fold in range(3)
    ]
    return features, target, tasks


def _scores(results: list[FoldResult]) -> list[tuple[int, int, float | None, str | None]]:
    return [(r.trial, r.fold, r.score, r.error) for r in results]


def test_cluster_starts_on_loopback_with_every_worker_and_reports_its_health(
    dask_cluster: dict[str, Any],
) -> None:
    outs = dask_cluster["outs"]
    assert outs["healthy"] is True and outs["workers"] == WORKERS
    assert outs["scheduler"] == f"tcp://127.0.0.1:{outs['scheduler_port']}"
    assert outs["dashboard"] == f"http://127.0.0.1:{outs['dashboard_port']}/status"
    read = dask_cluster["provider"].read(dask_cluster["id"], outs)
    assert read.outs["healthy"] is True
    run_dir = Path(dask_cluster["id"])
    assert len(_worker_processes(run_dir)) == WORKERS
    for process in _processes(run_dir):
        for connection in process.net_connections("tcp"):
            if connection.status == psutil.CONN_LISTEN:
                assert connection.laddr.ip == "127.0.0.1"


def test_search_with_a_worker_killed_mid_search_ends_as_an_undisturbed_one(
    dask_cluster: dict[str, Any],
) -> None:
    features, target, tasks = _search_data()
    estimator = GradientBoostingClassifier(random_state=0)
    alone = InProcessFolds()
    expected = alone.run(alone.share(features, target), estimator, "accuracy", tasks, print)

    run_dir = Path(dask_cluster["id"])
    victim = _worker_processes(run_dir)[0]
    done: list[FoldResult] = []

    def kill_after_two(result: FoldResult) -> None:
        done.append(result)
        if len(done) == 2:
            os.kill(victim.pid, signal.SIGKILL)

    folds = DaskFolds(dask_cluster["outs"]["scheduler"])
    try:
        results = folds.run(
            folds.share(features, target), estimator, "accuracy", tasks, kill_after_two
        )
    finally:
        folds.close()
    assert not victim.is_running() or victim.status() == psutil.STATUS_ZOMBIE
    assert _scores(results) == _scores(expected)
    assert len(done) == len(tasks)
    # the nanny started a new worker in its place: the cluster is whole again
    provider = dask_cluster["provider"]
    wait_for(
        lambda: provider.read(dask_cluster["id"], dask_cluster["outs"]).outs["healthy"],
        "whole again",
    )


def test_lost_scheduler_is_a_clear_error_and_seen_by_read(dask_cluster: dict[str, Any]) -> None:
    run_dir = Path(dask_cluster["id"])
    Supervisor(run_dir / "scheduler").stop()  # its supervisord too: nothing brings it back
    read = dask_cluster["provider"].read(dask_cluster["id"], dask_cluster["outs"])
    assert read.outs["healthy"] is False
    assert "scheduler is not running" in read.outs["problem"]
    folds = DaskFolds(dask_cluster["outs"]["scheduler"])
    with pytest.raises(MlinfraError, match="cannot be reached.*mlinfra up --refresh"):
        folds.connect()


def test_staging_trains_on_its_cluster_and_up_refresh_repairs_a_dead_scheduler(
    iris_project: IrisProject,
) -> None:
    up = iris_project.cli("up", "--env", "staging", "--yes", timeout=300)
    assert up.returncode == 0, up.stderr
    outputs = json.loads(iris_project.cli("outputs", "--env", "staging", "--json").stdout)
    assert outputs["training_scheduler"].startswith("tcp://127.0.0.1:")
    assert outputs["training_dashboard"].endswith("/status")

    trained = iris_project.cli("train", "--env", "staging", "--json", timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["search"]["trials"] == 8

    run_dir = Path(outputs["training_workspace"]) / "cluster"
    Supervisor(run_dir / "scheduler").stop()
    refreshed = iris_project.cli("refresh", "--env", "staging")
    assert "1 drifted" in refreshed.stdout and "scheduler is not running" in refreshed.stdout
    failed = iris_project.cli("train", "--env", "staging")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    line = failed.stderr.strip().splitlines()[-1]  # after the progress bar's "failed"
    assert line.startswith("error:") and "cannot be reached" in line
    assert "mlinfra up --refresh" in line

    repaired = iris_project.cli("up", "--env", "staging", "--refresh", "--yes", timeout=300)
    assert repaired.returncode == 0, repaired.stderr
    again = iris_project.cli("train", "--env", "staging", "--json", timeout=300)
    assert again.returncode == 0, again.stderr


def test_dev_has_no_cluster_and_trains_in_process(iris_project: IrisProject) -> None:
    up = iris_project.cli("up", "--env", "dev", "--yes")
    assert up.returncode == 0, up.stderr
    outputs = json.loads(iris_project.cli("outputs", "--env", "dev", "--json").stdout)
    assert "training_scheduler" not in outputs and outputs["training_workers"] == 1
    trained = iris_project.cli("train", "--env", "dev", "--json")
    assert trained.returncode == 0, trained.stderr


@pytest.mark.parametrize(
    ("training", "said"),
    [
        ('scheduler = "dask.internal:8786"', "use tcp://host:port"),
        ('scheduler = "tcp://dask.internal"', "use tcp://host:port"),
        ('scheduler = "tcp://dask.internal:8786"\nworkers = 4', "drop training.workers"),
    ],
)
def test_a_bad_training_cluster_setting_is_one_line_exit_2(
    iris_project: IrisProject, training: str, said: str
) -> None:
    config = iris_project.root / "mlinfra.toml"
    config.write_text(config.read_text() + f"\n[env.dev.training]\n{training}\n")
    done = iris_project.cli("preview", "--env", "dev")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "env.dev.training" in line and said in line, line
