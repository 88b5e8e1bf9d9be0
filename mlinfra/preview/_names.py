"""A branch's name as an env name: sanitised for DNS (so a Kubernetes namespace can carry it)
and suffixed with a hash of the whole name, so that two branches never share one."""

from __future__ import annotations

from .._dns import DNS_LABEL, MAX_LABEL, dns_label
from ..config._models import BRANCH_SEPARATOR
from ..errors import ConfigError

__all__ = ["DNS_LABEL", "MAX_NAME", "branch_env_name", "branch_slug", "normalise_branch"]

MAX_NAME = MAX_LABEL
"""The longest DNS-1123 label, and so the longest name of a branch env."""
_REF_PREFIXES = ("refs/heads/", "refs/remotes/origin/", "origin/")


def normalise_branch(branch: str) -> str:
    """The branch as people name it: `refs/heads/feature/x` and `feature/x` are one branch."""
    name = branch.strip()
    for prefix in _REF_PREFIXES:
        name = name.removeprefix(prefix)
    if not name:
        raise ConfigError(f"--branch {branch!r}: give the branch's name, e.g. feature/login")
    return name


def branch_slug(branch: str, *, room: int = MAX_NAME) -> str:
    """`feature/Login_Page` -> `feature-login-page-3f2a9c1b`: lowercase letters, digits and
    dashes, at most `room` characters, ending in 8 hex digits of the branch's sha256."""
    return dns_label(normalise_branch(branch), room=room)


def branch_env_name(base: str, branch: str) -> str:
    """The name (and stack name) of `branch`'s env derived from env `base`, a DNS-1123 label of
    at most 63 characters: `dev--feature-x-217d2bf5`."""
    room = MAX_NAME - len(base) - len(BRANCH_SEPARATOR)
    return f"{base}{BRANCH_SEPARATOR}{branch_slug(branch, room=room)}"
