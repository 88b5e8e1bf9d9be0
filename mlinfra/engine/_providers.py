"""Dynamic providers as the embedded engine meets them: unpickled from `__provider`, and the
secret wrappers the provider must never see."""

from __future__ import annotations

import base64
import threading
from typing import Any

from pulumi.dynamic import ResourceProvider

from ..errors import DeploymentError
from ..state import is_secret, plain, wrap_secret

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
_cache: dict[str, ResourceProvider] = {}
_cache_lock = threading.Lock()


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
