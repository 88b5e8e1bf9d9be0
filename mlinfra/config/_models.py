"""The schema of mlinfra.toml, validated with pydantic; unknown keys are errors, not surprises."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EnvSettings",
    "KubernetesSettings",
    "ModelSpec",
    "ProjectConfig",
    "ProjectSettings",
    "PulumiSettings",
    "RegistrySettings",
    "ServingSettings",
    "TrainingSettings",
]

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
ENTRY_POINT_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSettings(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits and dashes")
    stack: str = Field(
        "stacks", description="directory of the Pulumi program, relative to the file"
    )
    state_dir: str = Field(".mlinfra", description="where state, registries and logs live")


class ModelSpec(_Strict):
    """Where a model's pieces live in the user's code, as `module:attribute` entry points."""

    data: str = Field(pattern=ENTRY_POINT_PATTERN)
    estimator: str = Field(pattern=ENTRY_POINT_PATTERN)
    search_space: str | None = Field(None, pattern=ENTRY_POINT_PATTERN)
    evaluation_data: str | None = Field(None, pattern=ENTRY_POINT_PATTERN)
    task: Literal["classification", "regression"] = "classification"
    gates: list[str] = Field(default_factory=list)
    slices: dict[str, str] = Field(default_factory=dict)


class TrainingSettings(_Strict):
    workers: int = Field(0, ge=0, le=256, description="0 means one per core")


class RegistrySettings(_Strict):
    path: str | None = Field(None, description="default: <state_dir>/envs/<env>/registry")


class ServingSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1024, le=65535)
    workers: int = Field(1, ge=1, le=64)
    auth: bool = False
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)


class KubernetesSettings(_Strict):
    namespace: str | None = None
    image: str | None = None
    replicas: int = Field(2, ge=1)
    cpu: str = "500m"
    memory: str = "512Mi"


class PulumiSettings(_Strict):
    backend_url: str | None = Field(None, description="default: file://<state_dir>/pulumi")


class EnvSettings(_Strict):
    target: Literal["local", "kubernetes"] = "local"
    engine: Literal["auto", "embedded", "pulumi"] = "auto"
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    serving: ServingSettings = ServingSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    pulumi: PulumiSettings = PulumiSettings()
    policies: dict[str, str] = Field(default_factory=dict)


class ProjectConfig(_Strict):
    project: ProjectSettings
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    env: dict[str, EnvSettings] = Field(min_length=1)

    @field_validator("env")
    @classmethod
    def _env_names(cls, envs: dict[str, EnvSettings]) -> dict[str, EnvSettings]:
        import re

        for name in envs:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"env name {name!r}: use lowercase letters, digits and dashes")
        ports: dict[int, str] = {}
        for name, env in envs.items():
            if env.target == "local" and env.serving.port in ports:
                other = ports[env.serving.port]
                raise ValueError(
                    f"envs {other!r} and {name!r} both serve on port {env.serving.port}"
                )
            ports[env.serving.port] = name
        return envs
