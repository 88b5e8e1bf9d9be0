"""Property-level diffs between two sets of resource properties."""

from __future__ import annotations

from typing import Any

from ..state import is_secret, plain
from ._types import PropertyDiff

__all__ = ["INTERNAL_KEYS", "diff_properties", "secret_aware_equal"]

INTERNAL_KEYS = frozenset({"__provider"})


def secret_aware_equal(old: Any, new: Any) -> bool:
    return bool(plain(old) == plain(new))


def diff_properties(
    old: dict[str, Any], new: dict[str, Any], *, replace_keys: frozenset[str] = frozenset()
) -> list[PropertyDiff]:
    """Top-level keys that differ, secrets compared by value and shown masked."""
    diffs: list[PropertyDiff] = []
    for key in sorted((old.keys() | new.keys()) - INTERNAL_KEYS):
        before, after = old.get(key), new.get(key)
        if key not in old:
            kind = "add"
        elif key not in new:
            kind = "delete"
        elif secret_aware_equal(before, after):
            continue
        else:
            kind = "update"
        diffs.append(
            PropertyDiff(
                path=key,
                kind=kind,
                old=_shown(before),
                new=_shown(after),
                replaces=key in replace_keys,
            )
        )
    return diffs


def _shown(value: Any) -> Any:
    if is_secret(value):
        return "[secret]"
    return value
