"""The `[env.E.kubernetes]` table: where and how big a kubernetes env's objects are.

Every key has a default, so `target = "kubernetes"` alone deploys; see docs/kubernetes.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ContainerRegistrySettings",
    "KubeServingSettings",
    "KubeTrainingSettings",
    "KubernetesSettings",
    "LimitRangeSettings",
    "ModelStorageSettings",
    "QuotaSettings",
    "ResourceSettings",
    "Toleration",
]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
Quantity = Annotated[
    str,
    Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$", description="e.g. 500m, 2Gi"),
]
DASK_IMAGE = "ghcr.io/dask/dask:2024.12.1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceSettings(_Strict):
    """A container's requests and limits."""

    cpu_request: Quantity = "250m"
    memory_request: Quantity = "256Mi"
    cpu_limit: Quantity = "1"
    memory_limit: Quantity = "1Gi"


class QuotaSettings(_Strict):
    """The namespace's ResourceQuota: what all its pods together may ask for."""

    requests_cpu: Quantity = "8"
    requests_memory: Quantity = "16Gi"
    limits_cpu: Quantity = "16"
    limits_memory: Quantity = "32Gi"
    pods: int = Field(50, ge=1)
    gpus: int = Field(0, ge=0, description="requests.nvidia.com/gpu; 0: none may be asked for")
    storage: Quantity = "200Gi"


class LimitRangeSettings(_Strict):
    """The namespace's LimitRange: defaults for a container that sets none, and its ceiling."""

    default_cpu_request: Quantity = "100m"
    default_memory_request: Quantity = "128Mi"
    default_cpu_limit: Quantity = "500m"
    default_memory_limit: Quantity = "512Mi"
    max_cpu: Quantity = "4"
    max_memory: Quantity = "8Gi"


class ContainerRegistrySettings(_Strict):
    """Where the serving image is pushed: a registry inside the namespace, or an external one."""

    url: str = Field("", description='e.g. "ghcr.io/acme"; empty: a registry in the cluster')
    storage_size: Quantity = Field("20Gi", description="the in-cluster registry's volume")
    storage_class: str = Field("", description="empty: the cluster's default class")

    @model_validator(mode="after")
    def _storage_for_in_cluster_only(self) -> ContainerRegistrySettings:
        if self.url and self.model_fields_set & {"storage_size", "storage_class"}:
            raise ValueError("storage_size and storage_class are for the in-cluster registry")
        return self


class ModelStorageSettings(_Strict):
    """The model registry's storage: a PersistentVolumeClaim, or an S3-compatible bucket the
    pods copy it from when they start."""

    size: Quantity = "10Gi"
    storage_class: str = Field("", description="empty: the cluster's default class")
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce", description="ReadWriteMany when replicas run on several nodes"
    )
    s3_endpoint: str = Field("", description="an S3-compatible endpoint URL; empty: AWS")
    s3_bucket: str = Field("", description="set it to read the registry from this bucket")
    s3_secret: str = Field(
        "", description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )

    @property
    def s3(self) -> bool:
        return bool(self.s3_bucket)

    @model_validator(mode="after")
    def _s3_complete(self) -> ModelStorageSettings:
        if self.s3 and not self.s3_secret:
            raise ValueError("s3_bucket needs s3_secret, the Secret holding the bucket's keys")
        if not self.s3 and (self.s3_endpoint or self.s3_secret):
            raise ValueError("s3_endpoint and s3_secret need s3_bucket")
        return self


class KubeServingSettings(_Strict):
    """The serving Deployments, their autoscaler and their ingress."""

    replicas: int = Field(2, ge=1, le=100, description="stable replicas before autoscaling")
    min_replicas: int = Field(2, ge=1, le=100)
    max_replicas: int = Field(6, ge=1, le=100)
    target_cpu: int = Field(70, ge=1, le=100, description="average CPU %, the HPA's target")
    canary_replicas: int = Field(1, ge=1, le=100)
    canary_weight: int = Field(10, ge=0, le=100, description="% of ingress traffic to canary")
    resources: ResourceSettings = ResourceSettings()
    ingress_host: str = Field("", description="e.g. iris.example.com; empty: any host")
    ingress_class: str = "nginx"

    @model_validator(mode="after")
    def _replicas_in_range(self) -> KubeServingSettings:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"use min_replicas <= replicas <= max_replicas, got {self.min_replicas}, "
                f"{self.replicas}, {self.max_replicas}"
            )
        return self


class Toleration(_Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class KubeTrainingSettings(_Strict):
    """The Dask scheduler and workers that training runs on (`training.workers` of them)."""

    image: str = Field(DASK_IMAGE, description='"serving": the serving image, with your code')
    resources: ResourceSettings = ResourceSettings(cpu_limit="2", memory_limit="4Gi")
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per worker")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class KubernetesSettings(_Strict):
    namespace: str | None = Field(
        None, pattern=DNS_LABEL_PATTERN, description="default: <project>-<env>"
    )
    quota: QuotaSettings = QuotaSettings()
    limit_range: LimitRangeSettings = LimitRangeSettings()
    container_registry: ContainerRegistrySettings = ContainerRegistrySettings()
    model_storage: ModelStorageSettings = ModelStorageSettings()
    serving: KubeServingSettings = KubeServingSettings()
    training: KubeTrainingSettings = KubeTrainingSettings()
