"""Conversation state: what a person's next typed message is an answer to.

Stored in the database (not in memory), so a half-finished conversation survives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import ChatState
from bot.platform.db import conflict_insert


@dataclass(frozen=True)
class Awaiting:
    kind: str
    data: dict[str, Any]


# Table statements, no ORM objects: every check-in passes through here, and with no objects in
# any session, a state deleted elsewhere (onboarding, privacy) can never be a stale one.
_T = ChatState.__table__
_GET = select(_T.c.kind, _T.c.data).where(_T.c.user_id == bindparam("user_id"))


async def get(session: AsyncSession, user_id: int) -> Awaiting | None:
    row = (await session.execute(_GET, {"user_id": user_id})).first()
    return None if row is None else Awaiting(row.kind, dict(row.data or {}))


async def set_(session: AsyncSession, user_id: int, kind: str, data: dict[str, Any] | None, now: datetime) -> None:
    values = {"kind": kind, "data": data or {}, "updated_at": now}
    ins = conflict_insert(session, _T).values(user_id=user_id, **values)
    await session.execute(ins.on_conflict_do_update(index_elements=["user_id"], set_=values))


async def clear(session: AsyncSession, user_id: int, kind: str | None = None) -> None:
    q = delete(_T).where(_T.c.user_id == user_id)
    if kind is not None:
        q = q.where(_T.c.kind == kind)
    await session.execute(q)
