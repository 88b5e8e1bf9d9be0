"""Dynamic providers as the embedded engine meets them: unpickled from `__provider`, and the
secret wrappers the provider must never see."""

from __future__ import annotations

import base64
import threading
from typing import Any

from pulumi.dynamic import ResourceProvider

from ..errors import DeploymentError

__all__ = [
    "DYNAMIC_TYPE_PREFIX",
    "PROVIDER_KEY",
    "is_secret",
    "load_provider",
    "overrides",
    "plain",
    "wrap_secret",
]

PROVIDER_KEY = "__provider"
DYNAMIC_TYPE_PREFIX = "pulumi-python:dynamic"
_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_cache: dict[str, ResourceProvider] = {}
_cache_lock = threading.Lock()


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SECRET_SIG_KEY) == _SECRET_SIG


def wrap_secret(value: Any) -> dict[str, Any]:
    return value if is_secret(value) else {_SECRET_SIG_KEY: _SECRET_SIG, "value": value}


def plain(value: Any) -> Any:
    """The value with every secret wrapper taken off, as providers receive it."""
    if is_secret(value):
        return plain(value.get("value"))
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def load_provider(props: dict[str, Any], what: str) -> ResourceProvider:
    serialized = plain(props.get(PROVIDER_KEY))
    if not isinstance(serialized, str):
        raise DeploymentError(f"{what}: no dynamic provider recorded for this resource")
    provider = _cache.get(serialized)
    if provider is None:
        import dill

        with _cache_lock:
            provider = _cache.get(serialized)
            if provider is None:
                try:
                    provider = dill.loads(base64.b64decode(serialized))
                except Exception as exc:
                    raise DeploymentError(
                        f"{what}: its provider code cannot be loaded ({exc}); "
                        "is the package that defined it still installed?"
                    ) from exc
                _cache[serialized] = provider
    return provider


def overrides(provider: ResourceProvider, method: str) -> bool:
    """Did the provider implement `method`, or inherit the base class's default?"""
    return getattr(type(provider), method) is not getattr(ResourceProvider, method)
