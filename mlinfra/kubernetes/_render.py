"""`render(env, out)`: a kubernetes env's objects as YAML files, for `kubectl apply -R -f` or a
GitOps repository, made by running the stack program with no cluster and no pulumi CLI.

The program runs in-process as the embedded engine runs it (mlinfra.engine._program), with a
registrar that records each resource's inputs and hands them back as its outputs. Each object is
written to `<out>/<namespace>/<kind>-<name>.yaml` (the Namespace under `_cluster/`, which
kubectl reaches first), keys sorted after apiVersion, kind and metadata; the serving image's
Dockerfile and the images to build go to `<out>/_build/`, which kubectl does not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Environment, using_environment
from ..engine._program import Registration, run_program
from ..errors import ConfigError, DeploymentError, MlinfraError
from ..state._secrets import plain

__all__ = ["Rendered", "render"]

BUILD_DIR = "_build"
CLUSTER_DIR = "_cluster"
_FIRST_KEYS = ("apiVersion", "kind", "metadata")
_IMAGE_TYPE = "docker:index/image:Image"
_OBJECT_FILE = re.compile(r"^[a-z0-9]+-[a-z0-9.-]+\.yaml$")  # <kind>-<name>.yaml


@dataclass(frozen=True)
class Rendered:
    """What `render` wrote, relative to `out`."""

    out: Path
    objects: list[str]
    build: list[str]
    images: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "objects": self.objects,
            "build": self.build,
            "images": self.images,
        }


@dataclass
class _Recorder:
    """A registrar that creates nothing: every resource's outputs are its inputs."""

    registrations: list[Registration] = field(default_factory=list)

    def register(self, registration: Registration) -> tuple[str, dict[str, Any]]:
        self.registrations.append(registration)
        if not registration.custom:
            return "", {}
        return registration.name, dict(registration.inputs)

    def set_stack_outputs(self, outputs: dict[str, Any]) -> None:
        """Outputs are for `up`; rendering has none to keep."""


def render(env: Environment, out: Path) -> Rendered:
    """Write `env`'s Kubernetes objects, Dockerfile and image list under `out`; the same
    files, byte for byte, for the same project and env."""
    if env.settings.target != "kubernetes":
        raise ConfigError(
            f"env {env.name!r} has target {env.settings.target!r}; render writes the objects "
            'of an env with target = "kubernetes"'
        )
    recorder = _Recorder()
    project = env.project
    try:
        with using_environment(env):
            run_program(
                project.stack_dir,
                recorder,
                project=project.name,
                stack=env.stack_name,
                preview=False,
            )
    except MlinfraError:
        raise
    except Exception as exc:
        raise DeploymentError(
            f"the stack program {project.stack_dir} failed: {type(exc).__name__}: {exc}"
        ) from exc
    objects = [
        manifest(registration.inputs)
        for registration in recorder.registrations
        if registration.custom and registration.type.startswith("kubernetes:")
    ]
    earlier = _earlier_objects(out)
    written = [_write_object(out, obj) for obj in sorted(objects, key=_place)]
    for stale in earlier - set(written):  # an object the stack no longer declares goes too
        (out / stale).unlink()
    images = [r.inputs for r in recorder.registrations if r.type == _IMAGE_TYPE]
    return Rendered(out=out, objects=written, build=_write_build(out, images), images=_refs(images))


def _earlier_objects(out: Path) -> set[str]:
    """The object files an earlier render left in `out` (one with `_build/images.txt`), so that
    a new render leaves exactly its own; nothing in a folder render did not write is touched."""
    if not (out / BUILD_DIR / "images.txt").is_file():
        return set()
    return {
        str(path.relative_to(out))
        for path in out.glob("*/*.yaml")
        if path.parent.name != BUILD_DIR and _OBJECT_FILE.match(path.name)
    }


def manifest(inputs: dict[str, Any]) -> dict[str, Any]:
    """A resource's inputs as the object Kubernetes takes: integral numbers as ints (the
    SDK's mocks return every number as a float), secrets unwrapped (a Secret's data is
    plain in its manifest), apiVersion, kind and metadata first."""
    obj = _normalised(plain(inputs))
    return {key: obj[key] for key in _FIRST_KEYS if key in obj} | {
        key: obj[key] for key in sorted(obj) if key not in _FIRST_KEYS
    }


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalised(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _place(obj: dict[str, Any]) -> str:
    return str(_path(obj))


def _path(obj: dict[str, Any]) -> Path:
    metadata = obj.get("metadata", {})
    folder = metadata.get("namespace") or CLUSTER_DIR
    return Path(folder) / f"{obj['kind'].lower()}-{metadata['name']}.yaml"


def _write_object(out: Path, obj: dict[str, Any]) -> str:
    relative = _path(obj)
    _write(out / relative, yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
    return str(relative)


def _write_build(out: Path, images: list[dict[str, Any]]) -> list[str]:
    """Each image's Dockerfile (and its .dockerignore), and `images.txt`: one line per image,
    its reference, build context, Dockerfile and build args, for `docker build` by hand or in
    CI."""
    written: list[str] = []
    lines = [
        "# image<TAB>context<TAB>dockerfile<TAB>build args: "
        "docker build -t IMAGE -f DOCKERFILE --build-arg ARG... CONTEXT && docker push IMAGE"
    ]
    for image in images:
        source = Path(image["build"]["dockerfile"])
        for name in (source.name, f"{source.name}.dockerignore"):
            relative = Path(BUILD_DIR) / name
            _write(out / relative, (source.parent / name).read_text(encoding="utf-8"))
            written.append(str(relative))
        build_args = " ".join(f"{key}={value}" for key, value in image["build"]["args"].items())
        columns = [image["imageName"], image["build"]["context"], f"{BUILD_DIR}/Dockerfile"]
        lines.append("\t".join([*columns, build_args]))
    images_file = Path(BUILD_DIR) / "images.txt"
    _write(out / images_file, "\n".join(lines) + "\n")
    return [*written, str(images_file)]


def _refs(images: list[dict[str, Any]]) -> list[str]:
    return [image["imageName"] for image in images]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
