"""The user's mistakes through the real CLI: a line naming the entry point or column, exit 2 or 6.

One project (up once) declares a model per mistake. Each run points MLINFRA_LOG_DIR at an empty
folder: a user's mistake is not a bug, so no crash log may appear there.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, free_port, run_cli

from mlinfra.registry import Registry

USER_MODEL = """
import os
import sys

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline


def load_data():
    iris = load_iris(as_frame=True)
    features = iris.data.rename(columns=lambda n: n.removesuffix(" (cm)").replace(" ", "_"))
    return features, iris.target


def load_evaluation_data():
    features, target = load_data()
    change = os.environ.get("CHANGE")
    if change == "drop":
        features = features.drop(columns=["petal_width"])
    elif change == "rename":
        features = features.rename(columns={"petal_width": "petal_w"})
    elif change == "string":
        features = features.assign(sepal_length=features["sepal_length"].astype(str) + " cm")
    elif change == "one_nan":  # 1 row in 150: under the 1% that makes nulls an error by share
        features = features.copy()
        features.iloc[3, 1] = float("nan")
    elif change == "extra_and_reordered":
        features = features.assign(colour="red")[["colour", *reversed(features.columns)]]
    elif change == "raise":
        raise ConnectionError("the warehouse is unreachable")
    elif change == "exit":
        sys.exit(4)
    return features, target


def load_csv():
    return pd.read_csv("data/train.csv"), None


def load_with_key_error():
    settings = {}
    return settings["rows"]


def load_and_exit():
    sys.exit("no data today")


def build():
    return LogisticRegression(max_iter=500)


def build_imputing():
    return make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))


def build_badly():
    raise ValueError("max_depth must be set")


def build_regressor():
    return Ridge()


def space():
    return {"C": SPACES["C"]}
"""

BROKEN_MODULE = "import os\nraise RuntimeError('settings.toml not found')\n"


def model_table(name: str, **keys: str | list[str]) -> str:
    keys = {"data": "user_model:load_data", "estimator": "user_model:build", **keys}
    keys.setdefault("task", "classification")
    return f"[models.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


MODELS = [
    model_table("iris", evaluation_data="user_model:load_evaluation_data"),
    model_table(
        "imputing",
        estimator="user_model:build_imputing",
        evaluation_data="user_model:load_evaluation_data",
    ),
    model_table("missing_csv", data="user_model:load_csv"),
    model_table("key_error", data="user_model:load_with_key_error"),
    model_table("exits", data="user_model:load_and_exit"),
    model_table("bad_builder", estimator="user_model:build_badly"),
    model_table("bad_space", search_space="user_model:space"),
    model_table("broken_import", data="broken_module:load_data"),
    # the data loader would raise if called: the estimator's kind is checked before any work
    model_table("regressor", estimator="user_model:build_regressor", data="user_model:load_csv"),
    model_table("classifier", task="regression", data="user_model:load_csv"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with a model per mistake, up in env dev, with iris and imputing trained."""
    root = tmp_path_factory.mktemp("mistakes") / "project"
    root.mkdir()
    (root / "user_model.py").write_text(USER_MODEL)
    (root / "broken_module.py").write_text(BROKEN_MODULE)
    (root / "mlinfra.toml").write_text(
        f'[project]\nname = "mistakes"\nstack = "{ROOT / "stacks"}"\n\n'
        + "\n".join(MODELS)
        + f'\n[env.dev]\ntarget = "local"\nengine = "embedded"\nserving.port = {free_port()}\n'
    )
    up = run_cli("up", "--env", "dev", "--yes", cwd=root)
    assert up.returncode == 0, up.stderr
    for model in ("iris", "imputing"):
        trained = run_cli("train", model, "--env", "dev", "--search", "none", cwd=root)
        assert trained.returncode == 0, trained.stderr
    yield root
    run_cli("destroy", "--yes", "--force-unlock", "--env", "dev", cwd=root)


def line_of(text: str, snippet: str) -> int:
    (number,) = [n for n, line in enumerate(text.splitlines(), 1) if snippet in line]
    return number


def user_error(project: Path, tmp_path: Path, code: int, *args: str, **env: str) -> str:
    """Run the CLI; it must exit `code` with one error line, no traceback and no crash log."""
    logs = tmp_path / "logs"
    logs.mkdir()
    done = run_cli(*args, "--env", "dev", cwd=project, env={"MLINFRA_LOG_DIR": str(logs), **env})
    assert done.returncode == code, done.stderr
    assert "unexpected error" not in done.stderr and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0]), done.stderr
    assert list(logs.iterdir()) == []
    return errors[0].removeprefix("error: ")


def at(snippet: str, module: str = "user_model.py", source: str = USER_MODEL) -> str:
    return f"{module}:{line_of(source, snippet)}"


LOADER_FIX = "fix the loader or the data it reads"
EXIT_FIX = "an entry point must return its result or raise an exception, not exit"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "missing_csv",
            f"user_model:load_csv raised FileNotFoundError at {at('read_csv')}: [Errno 2] "
            f"No such file or directory: 'data/train.csv'; {LOADER_FIX}",
        ),
        (
            "key_error",
            f"user_model:load_with_key_error raised KeyError at {at('settings[')}: 'rows'; "
            + LOADER_FIX,
        ),
        (
            "exits",
            f"user_model:load_and_exit called sys.exit('no data today') at "
            f"{at('no data today')}; {EXIT_FIX}",
        ),
        (
            "bad_builder",
            f"user_model:build_badly raised ValueError at {at('max_depth must')}: "
            "max_depth must be set; fix the estimator",
        ),
        (
            "bad_space",
            f"user_model:space raised NameError at {at('SPACES[')}: name 'SPACES' is not "
            "defined; fix the search space function",
        ),
        (
            "broken_import",
            "importing broken_module for broken_module:load_data raised RuntimeError at "
            f"{at('raise', 'broken_module.py', BROKEN_MODULE)}: settings.toml not found; "
            "fix the module",
        ),
    ],
)
def test_an_entry_point_that_raises_or_exits_is_exit_2_naming_it_and_its_line(
    project: Path, tmp_path: Path, model: str, expected: str
) -> None:
    assert user_error(project, tmp_path, 2, "train", model, "--search", "none") == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "regressor",
            "[models.regressor] estimator (user_model:build_regressor) is a Ridge, a regressor, "
            'but the task is classification; return a classifier, or set task = "regression" '
            "there",
        ),
        (
            "classifier",
            "[models.classifier] estimator (user_model:build) is a LogisticRegression, a "
            "classifier, but the task is regression; return a regressor, or set task = "
            '"classification" there',
        ),
    ],
)
def test_an_estimator_of_the_other_task_is_exit_2_before_the_data_loads(
    project: Path, tmp_path: Path, model: str, expected: str
) -> None:
    assert user_error(project, tmp_path, 2, "train", model, "--search", "none") == expected


SOURCE = "evaluation data (user_model:load_evaluation_data)"


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ("drop", "missing_column (petal_width: column is missing (was float64))"),
        ("rename", "missing_column (petal_width: column is missing (was float64))"),
        ("string", "type_changed (sepal_length: was float (float64), now string)"),
        (
            "one_nan",
            "nulls_appeared (sepal_width: 1 missing values (0.7% of rows); "
            "the model cannot take missing values here)",
        ),
    ],
)
def test_evaluation_data_that_no_longer_fits_the_schema_is_exit_6_naming_rule_and_column(
    project: Path, tmp_path: Path, change: str, found: str
) -> None:
    with Registry.open(project / ".mlinfra" / "envs" / "dev" / "registry") as registry:
        version = registry.latest("iris")
        assert version is not None
        reports = len(registry.reports(version))
    message = user_error(
        project, tmp_path, 6, "evaluate", "latest", "--model", "iris", CHANGE=change
    )
    assert message == (
        f"{SOURCE} does not fit the schema iris:v{version.version} was trained on: {found}; "
        "nothing was evaluated"
    )
    with Registry.open(project / ".mlinfra" / "envs" / "dev" / "registry") as registry:
        assert len(registry.reports(version)) == reports


@pytest.mark.parametrize(
    ("model", "change"),
    [("iris", ""), ("iris", "extra_and_reordered"), ("imputing", "one_nan")],
)
def test_evaluation_data_that_still_fits_is_evaluated(
    project: Path, model: str, change: str
) -> None:
    """Columns are taken in the order the version was trained on; an imputing Pipeline takes a
    missing value (though scikit-learn's tags say it takes none)."""
    args = ("evaluate", "latest", "--model", model, "--env", "dev", "--json")
    done = run_cli(*args, cwd=project, env={"CHANGE": change})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["accuracy"] > 0.9


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "raise",
            "user_model:load_evaluation_data raised ConnectionError at "
            f"{at('the warehouse is')}: the warehouse is unreachable; {LOADER_FIX}",
        ),
        (
            "exit",
            f"user_model:load_evaluation_data called sys.exit(4) at {at('exit(4)')}; {EXIT_FIX}",
        ),
    ],
)
def test_an_evaluation_loader_that_raises_or_exits_is_exit_2_naming_it(
    project: Path, tmp_path: Path, change: str, expected: str
) -> None:
    message = user_error(
        project, tmp_path, 2, "evaluate", "latest", "--model", "iris", CHANGE=change
    )
    assert message == expected


CRASH = """
import os, sys
from mlinfra.cli._errors import run_guarded
os.umask(0)
raise SystemExit(run_guarded(lambda: 1 / 0))
"""


def test_a_real_bug_writes_a_crash_log_only_its_owner_can_read(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "not-yet-made"
    done = subprocess.run(
        [sys.executable, "-c", CRASH],
        env=cli_env({"MLINFRA_LOG_DIR": str(logs)}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3 and "unexpected error: ZeroDivisionError" in done.stderr
    (log,) = logs.iterdir()
    assert f"The traceback is in {log}" in done.stderr
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert "ZeroDivisionError: division by zero" in log.read_text()


def test_a_crash_log_that_cannot_be_written_leaves_the_traceback_on_stderr(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    done = subprocess.run(
        [sys.executable, "-c", CRASH],
        env=cli_env({"MLINFRA_LOG_DIR": str(blocked / "logs")}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3
    assert "ZeroDivisionError: division by zero" in done.stderr.split("unexpected error")[0]
    assert "The traceback is above; please attach it to a bug report." in done.stderr
