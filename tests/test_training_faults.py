"""Training runs in real processes: killed with SIGKILL mid-search, and several at once; and
runs whose user code fails."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import wait_for
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from mlinfra.errors import ConfigError
from mlinfra.registry import Registry, initialize
from mlinfra.training import ModelDefinition, train

# `python -c TRAIN REGISTRY WORKSPACE SCHEDULER SEARCH`: one training run of a forest on iris
# (SCHEDULER empty: in process).
TRAIN = """
import sys
from pathlib import Path
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from mlinfra.registry import Registry
from mlinfra.training import ModelDefinition, train

data = load_iris(as_frame=True)
model = ModelDefinition(
    name="iris", task="classification", load_data=lambda: (data.data, data.target),
    estimator=lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    search_space={"n_estimators": [100, 200, 300], "max_depth": [2, 3, 4, 5]},
)
registry = Registry.open(sys.argv[1])
result = train(model, registry=registry, env="dev", workspace=Path(sys.argv[2]),
               scheduler=sys.argv[3] or None, search=sys.argv[4])
print(result.version.version)
"""


def start_training(root: Path, scheduler: str, search: str) -> subprocess.Popen[str]:
    args = [str(root / "registry"), str(root / "ws"), scheduler, search]
    return subprocess.Popen([sys.executable, "-c", TRAIN, *args], stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_training_registers_nothing_and_the_cluster_drops_its_folds(
    tmp_path: Path, dask_cluster: dict
) -> None:
    initialize(tmp_path / "registry")
    outs = dask_cluster["outs"]
    training = start_training(tmp_path, outs["scheduler"], search="grid")
    counts = f"http://127.0.0.1:{outs['dashboard_port']}/json/counts.json"

    def folds_running() -> bool:
        assert training.poll() is None, "the training ended before it was killed"
        return httpx.get(counts, timeout=5).json()["processing"] > 0

    wait_for(folds_running, "the search's folds on the cluster")
    training.send_signal(signal.SIGKILL)
    training.wait()
    training.stdout.close()
    # the scheduler forgets a vanished client's tasks: nothing left waiting or running
    wait_for(lambda: httpx.get(counts, timeout=5).json()["tasks"] == 0, "its folds dropped")
    with Registry.open(tmp_path / "registry") as registry:
        assert registry.models() == []
        (record,) = (tmp_path / "ws" / "runs").glob("*/run.json")
        assert json.loads(record.read_text())["status"] == "running"
        iris = load_iris(as_frame=True)
        model = ModelDefinition(
            name="iris",
            task="classification",
            load_data=lambda: (iris.data, iris.target),
            estimator=lambda: DecisionTreeClassifier(random_state=0),
        )
        result = train(model, registry=registry, env="dev", workspace=tmp_path / "ws")
        assert result.version.version == 1
    killed = json.loads(record.read_text())
    assert killed["status"] == "interrupted"  # the next run noticed


def test_concurrent_trainings_in_real_processes_get_distinct_versions(tmp_path: Path) -> None:
    initialize(tmp_path / "registry")
    runs = [start_training(tmp_path, "", search="none") for _ in range(3)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0]
    assert sorted(int(out.split()[-1]) for out in outputs) == [1, 2, 3]
    with Registry.open(tmp_path / "registry") as registry:
        versions = registry.list_versions("iris")
        assert [v.version for v in versions] == [3, 2, 1]
        assert len({v.lineage["run_id"] for v in versions}) == 3


def test_a_loader_that_raises_fails_the_run_with_a_line_naming_it(tmp_path: Path) -> None:
    def load_data() -> tuple:
        raise KeyError("species")

    model = ModelDefinition(
        name="iris",
        task="classification",
        load_data=load_data,
        estimator=lambda: DecisionTreeClassifier(random_state=0),
    )
    initialize(tmp_path / "registry")
    with Registry.open(tmp_path / "registry") as registry:
        with pytest.raises(ConfigError) as failed:
            train(model, registry=registry, env="dev", workspace=tmp_path / "ws")
        assert registry.models() == []
    raised_at = f"{Path(__file__).resolve()}:{load_data.__code__.co_firstlineno + 1}"
    assert str(failed.value) == (
        f"{__name__}:{load_data.__qualname__} raised KeyError at {raised_at}: 'species'; "
        "fix the loader or the data it reads"
    )
    assert isinstance(failed.value.__cause__, KeyError)
    (record,) = (tmp_path / "ws" / "runs").glob("*/run.json")
    recorded = json.loads(record.read_text())
    assert recorded["status"] == "failed" and "raised KeyError" in recorded["error"]
