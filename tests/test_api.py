"""The Python API (`mlinfra.open_project`) against the iris example brought up for real: `mlinfra
up`, two versions trained and deployed through the CLI, then read and acted on through the API
(the registry, the live server and its counters, the drift monitor's alerts), and the example
of docs/python-api.md run as it stands. Read-only tests share one deployed project; the
rollbacks, which change what is served, run last.

A stack program that does not export what mlinfra needs is run for real too: the commands that
need the export exit 2 with one line naming it and the program file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _serving import ROW
from conftest import ROOT, IrisProject, copy_iris, wait_for

import mlinfra
from mlinfra.api import Env, EnvNotUpError, StackOutputs, traffic_between
from mlinfra.errors import ConfigError
from mlinfra.monitoring import AlertCandidate, AlertStore, MonitoringDirectory, Window

C_OF_V2 = 0.2  # v2's regularisation: a model that differs from v1 in a param and its metrics


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IrisProject]:
    """dev up with a bearer token, v1 and v2 trained and deployed in turn: v2 serves and is
    champion, v1 was champion before it."""
    copied = copy_iris(tmp_path_factory.mktemp("api") / "iris")
    config = copied.root / "mlinfra.toml"
    dev_port = f"serving.port = {copied.ports['dev']}"
    config.write_text(config.read_text().replace(dev_port, f"{dev_port}\nserving.auth = true"))
    copied.set_gates("accuracy >= 0.9")  # deterministic: no latency gate on a busy machine
    try:
        for command in (
            ("up", "--yes"),
            ("train", "--search", "none"),
            ("train", "--search", "none", "--param", f"logisticregression__C={C_OF_V2}"),
            ("deploy", "1"),
            ("deploy", "2"),
        ):
            done = copied.cli(*command, "--env", "dev")
            assert done.returncode == 0, (command, done.stderr)
        yield copied
    finally:
        copied.destroy_all()


@pytest.fixture
def dev(project: IrisProject) -> Env:
    return mlinfra.open_project(project.root).env("dev")


def predict(env: Env) -> httpx.Response:
    outputs = env.outputs()
    return httpx.post(
        f"{outputs.serving_url}/invocations",
        json={"instances": [ROW]},
        headers={"authorization": f"Bearer {outputs.serving_token}"},
        timeout=10,
    )


def test_outputs_are_typed_and_the_token_is_not_in_their_repr(dev: Env, project: IrisProject):
    outputs = dev.outputs()
    assert isinstance(outputs, StackOutputs)
    assert outputs.serving_url == f"http://127.0.0.1:{project.ports['dev']}"
    assert outputs.registry_path.is_dir() and (outputs.registry_path / "registry.db").exists()
    assert outputs.training_workspace.is_dir()
    assert isinstance(outputs.training_workers, int) and outputs.training_workers >= 1
    assert outputs.monitoring_dir is not None and outputs.monitoring_dir.is_dir()
    token = outputs.serving_token
    assert token and len(token) > 8
    assert token not in repr(outputs)
    assert outputs.masked_token == f"{token[:4]}…"


def test_resources_are_the_stacks_with_secrets_masked(dev: Env):
    resources = {resource.name: resource for resource in dev.resources()}
    assert {"registry", "serving", "serving-server", "training"} <= set(resources)
    assert resources["serving-server"].custom and resources["serving-server"].status == "ok"
    assert not resources["serving"].custom  # a component: nothing of its own to read
    token = dev.outputs().serving_token
    assert token is not None
    assert all(token not in repr(resource) for resource in resources.values())
    status = dev.status()
    assert status.stack == "dev" and status.engine == "embedded" and status.lock is None
    assert [resource.urn for resource in status.resources] == [
        resource.urn for resource in dev.resources()
    ]
    assert status.last_update is not None and status.last_update.kind == "up"


def test_versions_and_aliases_come_from_the_registry(dev: Env):
    assert [summary.version for summary in dev.versions()] == [2, 1]
    assert dev.aliases() == {"champion": 2}
    moves = [(e.from_version, e.to_version) for e in dev.alias_history(alias="champion")]
    assert moves == [(None, 1), (1, 2)]
    assert dev.version("iris", "champion").version == 2
    assert dev.version("iris", "latest").params["logisticregression__C"] == C_OF_V2


def test_compare_shows_only_what_differs(dev: Env):
    one, two = dev.version("iris", 1), dev.version("iris", 2)
    compared = dev.compare("iris", 1, "champion")
    assert (compared.left, compared.right) == (1, 2)
    assert compared.params == {
        "logisticregression__C": (one.params["logisticregression__C"], C_OF_V2)
    }, "every other parameter is the same and left out"
    differing = {name for name in one.metrics if one.metrics[name] != two.metrics.get(name)}
    assert differing and set(compared.metrics) == differing
    for name, (left, right) in compared.metrics.items():
        assert (left, right) == (one.metrics[name], two.metrics[name])


def test_deployment_and_its_history(dev: Env):
    table = dev.deployment()
    assert table is not None and (table.model, table.stable, table.canary) == ("iris", 2, None)
    assert dev.rollout() is None, "both deploys were direct, no canary"
    actions = [(event["action"], event.get("to")) for event in dev.deployment_history()]
    assert actions == [("deploy", 1), ("deploy", 2)]
    status = dev.deployment_status()
    assert status["deployment"]["stable"] == 2 and status["env"] == "dev"


def test_counters_make_live_traffic_after_real_requests(dev: Env):
    before, started = dev.counters(), time.monotonic()
    for _ in range(20):
        answered = predict(dev)
        assert answered.status_code == 200, answered.text
    after, seconds = dev.counters(), time.monotonic() - started
    served = traffic_between(before, after, seconds)  # versions that served nothing left out
    assert [(row.variant, row.version) for row in served] == [("stable", 2)]
    stable = served[0]
    assert stable.requests == 20 and stable.requests_per_second > 0
    assert stable.error_rate == 0
    assert stable.p50_ms is not None and stable.p99_ms is not None
    assert 0 < stable.p50_ms <= stable.p99_ms


def test_refresh_is_remembered_by_the_api_and_by_the_cli(dev: Env, project: IrisProject):
    assert dev.last_refresh() is None, "never refreshed yet"
    reports = dev.refresh()
    found = dev.last_refresh()
    assert found is not None and abs(found.at - time.time()) < 60
    assert found.resources == len(reports) >= 4
    # right after up, with a serving token (auth on), nothing has drifted: the monitor's
    # token digest reads back as it was written
    assert (found.changed, found.gone) == (0, 0), [r for r in reports if r.status != "ok"]
    done = project.cli("refresh", "--env", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    again = dev.last_refresh()
    assert again is not None and again.at > found.at, "`mlinfra refresh` goes through the API"


def test_an_alert_raised_in_the_monitor_is_listed_and_acknowledged(dev: Env):
    directory = dev.outputs().monitoring_dir
    assert directory is not None
    now = time.time()
    with AlertStore(MonitoringDirectory(directory).alerts) as store:
        raised = store.raise_alert(
            AlertCandidate(
                env="dev",
                severity="warning",
                kind="feature_drift",
                feature="petal_length",
                statistic="ks_p_adjusted",
                value=0.0004,
                threshold=0.05,
                window=Window(label="1h", start=now - 3600, end=now),
                message="petal_length drifted: KS p = 0.0004 after Holm, below 0.05",
            ),
            now=now,
            cooldown_seconds=600,
        )
    alert_id = raised.alert.id
    assert alert_id in [alert.id for alert in dev.alerts()]
    result = dev.acknowledge(alert_id, by="api-test")
    assert not result.already and result.alert.acknowledged
    assert alert_id not in [alert.id for alert in dev.alerts()]
    everything = {alert.id: alert for alert in dev.alerts(include_acknowledged=True)}
    assert everything[alert_id].acknowledged
    assert dev.acknowledge(alert_id).already


def test_an_env_not_up_and_an_unknown_env_are_errors_that_say_so(project: IrisProject):
    opened = mlinfra.open_project(project.root)
    staging = opened.env("staging")
    assert not staging.is_up()
    for read in (staging.outputs, staging.deployment, staging.versions):
        with pytest.raises(EnvNotUpError, match="mlinfra up --env staging"):
            read()
    with pytest.raises(ConfigError, match="unknown env 'perf'.*defines: dev, staging, prod"):
        opened.env("perf")
    with pytest.raises(ConfigError, match="choose an environment"):
        opened.env()


def test_rollback_through_the_api_moves_the_champion_and_what_is_served(dev: Env):
    """Last: it changes what the shared project serves."""
    assert predict(dev).headers["x-model-version"] == "2"
    table = dev.rollback(reason="api test")
    assert table.stable == 1
    assert dev.aliases()["champion"] == 1
    assert dev.alias_history(alias="champion")[-1].reason == "api test"
    wait_for(lambda: predict(dev).headers["x-model-version"] == "1", "v1 served after rollback")
    assert dev.deployment_history()[-1]["action"] == "rollback"


def test_the_example_of_the_docs_runs_and_rolls_back(dev: Env, project: IrisProject):
    """After the rollback above: v1 serves, so the docs' rollback goes back to v2."""
    page = (ROOT / "docs" / "python-api.md").read_text()
    example = re.search(r"```python\n(.*?)```", page, re.S)
    assert example is not None
    ran = subprocess.run(
        [sys.executable, "-c", example.group(1)],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert "serves iris v1\n  champion: v1\n" in ran.stdout
    assert ran.stdout.endswith("rolled back: serves v2, champion moved with it\n")
    assert dev.aliases()["champion"] == 2


# --- a stack program that forgets an export -----------------------------------------------------


@pytest.fixture
def forgetful(tmp_path: Path) -> Iterator[IrisProject]:
    """The example with its own copy of the stack program, which does not export registry_path."""
    copied = copy_iris(tmp_path / "iris")
    shutil.copytree(ROOT / "stacks", copied.root / "stacks")
    program = copied.root / "stacks" / "__main__.py"
    export = 'pulumi.export("registry_path", registry.path)\n'
    assert export in program.read_text()
    program.write_text(program.read_text().replace(export, ""))
    config = copied.root / "mlinfra.toml"
    config.write_text(config.read_text().replace(f'"{ROOT / "stacks"}"', '"stacks"'))
    try:
        yield copied
    finally:
        copied.destroy_all()


def test_a_stack_that_does_not_export_registry_path_is_exit_2_naming_it(forgetful: IrisProject):
    up = forgetful.cli("up", "--yes", "--env", "dev")
    assert up.returncode == 0, up.stderr
    program = forgetful.root / "stacks" / "__main__.py"
    for command in (("train", "--search", "none"), ("deploy", "1"), ("models", "list")):
        done = forgetful.cli(*command, "--env", "dev")
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (command, done.stderr)
        assert lines[0].startswith("error: env dev's stack does not export 'registry_path'")
        assert str(program) in lines[0]
        assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr
    with pytest.raises(ConfigError, match="'registry_path'"):
        _ = mlinfra.open_project(forgetful.root).env("dev").outputs().registry_path


def test_destroy_forgets_the_last_refresh_and_leaves_no_env_folder(journal_project):
    assert journal_project.cli("up", "--yes").returncode == 0
    assert journal_project.cli("refresh").returncode == 0
    dev = mlinfra.open_project(journal_project.root).env("dev")
    assert dev.last_refresh() is not None
    assert journal_project.cli("destroy", "--yes").returncode == 0
    assert dev.last_refresh() is None
    assert not (journal_project.root / ".mlinfra" / "envs").exists()
