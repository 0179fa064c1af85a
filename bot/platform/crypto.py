"""Encryption of free text at rest (Fernet from `cryptography`), transparent to services.

Columns typed `EncryptedText` / `EncryptedJSON` store ciphertext when a key is configured and
plain text otherwise; values written before a key was set stay readable.

At start-up `check_key` makes sure the configured key can read what is stored: a key check row
(`runtime_settings`, written with the key on first start) must decrypt, so a key that was changed
or removed after data was written stops the bot with one sentence instead of failing later on
every encrypted read.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text, column, select, table
from sqlalchemy.types import TypeDecorator

from bot.platform.config import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.platform.db import Database

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


# -- the key check ---------------------------------------------------------------------------

CHECK_KEY = "encryption_key_check"
_CHECK_VALUE = "iop-bot key check"
_UNENCRYPTED = "unencrypted"


class KeyCheckError(ConfigError):
    """The configured ENCRYPTION_KEY cannot read the stored data."""


_WRONG_KEY = (
    "ENCRYPTION_KEY cannot read the data already stored in the database (the key was changed after "
    "data was written); set ENCRYPTION_KEY back to the key the data was written with."
)
_NO_KEY = (
    "ENCRYPTION_KEY is not set, but the data in the database was encrypted with a key; set "
    "ENCRYPTION_KEY back to that key."
)


def _can_read(value: str, expected: str | None = None) -> None:
    """Raise KeyCheckError unless the configured key decrypts `value` (to `expected`, if given)."""
    if _fernet is None:
        raise KeyCheckError(_NO_KEY)
    try:
        plain = _fernet.decrypt(value[len(_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise KeyCheckError(_WRONG_KEY) from None
    if expected is not None and plain != expected:
        raise KeyCheckError(_WRONG_KEY)


async def _stored_ciphertext(session: AsyncSession) -> str | None:
    """One encrypted value already stored, if any (an installation from before the key check)."""
    from bot.platform.db import Base

    for t in Base.metadata.sorted_tables:
        for col in t.columns:
            if isinstance(col.type, EncryptedText | EncryptedJSON):
                raw = column(col.name, Text)  # read as stored, not decrypted
                q = select(raw).select_from(table(t.name)).where(raw.like(_PREFIX + "%")).limit(1)
                value = (await session.execute(q)).scalar_one_or_none()
                if value is not None:
                    return str(value)
    return None


async def check_key(db: Database, now: datetime) -> None:
    """At start-up: the configured key reads what is stored, or KeyCheckError (one sentence).

    The first start writes the check row (encrypted with the key, or a marker without one). A key
    set later on an unencrypted installation is accepted and the row is encrypted with it.
    """
    from bot.platform.models import RuntimeSetting

    async with db.transaction() as s:
        row = await s.get(RuntimeSetting, CHECK_KEY)
        if row is None:
            stored = await _stored_ciphertext(s)
            if stored is not None:
                _can_read(stored)
        elif row.value.startswith(_PREFIX):
            _can_read(row.value, _CHECK_VALUE)
            return
        elif _fernet is None:
            return  # unencrypted, as before
        value = encrypt(_CHECK_VALUE) if _fernet is not None else _UNENCRYPTED
        if row is None:
            s.add(RuntimeSetting(key=CHECK_KEY, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now
