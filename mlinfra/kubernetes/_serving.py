"""KubeServing: the env's model server on Kubernetes, stable and canary, autoscaled, behind
an Ingress that sends the canary its weight of the traffic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from ._image import ServingImage
from ._namespace import env_namespace
from ._pods import container, pod_spec, resources, service_account
from ._registries import data_claim
from ._target import APP_DIR, DATA_DIR, KubernetesTarget, object_name

__all__ = ["KubeServing", "ServerOptions"]

_COMPONENT = "serving"
_TRACK = "mlinfra.dev/track"


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """What `python -m mlinfra.serving` is started with, as ServingStackArgs holds it."""

    env: str
    registry_path: pulumi.Input[str]
    port: pulumi.Input[int]
    workers: pulumi.Input[int]
    max_body_bytes: pulumi.Input[int] | None = None
    batch_window_ms: pulumi.Input[float] | None = None
    max_batch: pulumi.Input[int] | None = None
    log_options: dict[str, pulumi.Input[Any]] | None = None
    """The prediction log's flags and values (`--log-dir`: DATA_DIR/monitoring/log); None: off."""

    def args(self) -> pulumi.Output[list[str]]:
        options: dict[str, pulumi.Input[Any] | None] = {
            "--host": "0.0.0.0",  # noqa: S104 (the pod's own network namespace)
            "--port": self.port,
            "--workers": self.workers,
            "--registry": self.registry_path,
            "--env": self.env,
            "--max-body-bytes": self.max_body_bytes,
            "--batch-window-ms": self.batch_window_ms,
            "--max-batch": self.max_batch,
            "--code-path": APP_DIR,
            **(self.log_options or {}),
        }
        given = {flag: value for flag, value in options.items() if value is not None}
        return pulumi.Output.all(*given.values()).apply(
            lambda values: [
                "python",
                "-m",
                "mlinfra.serving",
                *(
                    part
                    for flag, value in zip(given, values, strict=True)
                    for part in (flag, str(value))
                ),
            ]
        )


class KubeServing(pulumi.ComponentResource):
    """The serving image, stable and canary Deployments (restricted, probed, scraped by
    Prometheus), a PodDisruptionBudget, an HPA, Services, Ingresses and a NetworkPolicy."""

    url: pulumi.Output[str]
    """Inside the cluster; the Ingress serves it outside."""
    image: str
    service: str
    """The stable Service's in-cluster name, which the drift monitor's rollback talks to."""

    def __init__(
        self,
        name: str,
        target: KubernetesTarget,
        options: ServerOptions,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlinfra:kubernetes:KubeServing", name, None, opts)
        namespace = env_namespace(target)
        child = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        image = ServingImage(f"{name}-image", target, pulumi.ResourceOptions(parent=self))
        self.image = image.ref
        account = service_account(target, name, _COMPONENT, child)
        settings = target.settings.serving
        port = pulumi.Output.from_input(options.port)
        after_image = pulumi.ResourceOptions(parent=self, depends_on=[namespace, image.image])
        tracks = {"stable": settings.replicas, "canary": settings.canary_replicas}
        for track, replicas in tracks.items():
            _deployment(
                target,
                f"{name}-{track}",
                track,
                replicas,
                image.ref,
                options,
                port,
                account,
                after_image,
            )
        stable = f"{name}-stable"
        k8s.policy.v1.PodDisruptionBudget(
            stable,
            metadata=target.metadata(stable, _COMPONENT),
            spec={"minAvailable": 1, "selector": {"matchLabels": _selector(target, "stable")}},
            opts=child,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            stable,
            metadata=target.metadata(stable, _COMPONENT),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": stable},
                "minReplicas": settings.min_replicas,
                "maxReplicas": settings.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": settings.target_cpu,
                            },
                        },
                    }
                ],
            },
            opts=child,
        )
        for track in tracks:
            _service(target, f"{name}-{track}", track, child)
        _ingress(target, stable, stable, {}, child)
        canary_annotations = {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": str(settings.canary_weight),
        }
        _ingress(target, f"{name}-canary", f"{name}-canary", canary_annotations, child)
        k8s.networking.v1.NetworkPolicy(
            name,
            metadata=target.metadata(name, _COMPONENT),
            spec={
                "podSelector": {"matchLabels": target.selector(_COMPONENT)},
                "policyTypes": ["Ingress"],
                # the ingress controller, Prometheus and the drift monitor, from any namespace;
                # nothing else reaches the pods
                "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}],
            },
            opts=child,
        )
        self.service = target.dns(object_name(stable))
        self.url = pulumi.Output.from_input(f"http://{self.service}")
        self.register_outputs({"url": self.url, "image": self.image})


def _selector(target: KubernetesTarget, track: str) -> dict[str, str]:
    return target.selector(_COMPONENT, **{_TRACK: track})


def _deployment(
    target: KubernetesTarget,
    name: str,
    track: str,
    replicas: int,
    image: str,
    options: ServerOptions,
    port: pulumi.Output[int],
    account: k8s.core.v1.ServiceAccount,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    settings = target.settings
    server = container(
        "server",
        image,
        args=options.args(),
        resources=resources(settings.serving.resources),
        mounts=[{"name": "data", "mountPath": DATA_DIR}],
        ports=[{"name": "http", "containerPort": port}],
        readinessProbe={
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        livenessProbe={
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
        },
    )
    init: list[dict[str, Any]] = []
    if settings.model_storage.s3:
        init.append(_registry_copy(target))
    selector = _selector(target, track)
    scrape = port.apply(
        lambda number: {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(number),
            "prometheus.io/path": "/metrics",
        }
    )
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": data_claim(target)}}
    spec: dict[str, Any] = {"volumes": [volume]}
    if init:
        spec["initContainers"] = init
    return k8s.apps.v1.Deployment(
        name,
        metadata=target.metadata(name, _COMPONENT),
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": target.labels(_COMPONENT) | selector, "annotations": scrape},
                "spec": pod_spec([server], service_account=account.metadata.name, **spec),
            },
        },
        opts=opts,
    )


def _registry_copy(target: KubernetesTarget) -> dict[str, Any]:
    """An init container that copies the registry from the S3 bucket onto the data volume."""
    storage = target.settings.model_storage
    args = ["s3", "sync", f"s3://{storage.s3_bucket}", f"{DATA_DIR}/registry"]
    if storage.s3_endpoint:
        args += ["--endpoint-url", storage.s3_endpoint]
    copy = container(
        "registry-copy",
        "amazon/aws-cli:2.22.0",
        args=args,
        resources=resources(target.settings.serving.resources),
        mounts=[{"name": "data", "mountPath": DATA_DIR}],
    )
    copy["envFrom"] = [{"secretRef": {"name": storage.s3_secret}}]
    return copy


def _service(
    target: KubernetesTarget, name: str, track: str, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        name,
        metadata=target.metadata(name, _COMPONENT),
        spec={
            "selector": _selector(target, track),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
        opts=opts,
    )


def _ingress(
    target: KubernetesTarget,
    name: str,
    service: str,
    annotations: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.Ingress:
    settings = target.settings.serving
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {
                        "service": {"name": object_name(service), "port": {"name": "http"}}
                    },
                }
            ]
        }
    }
    if settings.ingress_host:
        rule["host"] = settings.ingress_host
    return k8s.networking.v1.Ingress(
        name,
        metadata=target.metadata(name, _COMPONENT, **annotations),
        spec={"ingressClassName": settings.ingress_class, "rules": [rule]},
        opts=opts,
    )
