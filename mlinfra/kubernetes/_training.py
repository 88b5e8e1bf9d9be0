"""DaskCluster: the scheduler and workers that an env's training runs on."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from ._namespace import env_namespace
from ._pods import container, pod_spec, resources, service_account
from ._target import KubernetesTarget

__all__ = ["DASHBOARD_PORT", "SCHEDULER_PORT", "DaskCluster"]

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
_COMPONENT = "training"


class DaskCluster(pulumi.ComponentResource):
    """A Dask scheduler (Deployment + Service) and `workers` worker pods, with the env's
    training resources, GPUs, node selector and tolerations."""

    scheduler: pulumi.Output[str]
    """`tcp://<service>.<namespace>.svc:8786`: what `training.scheduler` takes."""
    dashboard: pulumi.Output[str]
    workers: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        target: KubernetesTarget,
        *,
        workers: int,
        serving_image: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlinfra:kubernetes:DaskCluster", name, None, opts)
        namespace = env_namespace(target)
        child = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        settings = target.settings.training
        image = serving_image if settings.image == "serving" else settings.image
        account = service_account(target, name, _COMPONENT, child)
        scheduler_name = f"{name}-scheduler"
        scheduler_labels = target.selector(_COMPONENT, **{"mlinfra.dev/role": "scheduler"})
        scheduler = container(
            "scheduler",
            image,
            args=["dask", "scheduler", "--port", str(SCHEDULER_PORT)],
            resources=resources(settings.resources),
            ports=[
                {"name": "scheduler", "containerPort": SCHEDULER_PORT},
                {"name": "dashboard", "containerPort": DASHBOARD_PORT},
            ],
            readinessProbe={"tcpSocket": {"port": "scheduler"}, "periodSeconds": 10},
            livenessProbe={"httpGet": {"path": "/health", "port": "dashboard"}},
        )
        _deployment(target, scheduler_name, 1, scheduler_labels, [scheduler], account, child)
        k8s.core.v1.Service(
            scheduler_name,
            metadata=target.metadata(scheduler_name, _COMPONENT),
            spec={
                "selector": scheduler_labels,
                "ports": [
                    {"name": "scheduler", "port": SCHEDULER_PORT, "targetPort": "scheduler"},
                    {"name": "dashboard", "port": DASHBOARD_PORT, "targetPort": "dashboard"},
                ],
            },
            opts=child,
        )
        address = f"tcp://{target.dns(scheduler_name)}:{SCHEDULER_PORT}"
        worker = container(
            "worker",
            image,
            args=["dask", "worker", address, "--nthreads", "1", "--memory-limit", "auto"],
            resources=resources(settings.resources, gpus=settings.gpus),
        )
        placement: dict[str, Any] = {}
        if settings.node_selector:
            placement["nodeSelector"] = settings.node_selector
        if settings.tolerations:
            placement["tolerations"] = [
                {key: value for key, value in toleration.model_dump().items() if value}
                for toleration in settings.tolerations
            ]
        worker_labels = target.selector(_COMPONENT, **{"mlinfra.dev/role": "worker"})
        # 0 means one per core locally; on a cluster, one pod (scale with training.workers)
        replicas = max(workers, 1)
        _deployment(
            target, f"{name}-workers", replicas, worker_labels, [worker], account, child, placement
        )
        self.scheduler = pulumi.Output.from_input(address)
        self.dashboard = pulumi.Output.from_input(
            f"http://{target.dns(scheduler_name)}:{DASHBOARD_PORT}/status"
        )
        self.workers = pulumi.Output.from_input(replicas)
        self.register_outputs(
            {"scheduler": self.scheduler, "dashboard": self.dashboard, "workers": self.workers}
        )


def _deployment(
    target: KubernetesTarget,
    name: str,
    replicas: int,
    selector: dict[str, str],
    containers: list[dict[str, Any]],
    account: k8s.core.v1.ServiceAccount,
    opts: pulumi.ResourceOptions,
    placement: dict[str, Any] | None = None,
) -> k8s.apps.v1.Deployment:
    return k8s.apps.v1.Deployment(
        name,
        metadata=target.metadata(name, _COMPONENT),
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": target.labels(_COMPONENT) | selector},
                "spec": pod_spec(
                    containers, service_account=account.metadata.name, **(placement or {})
                ),
            },
        },
        opts=opts,
    )
