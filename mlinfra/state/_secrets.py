"""Secret values encrypted at rest, keyed by MLINFRA_PASSPHRASE or a generated key file."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import StateError

__all__ = [
    "PASSPHRASE_ENV",
    "SECRET_SIG",
    "SECRET_SIG_KEY",
    "SecretBox",
    "is_secret",
    "plain",
    "wrap_secret",
]

PASSPHRASE_ENV = "MLINFRA_PASSPHRASE"
KEY_FILE_NAME = "secret.key"
# Pulumi marks a secret value as {SECRET_SIG_KEY: SECRET_SIG, "value": ...} on the wire; state,
# engines and CLI keep that wrapper so secretness travels with the value.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_log = logging.getLogger("mlinfra.state")


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def wrap_secret(value: Any) -> dict[str, Any]:
    return value if is_secret(value) else {SECRET_SIG_KEY: SECRET_SIG, "value": value}


def plain(value: Any) -> Any:
    """The value with every secret wrapper taken off, as providers and scripts receive it."""
    if is_secret(value):
        return plain(value.get("value"))
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def masked(value: Any, *, show_secrets: bool = False) -> Any:
    """Secrets become "[secret]"; values not known until `up` become "(known after up)"."""
    if isinstance(value, dict):
        if is_secret(value):
            return masked(value.get("value"), show_secrets=True) if show_secrets else "[secret]"
        return {k: masked(v, show_secrets=show_secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, show_secrets=show_secrets) for v in value]
    if value == "04da6b54-80e4-46f7-96ec-b56ff0331ba9" or type(value).__name__ == "Unknown":
        return "(known after up)"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class SecretBox:
    """Encrypts JSON-able values with Fernet; the key is made only when a secret is first seen,
    and never while `holds_secrets()` says the state has values encrypted with a lost one."""

    def __init__(self, *, state_dir: Path, salt: bytes, holds_secrets: Callable[[], bool]) -> None:
        self._state_dir = state_dir
        self._salt = salt
        self._holds_secrets = holds_secrets
        self._fernet: Any = None

    def _cipher(self) -> Any:
        if self._fernet is None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._key())
        return self._fernet

    def _key(self) -> bytes:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if passphrase:
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            kdf = Scrypt(salt=self._salt, length=32, n=2**14, r=8, p=1)
            return base64.urlsafe_b64encode(kdf.derive(passphrase.encode()))
        return self._key_file()

    def _key_file(self) -> bytes:
        from cryptography.fernet import Fernet

        path = self._state_dir / KEY_FILE_NAME
        if not path.exists():
            if self._holds_secrets():
                raise StateError(
                    f"{path} is missing, and the state holds secrets encrypted with it: restore "
                    f"the key file from your backup, or set {PASSPHRASE_ENV} if the state was "
                    "written with one (a new key could not read them)"
                )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return _read_key(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        return _read_key(path)

    def encrypt(self, value: Any) -> str:
        return str(self._cipher().encrypt(json.dumps(value).encode()).decode())

    def decrypt(self, token: str) -> Any:
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._cipher().decrypt(token.encode()))
        except InvalidToken as exc:
            source = f"${PASSPHRASE_ENV}" if os.environ.get(PASSPHRASE_ENV) else "the key file"
            raise StateError(
                f"cannot decrypt secrets in the state with {source}: "
                f"set the {PASSPHRASE_ENV} the state was written with, or restore "
                f"{self._state_dir / KEY_FILE_NAME}"
            ) from exc


def _read_key(path: Path) -> bytes:
    """The key in `path`; a key others can read is used, with a warning saying how to fix it."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        _log.warning(
            "warning: %s is open to other users (mode %03o); run `chmod 600 %s`",
            path,
            mode,
            path,
        )
    return path.read_bytes().strip()
