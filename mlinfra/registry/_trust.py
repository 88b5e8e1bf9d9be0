"""Model (de)serialization with skops and the trust policy that decides what may be loaded.

skops refuses any type it does not know to be safe. We add to its defaults the classes scikit-learn
itself defines (skops flags some, like `sklearn.tree._tree.Tree`) and the names a caller lists,
typically the user's own transformer classes from `[models.NAME] trusted_types`. Functions outside
skops' defaults (`builtins.eval`, `os.system`) are never trusted implicitly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from ._errors import ArtifactRefusedError, UntrustedArtifactError

__all__ = ["dump_model", "load_model", "refuse_untrusted", "untrusted_types"]

_IMPLICITLY_TRUSTED_PACKAGES = ("sklearn",)
# A dtype is a type descriptor rebuilt from its name; scikit-learn's own estimators hold them
# (SimpleImputer, OneHotEncoder), so refusing it would refuse ordinary pipelines.
_IMPLICITLY_TRUSTED_NAMES = frozenset({"numpy.dtype"})


def dump_model(estimator: Any) -> bytes:
    import skops.io

    return skops.io.dumps(estimator)


def untrusted_types(data: bytes, trusted: Iterable[str] = ()) -> list[str]:
    """Types in `data` that neither skops, scikit-learn's own classes, nor `trusted` vouch for."""
    import skops.io

    allowed = set(trusted) | _IMPLICITLY_TRUSTED_NAMES
    try:
        flagged = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises zip, JSON and key errors for unreadable files
        raise ArtifactRefusedError(f"artifact is not a readable skops file: {exc}") from exc
    return [
        name
        for name in flagged
        if name not in allowed
        and name not in _IMPLICITLY_TRUSTED_NAMES
        and not _library_class(name)
    ]


def refuse_untrusted(data: bytes, trusted: Iterable[str], *, model: str) -> None:
    """Raise UntrustedArtifactError naming what model `model` holds beyond the trust policy."""
    refused = untrusted_types(data, trusted)
    if refused:
        raise UntrustedArtifactError(
            f"model {model!r} holds types that are not trusted: {', '.join(refused)}; if they "
            f"are your own classes, list them in [models.{model}] trusted_types"
        )


def load_model(data: bytes, trusted: Iterable[str] = ()) -> Any:
    """Load a skops artifact, refusing it if it holds any type outside the trust policy."""
    import skops.io

    trusted = list(trusted)
    refused = untrusted_types(data, trusted)
    if refused:
        raise UntrustedArtifactError(
            f"artifact holds types that are not trusted: {', '.join(refused)}; if they are your "
            "own classes, list them in [models.NAME] trusted_types"
        )
    accepted = skops.io.get_untrusted_types(data=data)
    try:
        return skops.io.loads(data, trusted=accepted)
    except Exception as exc:
        raise ArtifactRefusedError(f"artifact could not be loaded by skops: {exc}") from exc


def _library_class(name: str) -> bool:
    """True when `name` is a class (not a function) defined inside an implicitly trusted package."""
    module_name, _, attribute = name.rpartition(".")
    if module_name.split(".")[0] not in _IMPLICITLY_TRUSTED_PACKAGES:
        return False
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and obj.__module__.split(".")[0] in _IMPLICITLY_TRUSTED_PACKAGES
