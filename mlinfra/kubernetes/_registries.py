"""The env's storage: the data volume (model registry and monitoring) and the container
registry its images are pushed to."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from ._namespace import env_namespace
from ._pods import container, pod_spec, resources, service_account
from ._target import DATA_DIR, IN_CLUSTER_REGISTRY_PORT, KubernetesTarget

__all__ = ["ContainerRegistry", "ModelStorage", "data_claim"]

_REGISTRY_IMAGE = "registry:2.8.3"
_REGISTRY_PORT = 5000


def data_claim(target: KubernetesTarget) -> str:
    """The PersistentVolumeClaim every pod of the env mounts at DATA_DIR."""
    return f"{target.project}-data"


class ModelStorage(pulumi.ComponentResource):
    """A PersistentVolumeClaim for the registry and the prediction log; with `s3_bucket`, the
    serving pods copy the registry from the bucket into it when they start."""

    path: pulumi.Output[str]
    """The registry's directory inside every pod."""
    uri: pulumi.Output[str]

    def __init__(
        self, name: str, target: KubernetesTarget, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlinfra:kubernetes:ModelStorage", name, None, opts)
        namespace = env_namespace(target)
        storage = target.settings.model_storage
        claim = data_claim(target)
        _claim(
            target,
            claim,
            "registry",
            storage.size,
            storage.storage_class,
            storage.access_mode,
            pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        self.path = pulumi.Output.from_input(f"{DATA_DIR}/registry")
        uri = f"s3://{storage.s3_bucket}" if storage.s3 else f"pvc://{target.namespace}/{claim}"
        self.uri = pulumi.Output.from_input(uri)
        self.register_outputs({"path": self.path, "uri": self.uri})


class ContainerRegistry(pulumi.ComponentResource):
    """A registry:2 Deployment with a volume of its own and a NodePort Service, or nothing
    but the address of the external registry of `container_registry.url`."""

    address: pulumi.Output[str]

    def __init__(
        self, name: str, target: KubernetesTarget, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlinfra:kubernetes:ContainerRegistry", name, None, opts)
        self.address = pulumi.Output.from_input(target.image_registry)
        settings = target.settings.container_registry
        if not settings.url:
            namespace = env_namespace(target)
            child = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
            _claim(
                target,
                name,
                "image-registry",
                settings.storage_size,
                settings.storage_class,
                "ReadWriteOnce",
                child,
            )
            self._in_cluster(name, target, child)
        self.register_outputs({"address": self.address})

    def _in_cluster(
        self, name: str, target: KubernetesTarget, opts: pulumi.ResourceOptions
    ) -> None:
        component = "image-registry"
        account = service_account(target, name, component, opts)
        selector = target.selector(component)
        registry = container(
            "registry",
            _REGISTRY_IMAGE,
            args=["/etc/docker/registry/config.yml"],
            resources=resources(target.settings.serving.resources),
            mounts=[{"name": "images", "mountPath": "/var/lib/registry"}],
            ports=[{"name": "registry", "containerPort": _REGISTRY_PORT}],
            readinessProbe={"httpGet": {"path": "/v2/", "port": "registry"}},
            livenessProbe={"httpGet": {"path": "/v2/", "port": "registry"}},
        )
        volume = {"name": "images", "persistentVolumeClaim": {"claimName": name}}
        k8s.apps.v1.Deployment(
            name,
            metadata=target.metadata(name, component),
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # one pod at a time on its volume
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": target.labels(component)},
                    "spec": pod_spec(
                        [registry], service_account=account.metadata.name, volumes=[volume]
                    ),
                },
            },
            opts=opts,
        )
        k8s.core.v1.Service(
            name,
            metadata=target.metadata(name, component),
            spec={
                "type": "NodePort",
                "selector": selector,
                "ports": [
                    {
                        "name": "registry",
                        "port": _REGISTRY_PORT,
                        "targetPort": "registry",
                        "nodePort": IN_CLUSTER_REGISTRY_PORT,
                    }
                ],
            },
            opts=opts,
        )


def _claim(
    target: KubernetesTarget,
    name: str,
    component: str,
    size: str,
    storage_class: str,
    access_mode: str,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.PersistentVolumeClaim:
    spec: dict[str, object] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return k8s.core.v1.PersistentVolumeClaim(
        name, metadata=target.metadata(name, component), spec=spec, opts=opts
    )
