"""Inline keyboards as Bot API JSON: the one shape every outbox row and reply uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Button = tuple[str, str]  # (label, callback_data)
MAX_CALLBACK_BYTES = 64
# Every number the bot puts in callback data is a row id (a 32-bit integer column on
# PostgreSQL) or smaller; a larger one was not made by the bot.
MAX_CALLBACK_NUMBER = 2**31 - 1


def inline_keyboard(rows: Sequence[Sequence[Button]]) -> dict[str, Any]:
    """`{"inline_keyboard": …}` from rows of (label, callback_data); refuses data Telegram would."""
    for row in rows:
        for _label, data in row:
            if len(data.encode()) > MAX_CALLBACK_BYTES:
                raise ValueError(f"callback_data too long: {data!r}")
    return {"inline_keyboard": [[{"text": label, "callback_data": data} for label, data in row] for row in rows]}
