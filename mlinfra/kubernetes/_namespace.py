"""EnvNamespace: an env's own namespace, its quota, its limits, and "restricted" enforced."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

import pulumi
import pulumi_kubernetes as k8s

from ._target import KubernetesTarget

__all__ = ["EnvNamespace", "env_namespace"]

_POD_SECURITY = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
} | {
    f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in ("enforce", "audit", "warn")
}
_declared: WeakKeyDictionary[Any, EnvNamespace] = WeakKeyDictionary()
"""By the monitor of the program run (one per run, in tests as under the engines)."""


class EnvNamespace(pulumi.ComponentResource):
    """The Namespace, with a ResourceQuota and a LimitRange from `[env.E.kubernetes]`."""

    name: pulumi.Output[str]

    def __init__(self, target: KubernetesTarget, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlinfra:kubernetes:EnvNamespace", "namespace", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = target.labels("namespace") | _POD_SECURITY
        namespace = k8s.core.v1.Namespace(
            "namespace", metadata={"name": target.namespace, "labels": labels}, opts=child
        )
        after = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        quota = target.settings.quota
        hard = {
            "requests.cpu": quota.requests_cpu,
            "requests.memory": quota.requests_memory,
            "limits.cpu": quota.limits_cpu,
            "limits.memory": quota.limits_memory,
            "requests.storage": quota.storage,
            "requests.nvidia.com/gpu": str(quota.gpus),
            "pods": str(quota.pods),
        }
        k8s.core.v1.ResourceQuota(
            "quota",
            metadata=target.metadata("quota", "namespace"),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=hard),
            opts=after,
        )
        limits = target.settings.limit_range
        k8s.core.v1.LimitRange(
            "limits",
            metadata=target.metadata("limits", "namespace"),
            spec=k8s.core.v1.LimitRangeSpecArgs(
                limits=[
                    k8s.core.v1.LimitRangeItemArgs(
                        type="Container",
                        default_request={
                            "cpu": limits.default_cpu_request,
                            "memory": limits.default_memory_request,
                        },
                        default={
                            "cpu": limits.default_cpu_limit,
                            "memory": limits.default_memory_limit,
                        },
                        max={"cpu": limits.max_cpu, "memory": limits.max_memory},
                    )
                ]
            ),
            opts=after,
        )
        self.name = namespace.metadata.name
        self.register_outputs({"name": self.name})


def env_namespace(target: KubernetesTarget) -> EnvNamespace:
    """The env's namespace, declared by whichever component needs it first in this stack
    program (each of them does, and the stack program builds several)."""
    from pulumi.runtime.settings import get_monitor

    run = get_monitor()
    if run not in _declared:
        _declared[run] = EnvNamespace(target)
    return _declared[run]
