"""The kubernetes target: an env's namespace, Dask cluster, storage, registries, serving and
drift monitor as Kubernetes objects (pulumi-kubernetes) and its serving image (pulumi-docker).

`mlinfra.components` delegates here when an env has `target = "kubernetes"`; `render(env, out)`
writes the objects as YAML for `kubectl apply` or GitOps, without a cluster or the pulumi CLI.
See docs/kubernetes.md.
"""

from ._image import ServingImage, dockerfile, image_ref
from ._monitor import KubeDriftMonitor, cron_schedule
from ._namespace import EnvNamespace, env_namespace
from ._registries import ContainerRegistry, ModelStorage
from ._render import Rendered, render
from ._serving import KubeServing, ServerOptions
from ._target import KubernetesTarget, object_name
from ._training import DaskCluster

__all__ = [
    "ContainerRegistry",
    "DaskCluster",
    "EnvNamespace",
    "KubeDriftMonitor",
    "KubeServing",
    "KubernetesTarget",
    "ModelStorage",
    "Rendered",
    "ServerOptions",
    "ServingImage",
    "cron_schedule",
    "dockerfile",
    "env_namespace",
    "image_ref",
    "object_name",
    "render",
]
