"""Conversation state: what a person's next typed message is an answer to.

Stored in the database (not in memory), so a half-finished conversation survives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import ChatState


@dataclass(frozen=True)
class Awaiting:
    kind: str
    data: dict[str, Any]


async def get(session: AsyncSession, user_id: int) -> Awaiting | None:
    row = await session.get(ChatState, user_id)
    return None if row is None else Awaiting(row.kind, dict(row.data or {}))


async def set_(session: AsyncSession, user_id: int, kind: str, data: dict[str, Any] | None, now: datetime) -> None:
    row = await session.get(ChatState, user_id)
    if row is None:
        session.add(ChatState(user_id=user_id, kind=kind, data=data or {}, updated_at=now))
    else:
        row.kind, row.data, row.updated_at = kind, data or {}, now


async def clear(session: AsyncSession, user_id: int, kind: str | None = None) -> None:
    q = delete(ChatState).where(ChatState.user_id == user_id)
    if kind is not None:
        q = q.where(ChatState.kind == kind)
    await session.execute(q)
