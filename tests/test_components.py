"""The resource graph the components and the bundled stack program declare.

Most tests run the real stack program and components on `pulumi.runtime.Mocks`: the mocks only
record each registration (type, parent, dependencies, secret outputs) and echo inputs back as
outputs, so no output value is asserted there. What the outputs are is asserted once on the
embedded engine, with the real providers.
"""

from __future__ import annotations

import dataclasses
import json
import runpy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pulumi
import pytest
from conftest import IrisProject
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs, Mocks

from mlinfra.components import (
    ModelRegistry,
    ModelRegistryArgs,
    ServingStack,
    ServingStackArgs,
    TrainingCluster,
    TrainingClusterArgs,
)
from mlinfra.config import Environment, Project, ProjectConfig, load_project, using_environment
from mlinfra.engine._program import sdk_event_loop
from mlinfra.errors import ConfigError

STACK_PROGRAM = Path(__file__).parents[1] / "stacks" / "__main__.py"
DYNAMIC = "pulumi-python:dynamic/mlinfra"


@pytest.fixture(autouse=True)
def an_event_loop_for_the_mocks() -> Iterator[None]:
    """pulumi's mocks register on the thread's current event loop; an embedded-engine run
    earlier in this process closed its own and left none, so each test gets a fresh one."""
    with sdk_event_loop():
        yield


@dataclass
class Registered:
    type: str
    name: str
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]
    secret_outputs: list[str]


class RecordingMonitor(MockMonitor):
    """A mock monitor that also keeps what the engine would be told about each resource."""

    def __init__(self) -> None:
        super().__init__(EchoMocks())
        self.registered: dict[str, Registered] = {}
        self.result: Any = None

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registered[request.name] = Registered(
                type=request.type,
                name=request.name,
                parent=request.parent,
                dependencies=list(request.dependencies),
                inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
                secret_outputs=list(request.additionalSecretOutputs),
            )
        return response

    def urn(self, name: str) -> str:
        return next(urn for urn in self.resources if urn.endswith("::" + name))


class EchoMocks(Mocks):
    """Outputs are the inputs plus made-up values for the computed outputs the program reads."""

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        computed = {
            f"{DYNAMIC}:RegistryStore": {"uri": "file:///mock/registry"},
            f"{DYNAMIC}:ModelServer": {"url": "http://127.0.0.1:1"},
            f"{DYNAMIC}:GeneratedToken": {"token": "mock-token"},
        }.get(args.typ, {})
        return f"{args.name}-id", {**args.inputs, **computed}

    def call(self, args: Any) -> tuple[dict[str, Any], None]:
        return {}, None


def environment(tmp_path: Path, name: str = "dev", **settings: Any) -> Environment:
    config = ProjectConfig.model_validate({"project": {"name": "demo"}, "env": {name: settings}})
    return Project(root=tmp_path, config=config).environment(name)


def run_on_mocks(env: Environment, program: Any) -> RecordingMonitor:
    """Run `program` on mocks; what its returned output resolves to lands in monitor.result."""
    monitor = RecordingMonitor()
    pulumi.runtime.set_mocks(monitor.mocks, project="demo", stack=env.name, monitor=monitor)

    @pulumi.runtime.test
    def body() -> Any:
        with using_environment(env):
            return pulumi.Output.from_input(program()).apply(record)

    def record(value: Any) -> None:
        monitor.result = value

    body()
    return monitor


def run_stack_program(env: Environment) -> RecordingMonitor:
    def program() -> Any:
        exported = pulumi.runtime.get_root_resource().outputs  # what pulumi.export records
        exported.clear()  # the SDK's one root resource holds an earlier test's exports
        runpy.run_path(str(STACK_PROGRAM))
        return exported

    return run_on_mocks(env, program)


def test_public_surface() -> None:
    import mlinfra.components as components

    assert components.__all__ == [
        "DriftMonitor",
        "DriftMonitorArgs",
        "ModelRegistry",
        "ModelRegistryArgs",
        "MonitoringArgs",
        "ServingStack",
        "ServingStackArgs",
        "Target",
        "TrainingCluster",
        "TrainingClusterArgs",
    ]


def test_stack_program_on_mocks_declares_components_with_children(tmp_path: Path) -> None:
    monitor = run_stack_program(environment(tmp_path))
    types = {name: r.type for name, r in monitor.registered.items()}
    assert types == {
        "training": "mlinfra:index:TrainingCluster",
        "training-workspace": f"{DYNAMIC}:TrainingWorkspace",
        "registry": "mlinfra:index:ModelRegistry",
        "registry-store": f"{DYNAMIC}:RegistryStore",
        "serving": "mlinfra:index:ServingStack",
        "serving-server": f"{DYNAMIC}:ModelServer",
        "serving-monitor": "mlinfra:index:DriftMonitor",
        "serving-monitor-process": f"{DYNAMIC}:DriftMonitorProcess",
    }
    for child, parent in [
        ("training-workspace", "training"),
        ("registry-store", "registry"),
        ("serving-server", "serving"),
        ("serving-monitor", "serving"),
        ("serving-monitor-process", "serving-monitor"),
    ]:
        assert monitor.registered[child].parent == monitor.urn(parent)


def test_stack_program_on_mocks_makes_serving_depend_on_registry(tmp_path: Path) -> None:
    monitor = run_stack_program(environment(tmp_path))
    server = monitor.registered["serving-server"]
    assert monitor.urn("registry-store") in server.dependencies
    assert monitor.urn("training-workspace") not in server.dependencies


def test_stack_program_on_mocks_passes_env_settings_to_providers(tmp_path: Path) -> None:
    env = environment(tmp_path, training={"workers": 3}, serving={"port": 8765, "workers": 2})
    monitor = run_stack_program(env)
    workspace = monitor.registered["training-workspace"].inputs
    assert workspace["path"] == str(env.env_dir / "training")
    assert workspace["workers"] == 3
    assert monitor.registered["registry-store"].inputs["path"] == str(env.registry_path)
    server = monitor.registered["serving-server"].inputs
    assert (server["port"], server["workers"], server["env"]) == (8765, 2, "dev")
    assert server["registry"] == str(env.registry_path)
    assert server["run_dir"] == str(env.env_dir / "serving")
    assert server.get("token") is None
    cluster = monitor.registered["training-dask"]
    assert cluster.type == f"{DYNAMIC}:DaskCluster"
    assert cluster.parent == monitor.urn("training")
    assert cluster.inputs["workers"] == 3 and cluster.inputs["host"] == "127.0.0.1"
    assert cluster.inputs["run_dir"] == str(env.env_dir / "training" / "cluster")
    assert cluster.inputs["code_paths"] == [str(tmp_path.resolve())]
    assert {"training_scheduler", "training_dashboard"} <= set(monitor.result)


@pytest.mark.parametrize(
    ("training", "exported"),
    [({}, set()), ({"scheduler": "tcp://dask.internal:8786"}, {"training_scheduler"})],
)
def test_stack_program_on_mocks_starts_no_cluster_in_process_or_for_an_existing_one(
    tmp_path: Path, training: dict, exported: set
) -> None:
    monitor = run_stack_program(environment(tmp_path, training=training))
    assert "training-dask" not in monitor.registered
    assert {"training_scheduler", "training_dashboard"} & set(monitor.result) == exported
    if exported:
        assert monitor.result["training_scheduler"] == training["scheduler"]


def test_stack_program_on_mocks_exports_the_documented_outputs(tmp_path: Path) -> None:
    """Only their names: on mocks the values are the mocks' own (see the test below)."""
    monitor = run_stack_program(environment(tmp_path))
    assert sorted(monitor.result) == [
        "monitoring_dir",
        "registry_path",
        "serving_url",
        "training_code_paths",
        "training_workers",
        "training_workspace",
    ]


def test_stack_program_on_the_embedded_engine_exports_what_the_real_providers_made(
    iris_project: IrisProject,
) -> None:
    done = iris_project.cli("up", "--env", "dev", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    env = load_project(iris_project.root).environment("dev")
    port = iris_project.ports["dev"]
    assert outputs == {
        "training_workspace": str(env.env_dir / "training"),
        "training_workers": 1,  # the default: fits run in `mlinfra train`
        "training_code_paths": [str(iris_project.root)],
        "registry_path": str(env.registry_path),
        "serving_url": f"http://127.0.0.1:{port}",
        "monitoring_dir": str(env.env_dir / "monitoring"),
    }
    assert json.loads(iris_project.cli("outputs", "--env", "dev", "--json").stdout) == outputs
    assert (Path(outputs["training_workspace"]) / "runs").is_dir()
    assert (Path(outputs["registry_path"]) / "registry.db").is_file()
    live = httpx.get(outputs["serving_url"] + "/v2/health/live", timeout=10)
    assert live.status_code == 200


def test_serving_with_auth_on_mocks_generates_a_secret_token(tmp_path: Path) -> None:
    env = environment(tmp_path, serving={"auth": True})

    def program() -> Any:
        registry = ModelRegistry("registry", ModelRegistryArgs.from_environment(env))
        args = ServingStackArgs.from_environment(env, registry_path=registry.path)
        serving = ServingStack("serving", args)
        assert serving.token is not None
        return serving.token.is_secret()

    monitor = run_on_mocks(env, program)
    token = monitor.registered["serving-token"]
    assert token.type == f"{DYNAMIC}:GeneratedToken"
    assert token.parent == monitor.urn("serving")
    assert token.secret_outputs == ["token"]
    assert monitor.urn("serving-token") in monitor.registered["serving-server"].dependencies
    assert monitor.result is True


@pytest.mark.parametrize(
    ("component", "make_args"),
    [
        (TrainingCluster, lambda env: TrainingClusterArgs.from_environment(env)),
        (ModelRegistry, lambda env: ModelRegistryArgs.from_environment(env)),
        (
            ServingStack,
            lambda env: ServingStackArgs.from_environment(env, registry_path="/registry"),
        ),
    ],
)
def test_kubernetes_target_without_its_settings_is_refused_before_anything_registers(
    tmp_path: Path, component: Any, make_args: Any
) -> None:
    args = dataclasses.replace(make_args(environment(tmp_path)), target="kubernetes")
    monitor = RecordingMonitor()
    pulumi.runtime.set_mocks(monitor.mocks, project="demo", stack="dev", monitor=monitor)
    with pytest.raises(ConfigError, match="target kubernetes needs kubernetes=KubernetesTarget"):
        component("thing", args)
    assert monitor.registered == {}
