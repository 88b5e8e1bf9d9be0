"""The kubernetes target: the objects the stack program declares for a kubernetes env.

No Kubernetes API server, pulumi CLI or Docker daemon can run here, so the components run on
`pulumi.runtime.Mocks` (tests named `_on_mocks`), which record each object and echo its inputs
back; `mlinfra render` runs the real stack program through the embedded engine's mock hook, and
what it writes is validated, strictly, against the Kubernetes schemas of kubernetes-validate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest
import yaml
from conftest import copy_iris, run_cli
from hypothesis import given
from hypothesis import strategies as st
from pulumi.runtime.mocks import MockMonitor
from test_components import (
    STACK_PROGRAM,
    EchoMocks,
    an_event_loop_for_the_mocks,  # noqa: F401 - autouse: a fresh event loop per test
    environment,
)

from mlinfra._dns import DNS_LABEL, dns_label
from mlinfra.config import Environment, load_project, using_environment
from mlinfra.errors import ConfigError
from mlinfra.kubernetes import cron_schedule, render
from mlinfra.kubernetes._render import manifest

KUBERNETES_VERSION = "1.37.0"


class ObjectsMonitor(MockMonitor):
    """Keeps every Kubernetes object and image the program declares, by kind and name."""

    def __init__(self) -> None:
        super().__init__(EchoMocks())
        self.objects: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []
        self.exports: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
        if request.type.startswith("kubernetes:"):
            self.objects.append(manifest(inputs))
        elif request.type.startswith("docker:"):
            self.images.append(inputs)
        return response

    def one(self, kind: str, name: str) -> dict[str, Any]:
        return next(o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


def kubernetes_env(tmp_path: Path, **kubernetes: Any) -> Environment:
    settings: dict[str, Any] = {"target": "kubernetes", "training": {"workers": 3}}
    if kubernetes:
        settings["kubernetes"] = kubernetes
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.py").write_text("VALUE = 1\n")
    return environment(tmp_path, "prod", **settings)


def objects_on_mocks(env: Environment) -> ObjectsMonitor:
    import runpy

    from pulumi.runtime.settings import ROOT

    monitor = ObjectsMonitor()

    @pulumi.runtime.test
    def body() -> Any:
        with using_environment(env):
            runpy.run_path(str(STACK_PROGRAM))
            monitor.exports = dict(pulumi.runtime.get_root_resource().outputs)

    # a root stack of its own, whose exports later tests on mocks do not inherit
    root = ROOT.set(None)
    try:
        pulumi.runtime.set_mocks(monitor.mocks, project="demo", stack=env.name, monitor=monitor)
        body()
    finally:
        ROOT.reset(root)
    return monitor


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def test_every_pod_runs_restricted_without_token_on_mocks(tmp_path: Path) -> None:
    monitor = objects_on_mocks(kubernetes_env(tmp_path))
    pods = [spec for obj in monitor.objects for spec in pod_specs(obj)]
    assert len(pods) == 6  # scheduler, workers, image registry, stable, canary, monitor
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    for account in monitor.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    accounts = {account["metadata"]["name"] for account in monitor.of_kind("ServiceAccount")}
    assert {pod["serviceAccountName"] for pod in pods} == accounts


def test_namespace_enforces_restricted_with_quota_and_limits_on_mocks(tmp_path: Path) -> None:
    env = kubernetes_env(tmp_path, quota={"pods": 20, "gpus": 2})
    monitor = objects_on_mocks(env)
    (namespace,) = monitor.of_kind("Namespace")
    assert namespace["metadata"]["name"] == "demo-prod"
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    hard = monitor.one("ResourceQuota", "quota")["spec"]["hard"]
    assert hard["pods"] == "20"
    assert hard["requests.nvidia.com/gpu"] == "2"
    (limit,) = monitor.one("LimitRange", "limits")["spec"]["limits"]
    assert limit["type"] == "Container"
    assert limit["default"] == {"cpu": "500m", "memory": "512Mi"}
    assert {o["metadata"].get("namespace", "demo-prod") for o in monitor.objects} == {"demo-prod"}


def test_serving_probes_budget_autoscaler_and_scrape_on_mocks(tmp_path: Path) -> None:
    env = kubernetes_env(tmp_path, serving={"replicas": 3, "max_replicas": 8, "target_cpu": 60})
    monitor = objects_on_mocks(env)
    stable = monitor.one("Deployment", "serving-stable")
    assert stable["spec"]["replicas"] == 3
    template = stable["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8700",
        "prometheus.io/path": "/metrics",
    }
    (server,) = template["spec"]["containers"]
    assert server["args"][:3] == ["python", "-m", "mlinfra.serving"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert server["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert server["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert monitor.one("Deployment", "serving-canary")["spec"]["replicas"] == 1
    budget = monitor.one("PodDisruptionBudget", "serving-stable")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"]["mlinfra.dev/track"] == "stable"
    autoscaler = monitor.one("HorizontalPodAutoscaler", "serving-stable")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "serving-stable"
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (2, 8)
    target = autoscaler["spec"]["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 60}
    policy = monitor.one("NetworkPolicy", "serving")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "serving"


def test_canary_ingress_carries_its_weight_on_mocks(tmp_path: Path) -> None:
    env = kubernetes_env(tmp_path, serving={"canary_weight": 25, "ingress_host": "a.example.com"})
    monitor = objects_on_mocks(env)
    stable = monitor.one("Ingress", "serving-stable")
    canary = monitor.one("Ingress", "serving-canary")
    assert "annotations" not in stable["metadata"]
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "25",
    }
    for ingress, service in ((stable, "serving-stable"), (canary, "serving-canary")):
        (rule,) = ingress["spec"]["rules"]
        assert rule["host"] == "a.example.com"
        assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service
        assert ingress["spec"]["ingressClassName"] == "nginx"


def test_labels_and_names_are_dns_1123_on_mocks(tmp_path: Path) -> None:
    env = kubernetes_env(tmp_path)
    monitor = objects_on_mocks(env)
    for obj in monitor.objects:
        assert DNS_LABEL.match(obj["metadata"]["name"]), obj["metadata"]["name"]
        assert len(obj["metadata"]["name"]) <= 63
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "mlinfra"
        assert labels["app.kubernetes.io/part-of"] == "demo"
        assert labels["app.kubernetes.io/instance"] == "prod"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(labels)
        assert "app.kubernetes.io/version" in labels
    with pytest.raises(ConfigError, match="namespace"):
        load_config_with(tmp_path, 'namespace = "Not_A_Label"')


def load_config_with(tmp_path: Path, kubernetes_line: str) -> Any:
    (tmp_path / "mlinfra.toml").write_text(
        '[project]\nname = "demo"\n[env.prod]\ntarget = "kubernetes"\n'
        f"[env.prod.kubernetes]\n{kubernetes_line}\n"
    )
    return load_project(tmp_path)


def test_training_cluster_gpus_placement_and_address_on_mocks(tmp_path: Path) -> None:
    env = kubernetes_env(
        tmp_path,
        training={
            "gpus": 1,
            "node_selector": {"pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        },
    )
    monitor = objects_on_mocks(env)
    workers = monitor.one("Deployment", "training-workers")
    assert workers["spec"]["replicas"] == 3
    spec = workers["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    assert worker["image"].startswith("ghcr.io/dask/dask")
    assert worker["args"][:3] == ["dask", "worker", "tcp://training-scheduler.demo-prod.svc:8786"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert {"training_scheduler", "training_dashboard"} <= set(monitor.exports)
    ports = monitor.one("Service", "training-scheduler")["spec"]["ports"]
    assert [port["port"] for port in ports] == [8786, 8787]
    scheduler = monitor.one("Deployment", "training-scheduler")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in scheduler["containers"][0]["resources"]["limits"]


def test_training_without_gpus_asks_for_none_on_mocks(tmp_path: Path) -> None:
    monitor = objects_on_mocks(kubernetes_env(tmp_path))
    spec = monitor.one("Deployment", "training-workers")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in spec and "tolerations" not in spec


def test_registry_on_a_volume_or_copied_from_s3_on_mocks(tmp_path: Path) -> None:
    on_volume = objects_on_mocks(kubernetes_env(tmp_path / "pvc", model_storage={"size": "3Gi"}))
    claim = on_volume.one("PersistentVolumeClaim", "demo-data")["spec"]
    assert claim["resources"]["requests"]["storage"] == "3Gi"
    stable = on_volume.one("Deployment", "serving-stable")["spec"]["template"]["spec"]
    assert "initContainers" not in stable
    assert on_volume.one("Service", "registry-images")["spec"]["type"] == "NodePort"
    assert on_volume.images[0]["imageName"].startswith("localhost:30500/demo-serving:")

    s3 = {"s3_bucket": "models", "s3_endpoint": "http://minio:9000", "s3_secret": "minio-keys"}
    external = {"url": "ghcr.io/acme"}
    on_s3 = objects_on_mocks(
        kubernetes_env(tmp_path / "s3", model_storage=s3, container_registry=external)
    )
    (copy,) = on_s3.one("Deployment", "serving-stable")["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert copy["args"] == [
        "s3",
        "sync",
        "s3://models",
        "/var/lib/mlinfra/registry",
        "--endpoint-url",
        "http://minio:9000",
    ]
    assert copy["envFrom"] == [{"secretRef": {"name": "minio-keys"}}]
    assert not [o for o in on_s3.objects if o["metadata"]["name"] == "registry-images"]
    assert on_s3.images[0]["imageName"].startswith("ghcr.io/acme/demo-serving:")
    with pytest.raises(ConfigError, match="s3_bucket needs s3_secret"):
        load_config_with(tmp_path, 'model_storage.s3_bucket = "models"')


def test_drift_monitor_is_a_cronjob_checking_once_on_mocks(tmp_path: Path) -> None:
    env = environment(
        tmp_path, "prod", target="kubernetes", monitoring={"interval": "5m", "window": "1h"}
    )
    monitor = objects_on_mocks(env)
    cronjob = monitor.one("CronJob", "serving-monitor")
    assert cronjob["spec"]["schedule"] == "*/5 * * * *"
    (check,) = pod_specs(cronjob)[0]["containers"]
    assert check["args"] == [
        "python",
        "-m",
        "mlinfra.monitoring",
        "--spec",
        "/etc/mlinfra/monitor.json",
        "--once",
    ]
    spec = json.loads(monitor.one("Secret", "serving-monitor-spec")["stringData"]["monitor.json"])
    assert spec["url"] == "http://serving-stable.demo-prod.svc"
    assert spec["interval_seconds"] == 300
    assert [cron_schedule(s) for s in (30, 60, 3600, 7200, 90000)] == [
        "*/1 * * * *",
        "*/1 * * * *",
        "0 */1 * * *",
        "0 */2 * * *",
        "0 0 * * *",
    ]


def test_kubernetes_config_errors_say_why(tmp_path: Path) -> None:
    (tmp_path / "mlinfra.toml").write_text(
        '[project]\nname = "demo"\n[env.prod]\ntarget = "kubernetes"\nengine = "embedded"\n'
    )
    with pytest.raises(ConfigError, match="embedded engine drives local processes only"):
        load_project(tmp_path)
    (tmp_path / "mlinfra.toml").write_text(
        '[project]\nname = "demo"\n[env.dev]\n[env.dev.kubernetes]\nnamespace = "x"\n'
    )
    with pytest.raises(ConfigError, match='needs target = "kubernetes"'):
        load_project(tmp_path)
    with pytest.raises(ConfigError, match="min_replicas <= replicas"):
        load_config_with(tmp_path, "serving.replicas = 9")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_iris(tmp_path / "iris").root


def kubernetes_envs(root: Path) -> list[Environment]:
    project = load_project(root)
    return [
        project.environment(name)
        for name, settings in project.config.env.items()
        if settings.target == "kubernetes"
    ]


def test_render_of_every_kubernetes_env_validates_against_k8s_schema(
    example: Path, tmp_path: Path
) -> None:
    envs = kubernetes_envs(example)
    assert [env.name for env in envs] == ["prod"]
    for env in envs:
        rendered = render(env, tmp_path / env.name)
        assert len(rendered.objects) >= 20
        for relative in rendered.objects:
            obj = yaml.safe_load((tmp_path / env.name / relative).read_text())
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_render_twice_gives_identical_files_with_ints_and_keys_in_order(
    example: Path, tmp_path: Path
) -> None:
    (env,) = kubernetes_envs(example)
    first, second = render(env, tmp_path / "a"), render(env, tmp_path / "b")
    assert first.objects == second.objects and first.build == second.build
    for relative in [*first.objects, *first.build]:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    text = (tmp_path / "a" / "iris-prod" / "deployment-serving-stable.yaml").read_text()
    assert text.startswith("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n")
    obj = yaml.safe_load(text)
    assert obj["spec"]["replicas"] == 2 and type(obj["spec"]["replicas"]) is int
    port = obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert type(port) is int
    assert "  replicas: 2\n" in text
    assert first.objects[0] == "_cluster/namespace-iris-prod.yaml"  # kubectl reaches it first
    dockerfile = (tmp_path / "a" / "_build" / "Dockerfile").read_text()
    assert "AS build" in dockerfile and "USER 10001:10001" in dockerfile
    assert 'org.opencontainers.image.version="' in dockerfile
    assert 'io.mlinfra.model.version="${MODEL_VERSION}"' in dockerfile
    (line,) = (tmp_path / "a" / "_build" / "images.txt").read_text().splitlines()[1:]
    assert line.split("\t")[0] == first.images[0]
    assert line.endswith("MODEL_VERSION=none")


def test_render_again_removes_the_files_of_objects_no_longer_declared(
    example: Path, tmp_path: Path
) -> None:
    (env,) = kubernetes_envs(example)
    out = tmp_path / "k8s"
    first = render(env, out)
    stale = out / "iris-prod" / "deployment-gone.yaml"
    stale.write_text("kind: Deployment\n")  # as if an earlier stack had declared it
    notes = out / "iris-prod" / "README.md"
    notes.write_text("kept: render only removes object files\n")
    second = render(env, out)
    assert second.objects == first.objects and not stale.exists() and notes.exists()
    found = sorted(
        str(p.relative_to(out)) for p in out.glob("*/*.yaml") if p.parent.name != "_build"
    )
    assert found == sorted(first.objects)
    elsewhere = tmp_path / "mine"
    (elsewhere / "ns").mkdir(parents=True)
    (elsewhere / "ns" / "deployment-mine.yaml").write_text("kind: Deployment\n")
    render(env, elsewhere)  # not an earlier render's folder: nothing of it goes
    assert (elsewhere / "ns" / "deployment-mine.yaml").exists()


@given(st.text(max_size=200))
def test_dns_label_is_a_valid_stable_label(text: str) -> None:
    label = dns_label(text)
    assert DNS_LABEL.match(label) and len(label) <= 63
    assert dns_label(text) == label


@given(st.text(max_size=80), st.text(max_size=80))
def test_dns_label_of_distinct_texts_differ(left: str, right: str) -> None:
    if left != right:
        assert dns_label(left) != dns_label(right)


def test_cli_render_writes_objects_and_lists_them_as_json(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("render", "--env", "prod", "--out", str(out), "--json", cwd=example)
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["images"][0].startswith("localhost:30500/iris-serving:")
    assert all((out / relative).is_file() for relative in written["objects"] + written["build"])


def test_cli_render_of_a_local_env_is_a_one_line_error(example: Path, tmp_path: Path) -> None:
    result = run_cli("render", "--env", "dev", "--out", str(tmp_path / "out"), cwd=example)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert 'target = "kubernetes"' in result.stderr


@pytest.mark.parametrize("command", ["up", "preview", "destroy", "status"])
def test_kubernetes_env_without_pulumi_cli_says_so_in_one_line(
    example: Path, tmp_path: Path, command: str
) -> None:
    """PATH is an empty folder: no pulumi CLI, whatever the machine has."""
    args = [command, "--env", "prod"] + (["--yes"] if command in ("up", "destroy") else [])
    nothing = tmp_path / "empty-path"
    nothing.mkdir()
    result = run_cli(*args, cwd=example, env={"PATH": str(nothing)})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "not applied from here" in line
    assert "mlinfra render --env prod --out DIR" in line and "kubectl apply -R -f DIR" in line


def test_public_surface() -> None:
    import mlinfra.kubernetes as kubernetes

    assert kubernetes.__all__ == sorted(kubernetes.__all__)
    assert {"render", "Rendered", "KubernetesTarget", "DaskCluster", "KubeServing"} <= set(
        kubernetes.__all__
    )


def test_monitor_once_runs_one_real_check_and_exits(tmp_path: Path) -> None:
    """What the CronJob runs: one check (nothing served yet, so nothing to compare), its
    heartbeat written, then exit 0; no loop."""
    from mlinfra.monitoring.__main__ import main

    spec = tmp_path / "monitor.json"
    directory = tmp_path / "monitoring"
    spec.write_text(
        json.dumps(
            {
                "env": "prod",
                "registry": str(tmp_path / "registry"),
                "directory": str(directory),
                "url": "http://127.0.0.1:9",
            }
        )
    )
    assert main(["--spec", str(spec), "--once"]) == 0
    status = json.loads((directory / "status.json").read_text())
    assert status["checks"] == 1 and status["last_error"] is None
