"""The language a person is spoken to in: one resolver, used once per update (handlers/context.py).

In order: the patient's stored language (set at onboarding, changed in /settings); before there is
one (a stranger, staff), Telegram's `language_code` when content/ has that language; else the
clinic's `DEFAULT_LANGUAGE`. What the bot posts on its own to the counselors' group (flags,
digests, notices) is in the clinic's language; a reply to a person, staff included, is in theirs.

The stored languages are kept in memory (`Languages`), read from the database the first time a
person writes; whoever stores or erases a language `forget`s it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import bindparam, select

from bot.core.models import Patient
from bot.platform.db import Database

log = logging.getLogger(__name__)

# How many people's stored languages are kept (the oldest read is dropped first).
KEPT = 50_000

_STORED = select(Patient.__table__.c.language).where(Patient.__table__.c.telegram_id == bindparam("telegram_id"))


def pick(stored: str | None, telegram_code: str | None, languages: Sequence[str], default: str) -> str:
    """The resolver's order: the stored language, else Telegram's if content has it, else `default`."""
    if stored:
        return stored
    base = (telegram_code or "").split("-")[0].lower()
    return base if base in languages else default


class Languages:
    """Each person's stored language (None: they have none), read once and kept."""

    def __init__(self, db: Database, languages: Sequence[str], default: str) -> None:
        self.db = db
        self.languages = languages
        self.default = default  # the clinic's: the counselors' group and anyone with no other
        self._stored: dict[int, str | None] = {}

    async def of(self, telegram_id: int | None, telegram_code: str | None) -> str:
        """The language of this person (a database read only the first time they are seen)."""
        if telegram_id is None:
            return self.default
        if telegram_id not in self._stored:
            try:
                async with self.db.session() as s:
                    stored = (await s.execute(_STORED, {"telegram_id": telegram_id})).scalar_one_or_none()
            except Exception as exc:  # never keeps a reply (a crisis reply) from going out
                log.warning("language: could not read a stored language (%s)", type(exc).__name__)
                return self.known(telegram_id, telegram_code)
            if len(self._stored) >= KEPT:
                del self._stored[next(iter(self._stored))]
            self._stored[telegram_id] = stored
        return pick(self._stored[telegram_id], telegram_code, self.languages, self.default)

    def known(self, telegram_id: int | None, telegram_code: str | None) -> str:
        """`of` from what is kept, without the database."""
        stored = self._stored.get(telegram_id) if telegram_id is not None else None
        return pick(stored, telegram_code, self.languages, self.default)

    def forget(self, telegram_id: int) -> None:
        """Their stored language was set, changed or erased: read it again next time."""
        self._stored.pop(telegram_id, None)
