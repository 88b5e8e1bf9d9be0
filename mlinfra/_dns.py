"""Names Kubernetes accepts: DNS-1123 labels, sanitised from any text, with a short hash so
that two different texts never share one."""

from __future__ import annotations

import hashlib
import re

__all__ = ["DNS_LABEL", "MAX_LABEL", "dns_label"]

MAX_LABEL = 63
"""The longest DNS-1123 label."""
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HASH_CHARS = 8
_NOT_DNS = re.compile(r"[^a-z0-9]+")


def dns_label(text: str, *, room: int = MAX_LABEL) -> str:
    """`feature/Login_Page` -> `feature-login-page-3f2a9c1b`: lowercase letters, digits and
    dashes, at most `room` characters, ending in 8 hex digits of the text's sha256."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]
    readable = _NOT_DNS.sub("-", text.lower()).strip("-")
    readable = readable[: max(room - _HASH_CHARS - 1, 0)].rstrip("-")
    return f"{readable}-{digest}" if readable else digest
