"""Encryption of free text at rest (Fernet from `cryptography`), transparent to services.

Columns typed `EncryptedText` / `EncryptedJSON` store ciphertext when a key is configured and
plain text otherwise; values written before a key was set stay readable.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

_PREFIX = "enc1:"
_fernet: Fernet | None = None


def configure(key: str | None) -> None:
    """Set (or clear) the process-wide key. Called once at start-up from the settings."""
    global _fernet
    _fernet = Fernet(key.encode()) if key else None


def encrypt(value: str) -> str:
    if _fernet is None:
        return value
    return _PREFIX + _fernet.encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(_PREFIX):
        return value
    if _fernet is None:
        raise RuntimeError("encrypted data found but ENCRYPTION_KEY is not set")
    try:
        return _fernet.decrypt(value[len(_PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError("encrypted data cannot be read with the configured ENCRYPTION_KEY") from exc


class EncryptedText(TypeDecorator[str]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else decrypt(value)


class EncryptedJSON(TypeDecorator[Any]):
    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return encrypt(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(decrypt(value))
