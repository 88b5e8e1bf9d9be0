"""What every Kubernetes object of an env is named, labelled and placed by."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from .. import __version__
from .._dns import DNS_LABEL, MAX_LABEL, dns_label
from ..config import Environment
from ..config._kubernetes import KubernetesSettings

__all__ = ["KubernetesTarget", "object_name"]

MANAGED_BY = "mlinfra"
DATA_DIR = "/var/lib/mlinfra"
"""Where the env's data volume is mounted in every pod: registry/ and monitoring/ below it."""
APP_DIR = "/app"
"""Where the serving image holds the project's code."""
IN_CLUSTER_REGISTRY_PORT = 30500
"""The NodePort of the in-cluster registry: nodes pull from localhost:30500 (plain HTTP is
allowed for localhost), and `kubectl port-forward` lets this machine push there."""


def object_name(*parts: str) -> str:
    """`parts` joined by dashes when that is a DNS-1123 label, else a sanitised label with a
    hash of the whole."""
    joined = "-".join(parts)
    if len(joined) <= MAX_LABEL and DNS_LABEL.match(joined):
        return joined
    return dns_label(joined)


@dataclass(frozen=True, kw_only=True)
class KubernetesTarget:
    """An env on Kubernetes: its settings and the names that follow from its project and env."""

    project: str
    env: str
    settings: KubernetesSettings
    project_root: str
    """The serving image's build context: the project's code; absolute."""
    build_dir: str
    """Where the generated Dockerfile is written; absolute."""
    model_version: str = "none"
    """The model versions the env serves now, as `model:version`, labelled on the image."""

    @classmethod
    def from_environment(cls, env: Environment) -> KubernetesTarget:
        return cls(
            project=env.project.name,
            env=env.name,
            settings=env.settings.kubernetes,
            project_root=str(env.project.root.resolve()),
            build_dir=str(env.env_dir / "image"),
            model_version=_served_versions(env),
        )

    @property
    def namespace(self) -> str:
        return self.settings.namespace or object_name(self.project, self.env)

    @property
    def image_registry(self) -> str:
        """Where images are pushed and pulled from."""
        external = self.settings.container_registry.url.rstrip("/")
        return external or f"localhost:{IN_CLUSTER_REGISTRY_PORT}"

    def dns(self, service: str) -> str:
        """A Service's name inside the cluster."""
        return f"{service}.{self.namespace}.svc"

    def labels(self, component: str) -> dict[str, str]:
        """The recommended `app.kubernetes.io/*` labels of one component's objects."""
        return {
            **self.selector(component),
            "app.kubernetes.io/part-of": self.project,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/version": __version__,
        }

    def selector(self, component: str, **extra: str) -> dict[str, str]:
        """The labels that pick a component's pods: stable across versions."""
        return {
            "app.kubernetes.io/name": self.project,
            "app.kubernetes.io/instance": object_name(self.env),
            "app.kubernetes.io/component": component,
            **extra,
        }

    def metadata(self, name: str, component: str, **annotations: str) -> ObjectMetaArgs:
        return ObjectMetaArgs(
            name=object_name(name),
            namespace=self.namespace,
            labels=self.labels(component),
            annotations=annotations or None,
        )


def _served_versions(env: Environment) -> str:
    """`iris:3` for each model the env's registry has deployed; `none` before the first
    deploy or without a registry on this machine."""
    path = Path(env.registry_path)
    from ..registry import DATABASE_FILE, Registry

    if not (path / DATABASE_FILE).is_file():
        return "none"
    with Registry.open(path) as registry:
        champions = {
            model: registry.aliases(model, env=env.name).get("champion")
            for model in sorted(env.project.config.models)
        }
    versions = [f"{model}:{number}" for model, number in champions.items() if number is not None]
    return ",".join(versions) or "none"
