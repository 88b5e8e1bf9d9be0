"""Content-addressed blobs: a file's name is its sha256, so a changed byte is always noticed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .._fs import atomic_write_bytes
from ._errors import TamperedArtifactError

__all__ = ["ArtifactStore", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Blobs under `root/ab/cdef...`; writes are atomic, files 0600."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256; storing the same bytes twice is a no-op."""
        digest = sha256_hex(data)
        target = self.path(digest)
        # Only bytes that still hash to their name count as stored: a tampered copy is replaced.
        if target.is_file() and sha256_hex(target.read_bytes()) == digest:
            return digest
        target.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write_bytes(target, data, mode=0o600)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes stored under `digest`, refused unless they still hash to it."""
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError as exc:
            raise TamperedArtifactError(
                f"artifact {digest[:12]} is missing from {target.parent}"
            ) from exc
        actual = sha256_hex(data)
        if actual != digest:
            raise TamperedArtifactError(
                f"artifact {target} was modified after registration: "
                f"sha256 is {actual[:12]}, the registry recorded {digest[:12]}; refusing to load it"
            )
        return data
