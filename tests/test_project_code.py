"""A project's own classes (`features.RatioFeatures`) trained, evaluated and served for real: the
stack's code paths reach the model server, its uvicorn workers, the detached rollout driver and
the training workers. Every CLI runs from a folder outside the project, so nothing is imported
by the accident of a working directory on the import path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import ROOT, IrisProject, free_port, run_cli

from mlinfra.errors import ValidationError
from mlinfra.providers.local import (
    DaskClusterProvider,
    ModelServerProvider,
    TrainingWorkspaceProvider,
)
from mlinfra.rollout import Target, status
from mlinfra.training._folds import DaskFolds, FoldTask

FEATURES_CODE = """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin

    class RatioFeatures(TransformerMixin, BaseEstimator):
        \"\"\"Adds petal length over petal width: the project's own feature engineering.\"\"\"

        def __init__(self, eps=1e-6):
            self.eps = eps

        def fit(self, X, y=None):
            self.n_features_in_ = np.asarray(X).shape[1]
            return self

        def transform(self, X):
            X = np.asarray(X, dtype=float)
            return np.hstack([X, X[:, 2:3] / (X[:, 3:4] + self.eps)])
"""

MODEL_CODE = """
    from pathlib import Path

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from features import RatioFeatures

    SEARCH_SPACE = {"logisticregression__C": [0.1, 1.0]}

    def load_data():
        (Path(__file__).parent / "loaded").touch()  # tells the tests the data was loaded
        iris = load_iris(as_frame=True)
        features = iris.data.rename(
            columns=lambda name: name.removesuffix(" (cm)").replace(" ", "_")
        )
        names = dict(enumerate(iris.target_names.tolist()))
        return features, iris.target.map(names).astype(str).rename("species")

    def build_estimator():
        return make_pipeline(RatioFeatures(), LogisticRegression(max_iter=1000))
"""

SETOSA = [5.1, 3.5, 1.4, 0.2]


@dataclass
class CodeProject:
    """A project with its own module, run by CLI processes started outside it."""

    root: Path
    elsewhere: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_cli(
            *args, "--project", str(self.root), "--env", "dev", cwd=self.elsewhere, timeout=timeout
        )

    def ok_json(self, *args: str) -> dict:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def processes(self) -> list[psutil.Process]:
        return IrisProject(root=self.root, ports={"dev": self.port}).processes()


def write_project(root: Path, *, trusted: bool, stack: Path = ROOT / "stacks") -> CodeProject:
    root.mkdir()
    (root / "features.py").write_text(textwrap.dedent(FEATURES_CODE))
    (root / "model.py").write_text(textwrap.dedent(MODEL_CODE))
    port = free_port()
    trusted_types = '["features.RatioFeatures"]' if trusted else "[]"
    (root / "mlinfra.toml").write_text(
        textwrap.dedent(f"""\
            [project]
            name = "ratios"
            stack = "{stack}"

            [models.ratios]
            data = "model:load_data"
            estimator = "model:build_estimator"
            search_space = "model:SEARCH_SPACE"
            task = "classification"
            trusted_types = {trusted_types}

            [env.dev]
            target = "local"
            engine = "embedded"
            training.workers = 2
            serving.port = {port}
            serving.workers = 2
        """)
    )
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return CodeProject(root=root, elsewhere=elsewhere, port=port)


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator:
    """The test's project, made with its options; its env is destroyed after, leaving no process."""
    made: list[CodeProject] = []

    def make(**options: object) -> CodeProject:
        made.append(write_project(tmp_path / "ratios", **options))  # type: ignore[arg-type]
        return made[0]

    yield make
    for project in made:
        project.cli("abort")  # a rollout driver left by a failed test stops within a tick
        destroyed = project.cli("destroy", "--yes", "--force-unlock")
        assert destroyed.returncode == 0, destroyed.stderr
        _, alive = psutil.wait_procs(project.processes(), timeout=30)
        assert alive == []


def _steady_load(url: str, stop: threading.Event, codes: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            answer = client.post(f"{url}/invocations", json={"instances": [SETOSA]})
            codes.append(answer.status_code)


def _wait_for(condition, what: str, timeout: float = 120):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:g} s")


def _driver(target: Target) -> psutil.Process | None:
    """The detached driver, once it has claimed the rollout."""
    report = status(target)
    if not report["controller_running"]:
        return None
    return psutil.Process(report["rollout"]["controller_pid"])


def _ended(target: Target) -> dict | None:
    rollout = status(target)["rollout"]
    return rollout if rollout["phase"] != "progressing" else None


@pytest.mark.slow
def test_project_class_trains_evaluates_and_is_served_by_real_server_and_driver(
    make_project,
) -> None:  # noqa: ANN001
    project = make_project(trusted=True)
    up = project.cli("up", "--yes")
    assert up.returncode == 0, up.stderr
    outputs = project.ok_json("outputs")
    assert outputs["training_code_paths"] == [str(project.root.resolve())]

    searched = project.ok_json("train")  # a grid search on two loky workers
    assert searched["search"]["trials"] == 2
    served = project.ok_json("train", "--search", "none")
    assert served["version"] == 2
    evaluated = project.ok_json("evaluate", "latest", "--against", "none")
    assert evaluated["passed"]

    deployed = project.cli("deploy", "latest")
    assert deployed.returncode == 0, deployed.stderr
    answer = httpx.post(f"{project.url}/invocations", json={"instances": [SETOSA]}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["setosa"]
    assert answer.headers["x-model-version"] == "2"
    drift = project.cli("drift", "--json")  # loads the served version in the CLI's own process
    assert drift.returncode == 0, drift.stderr

    second = project.ok_json("train", "--search", "none")
    canary = project.cli(
        "deploy", str(second["version"]), "--steps", "50,100", "--interval", "500ms",
        "--min-samples", "20",
    )  # fmt: skip
    assert canary.returncode == 0, canary.stderr
    registry = Path(outputs["registry_path"])
    target = Target(registry=registry, env="dev", url=project.url)
    argv = _wait_for(lambda: _driver(target), "rollout driver").cmdline()
    assert argv[argv.index("--code-path") + 1] == str(project.root.resolve())
    stop, codes = threading.Event(), []
    load = threading.Thread(target=_steady_load, args=(project.url, stop, codes))
    load.start()
    try:
        ended = _wait_for(lambda: _ended(target), "end of the rollout")
    finally:
        stop.set()
        load.join()
    log = (target.directory / "controller.log").read_text()
    assert ended["phase"] == "promoted", log
    assert "Traceback" not in log and "No module named" not in log
    assert set(codes) == {200}
    answer = httpx.post(f"{project.url}/invocations", json={"instances": [SETOSA]}, timeout=10)
    assert answer.headers["x-model-version"] == str(second["version"])


def test_untrusted_project_class_is_refused_before_the_data_loads(make_project) -> None:  # noqa: ANN001
    project = make_project(trusted=False)
    assert project.cli("up", "--yes").returncode == 0
    refused = project.cli("train")
    assert refused.returncode == ValidationError.exit_code, refused.stderr
    assert refused.stderr.count("\n") == 1
    assert "features.RatioFeatures" in refused.stderr
    assert "[models.ratios] trusted_types" in refused.stderr
    assert not (project.root / "loaded").exists(), "refused before loading data, so before a fit"
    runs = project.root / ".mlinfra" / "envs" / "dev" / "training" / "runs"
    assert list(runs.iterdir()) == []
    assert project.ok_json("models", "list") == []


def test_code_paths_change_is_a_previewed_update_that_restarts_the_server(
    make_project, tmp_path: Path
) -> None:  # noqa: ANN001
    stack = tmp_path / "stack"
    stack.mkdir()
    program = (ROOT / "stacks" / "__main__.py").read_text()
    program = program.replace(
        "ServingStackArgs.from_environment(env, registry_path=registry.path)",
        "dataclasses.replace(ServingStackArgs.from_environment(env, registry_path=registry.path), "
        'code_paths=[os.environ["SERVER_CODE_PATH"]])',
    )
    assert "dataclasses.replace" in program
    (stack / "__main__.py").write_text("import dataclasses\nimport os\n" + program)
    project = make_project(trusted=True, stack=stack)
    (tmp_path / "first").mkdir()
    first, second = str(tmp_path / "first"), str(project.root.resolve())

    def cli(*args: str, code_path: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            *args, "--project", str(project.root), "--env", "dev",
            cwd=project.elsewhere, env={"SERVER_CODE_PATH": code_path}, timeout=120,
        )  # fmt: skip

    assert cli("up", "--yes", code_path=first).returncode == 0
    server = _server_process(project)
    preview = cli("preview", "--json", code_path=second)
    assert preview.returncode == 0, preview.stderr
    steps = {step["name"]: step for step in json.loads(preview.stdout)["steps"]}
    assert steps["serving-server"]["op"] == "update"
    changed = {d["path"]: d for d in steps["serving-server"]["diffs"]}
    assert changed["code_paths"]["old"] == [first] and changed["code_paths"]["new"] == [second]
    assert not changed["code_paths"]["replaces"]
    shown = cli("preview", "--diff", code_path=second)
    assert "code_paths" in shown.stdout and second in shown.stdout

    assert cli("up", "--yes", code_path=second).returncode == 0
    restarted = _server_process(project)  # a new instance, on the old one's socket
    assert restarted.pid != server.pid and not server.is_running()
    argv = restarted.cmdline()
    assert argv[argv.index("--code-path") + 1] == second


def _server_process(project: CodeProject) -> psutil.Process:
    (found,) = [p for p in project.processes() if "mlinfra.serving" in p.cmdline()]
    return found


def test_update_not_replace_when_code_paths_change() -> None:
    old = {"path": "/w", "workers": 2, "code_paths": ["/a"]}
    diff = TrainingWorkspaceProvider().diff("/w", old, {**old, "code_paths": ["/b"]})
    assert diff.changes and not diff.replaces
    server = {"run_dir": "/r", "registry": "/g", "env": "dev", "port": 9, "code_paths": ["/a"]}
    diff = ModelServerProvider().diff("/r", server, {**server, "code_paths": ["/b"]})
    assert diff.changes and not diff.replaces


@pytest.mark.slow
@pytest.mark.parametrize("given", ["to the cluster", "to the search only"])
def test_training_workers_import_the_project_from_its_code_paths_alone(
    tmp_path: Path, given: str
) -> None:
    """The module is loaded here from its file, not from sys.path: the env's own cluster's
    workers find it through the code paths they were started with; those of a cluster started
    without them (an existing one, `training.scheduler`) get the code uploaded by the search."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    code = tmp_path / "code"
    code.mkdir()
    name = f"cluster_features_{tmp_path.name.replace('-', '_')}"
    (code / f"{name}.py").write_text(textwrap.dedent(FEATURES_CODE))
    spec = importlib.util.spec_from_file_location(name, code / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    provider = DaskClusterProvider()
    started_with = [str(code)] if given == "to the cluster" else []
    cluster = provider.create(
        {"run_dir": str(tmp_path / "cluster"), "workers": 2, "code_paths": started_with}
    )
    sys.modules[name] = module
    folds = DaskFolds(cluster.outs["scheduler"], code_paths=[str(code)])
    try:
        spec.loader.exec_module(module)
        assert str(code) not in sys.path
        estimator = make_pipeline(module.RatioFeatures(), LogisticRegression(max_iter=500))
        features, target = load_iris(return_X_y=True, as_frame=True)
        data = folds.share(features, target)
        rows = list(range(len(target)))
        tasks = [FoldTask(0, fold, {}, rows[fold::2], rows[1 - fold :: 2]) for fold in (0, 1)]
        results = folds.run(data, estimator, "accuracy", tasks, on_done=lambda _: None)
    finally:
        folds.close()
        del sys.modules[name]
        provider.delete(cluster.id, cluster.outs)
    assert [r.error for r in results] == [None, None]
    assert all(r.score is not None and r.score > 0.8 for r in results)
