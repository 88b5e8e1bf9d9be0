"""Pod specs under the Pod Security Standards' "restricted" profile, which the namespace
enforces: non-root, read-only root filesystem (an emptyDir for /tmp), no privilege escalation,
no capabilities, the runtime's seccomp profile, and no ServiceAccount token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from ..config._kubernetes import ResourceSettings
from ._target import KubernetesTarget

__all__ = ["container", "pod_spec", "resources", "service_account"]

RUN_AS = 10001
"""The uid and gid every container runs as; the serving image creates that user."""
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
_TMP = {"name": "tmp", "emptyDir": {}}


def resources(settings: ResourceSettings, *, gpus: int = 0) -> dict[str, Any]:
    """Requests and limits; GPUs are asked for as `nvidia.com/gpu`, in both (as Kubernetes
    requires of extended resources)."""
    requests = {"cpu": settings.cpu_request, "memory": settings.memory_request}
    limits = {"cpu": settings.cpu_limit, "memory": settings.memory_limit}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def container(
    name: str,
    image: pulumi.Input[str],
    *,
    args: pulumi.Input[list[str]],
    resources: dict[str, Any],
    mounts: Sequence[dict[str, Any]] = (),
    **fields: Any,
) -> dict[str, Any]:
    """A container that writes only to /tmp and to the volumes mounted for it."""
    return {
        "name": name,
        "image": image,
        "args": args,
        "resources": resources,
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
        "env": [{"name": "HOME", "value": "/tmp"}],
        **fields,
    }


def pod_spec(
    containers: list[dict[str, Any]],
    *,
    service_account: str,
    volumes: Sequence[dict[str, Any]] = (),
    **fields: Any,
) -> dict[str, Any]:
    return {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY,
        "containers": containers,
        "volumes": [_TMP, *volumes],
        **fields,
    }


def service_account(
    target: KubernetesTarget, name: str, component: str, opts: pulumi.ResourceOptions
) -> k8s.core.v1.ServiceAccount:
    """A ServiceAccount of its own per component, with no API token mounted: none of mlinfra's
    pods talks to the Kubernetes API."""
    return k8s.core.v1.ServiceAccount(
        name,
        metadata=target.metadata(name, component),
        automount_service_account_token=False,
        opts=opts,
    )
