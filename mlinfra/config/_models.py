"""The schema of mlinfra.toml, validated with pydantic; unknown keys are errors, not surprises."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .._durations import parse_duration
from ..errors import ConfigError
from ._kubernetes import KubernetesSettings

__all__ = [
    "BRANCH_SEPARATOR",
    "EnvSettings",
    "ModelSpec",
    "MonitoringSettings",
    "PreviewSettings",
    "ProjectConfig",
    "ProjectSettings",
    "PulumiSettings",
    "RegistrySettings",
    "ServingSettings",
    "TrainingSettings",
]

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
ENTRY_POINT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
BRANCH_SEPARATOR = "--"
"""Between an env's name and its branch's in the name of a branch env: `dev--feature-x-217d2bf5`."""


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ConfigError as exc:  # pydantic reports a ValueError with the key it was found at
        raise ValueError(str(exc).removeprefix("duration ")) from None
    return text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSettings(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits and dashes")
    stack: str = Field(
        "stacks", description="directory of the Pulumi program, relative to the file"
    )
    state_dir: str = Field(".mlinfra", description="where state, registries and logs live")


class ModelSpec(_Strict):
    """Where a model's pieces live in the user's code, as `module:attribute` entry points.

    `data` and `evaluation_data` return (features, target) or a scikit-learn Bunch; `estimator`
    is an estimator or a function returning one; `search_space` a dict of parameter -> values
    (or scipy distributions for random and halving search), or a function returning one.
    """

    data: str = Field(pattern=ENTRY_POINT_PATTERN)
    estimator: str = Field(pattern=ENTRY_POINT_PATTERN)
    search_space: str | None = Field(None, pattern=ENTRY_POINT_PATTERN)
    evaluation_data: str | None = Field(None, pattern=ENTRY_POINT_PATTERN)
    task: Literal["classification", "regression"] = "classification"
    metric: str | None = Field(None, description="what search optimizes; accuracy or r2 by default")
    gates: list[str] = Field(default_factory=list)
    slices: dict[str, str] = Field(
        default_factory=dict, description="name -> pandas query over the features"
    )
    seed: int = Field(0, ge=0, description="seeds the splits, the search and the samples")
    test_size: float = Field(0.2, gt=0, lt=1)
    cv: int = Field(3, ge=2, le=20, description="cross-validation folds in a search")
    trusted_types: list[str] = Field(
        default_factory=list, description="your own classes skops may load, as module.Class"
    )

    @model_validator(mode="after")
    def _check_metric_and_gates(self) -> ModelSpec:
        from ..evaluation._gates import parse_gate
        from ..evaluation._metrics import metric_names

        if self.metric is not None and self.metric not in metric_names(self.task):
            known = ", ".join(metric_names(self.task))
            raise ValueError(f"metric {self.metric!r} is not a {self.task} metric; known: {known}")
        for gate in self.gates:
            parse_gate(gate, task=self.task, slices=self.slices)
        return self


class TrainingSettings(_Strict):
    """Where a search's fits run: in the `mlinfra train` process (one worker), on a local Dask
    cluster of `workers` processes that `up` starts, or on an existing cluster (`scheduler`)."""

    workers: int = Field(
        1, ge=0, le=256, description="1: fits run in process; 0: a Dask worker per core"
    )
    scheduler: str | None = Field(
        None, description="tcp://host:port of an existing Dask cluster; nothing starts locally"
    )

    @field_validator("scheduler")
    @classmethod
    def _scheduler_address(cls, scheduler: str | None) -> str | None:
        if scheduler is None:
            return None
        scheme, _, where = scheduler.partition("://")
        host, _, port = where.rpartition(":")
        if scheme not in {"tcp", "tls"} or not host or not port.isdigit():
            raise ValueError(f"use tcp://host:port (a Dask scheduler's address), got {scheduler!r}")
        return scheduler

    @model_validator(mode="after")
    def _one_cluster(self) -> TrainingSettings:
        if self.scheduler is not None and self.workers != 1:
            raise ValueError(
                "training.scheduler names an existing cluster, whose workers are its own; "
                "drop training.workers"
            )
        return self


class RegistrySettings(_Strict):
    path: str | None = Field(None, description="default: <state_dir>/envs/<env>/registry")


class ServingSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1024, le=65535)
    workers: int = Field(1, ge=1, le=64)
    auth: bool = False
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    batch_window_ms: float = Field(
        2.0, ge=0, le=50, description="longest wait to batch concurrent requests; 0: off"
    )
    max_batch: int = Field(64, ge=1, le=4096, description="most rows predicted in one call")


Duration = Annotated[str, AfterValidator(_duration)]


class MonitoringSettings(_Strict):
    """What the drift monitor of an env watches, how often, and what it does about drift."""

    enabled: bool = True
    sample_rate: float = Field(1.0, ge=0, le=1, description="share of requests logged")
    interval: Duration = Field("1m", description="how often the monitor checks")
    window: Duration = Field("1h", description="live traffic compared with the reference")
    min_samples: int = Field(200, ge=10, description="below this: not enough data")
    significance: float = Field(0.05, gt=0, lt=0.5, description="false-alarm rate of one check")
    policy: Literal["alert", "retrain", "rollback"] = "alert"
    webhook: str = Field("", description="URL, or $VARIABLE holding it; empty: log only")
    cooldown: Duration = Field("1h", description="repeats of one alert within it are grouped")
    retrain_cooldown: Duration = Field("6h", description="least time between two retrains")
    log_retention: Duration = Field("7d", description="prediction log kept this long")
    log_max_mb: int = Field(1024, ge=1, description="prediction log kept at most this size")

    @model_validator(mode="after")
    def _window_holds_intervals(self) -> MonitoringSettings:
        if parse_duration(self.window) < parse_duration(self.interval):
            raise ValueError(
                f"monitoring.window {self.window!r} is shorter than monitoring.interval "
                f"{self.interval!r}; a window holds at least one interval"
            )
        return self

    @field_validator("webhook")
    @classmethod
    def _webhook_is_url(cls, webhook: str) -> str:
        if webhook and not webhook.startswith(("http://", "https://", "$")):
            raise ValueError("use an http(s) URL, or $VARIABLE naming where it is")
        return webhook


class PulumiSettings(_Strict):
    backend_url: str | None = Field(None, description="default: file://<state_dir>/pulumi")


class EnvSettings(_Strict):
    target: Literal["local", "kubernetes"] = "local"
    engine: Literal["auto", "embedded", "pulumi"] = "auto"
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    pulumi: PulumiSettings = PulumiSettings()
    kubernetes: KubernetesSettings = Field(
        KubernetesSettings(), description='what target = "kubernetes" deploys, and where'
    )

    @model_validator(mode="after")
    def _kubernetes_settings(self) -> EnvSettings:
        if self.target != "kubernetes":
            if "kubernetes" in self.model_fields_set:
                raise ValueError('a [kubernetes] table needs target = "kubernetes"')
            return self
        if self.engine == "embedded":
            raise ValueError(
                "the embedded engine drives local processes only; a kubernetes env is applied "
                'by the pulumi engine (engine = "auto" or "pulumi"), or rendered for kubectl '
                "with `mlinfra render`"
            )
        if self.serving.auth:
            raise ValueError(
                "serving.auth is for the local target; on kubernetes, authenticate at the "
                "ingress controller"
            )
        return self

    @model_validator(mode="after")
    def _backend_needs_pulumi(self) -> EnvSettings:
        if self.engine == "embedded" and self.pulumi.backend_url is not None:
            raise ValueError(
                'pulumi.backend_url is for the pulumi engine; drop it or set engine = "pulumi"'
            )
        return self


class PreviewSettings(_Strict):
    """Branch envs (`--branch`): how long they live, what they start with, where they serve."""

    ttl: Duration = Field("7d", description="a branch env not brought up for this long expires")
    seed_champion: bool = Field(True, description="copy the base env's champion at creation")
    port_range: tuple[int, int] = Field(
        (30000, 32767), description="serving ports of branch envs, first and last"
    )

    @field_validator("port_range")
    @classmethod
    def _ports_in_order(cls, ports: tuple[int, int]) -> tuple[int, int]:
        first, last = ports
        if not 1024 <= first <= last <= 65535:
            raise ValueError(f"use [first, last] with 1024 <= first <= last <= 65535, got {ports}")
        return ports


class ProjectConfig(_Strict):
    project: ProjectSettings
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    env: dict[str, EnvSettings] = Field(min_length=1)
    preview: PreviewSettings = PreviewSettings()

    @field_validator("env")
    @classmethod
    def _env_names(cls, envs: dict[str, EnvSettings]) -> dict[str, EnvSettings]:
        import re

        for name in envs:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"env name {name!r}: use lowercase letters, digits and dashes")
            if BRANCH_SEPARATOR in name:
                raise ValueError(
                    f"env name {name!r}: {BRANCH_SEPARATOR!r} is kept for branch envs "
                    "(dev--feature-x-217d2bf5); use single dashes"
                )
        ports: dict[int, str] = {}
        for name, env in envs.items():
            if env.serving.port in ports:
                other = ports[env.serving.port]
                raise ValueError(
                    f"envs {other!r} and {name!r} both serve on port {env.serving.port}"
                )
            ports[env.serving.port] = name
        return envs
