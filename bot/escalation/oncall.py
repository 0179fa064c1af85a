"""Who is on call, and everyone a flag is sent to directly when the group has not acted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.audit import audit
from bot.core.models import StaffRole
from bot.escalation.models import OnCall
from bot.platform.config import Settings


@dataclass(frozen=True)
class OnCallInfo:
    telegram_id: int
    name: str | None
    set_at: datetime


async def counselor_ids(session: AsyncSession, settings: Settings) -> list[int]:
    """Everyone to alert directly: counselors by role, admins, the on-call counselor, and every
    member of the counselors' group (its roster). A chat that refused the bot (never opened, or
    blocked) is marked by the sender and not written to again until the person opens it."""
    from bot.core.roles import group_members

    ids = set(
        (await session.execute(select(StaffRole.telegram_id).where(StaffRole.role.in_(("counselor", "admin"))))).scalars()
    )
    ids.update(settings.admin_user_ids)
    ids.update(await group_members(session))
    oc = await get_oncall(session)
    if oc is not None:
        ids.add(oc.telegram_id)
    return sorted(ids)


async def get_oncall(session: AsyncSession) -> OnCallInfo | None:
    row = (await session.execute(select(OnCall).order_by(OnCall.id.desc()).limit(1))).scalar_one_or_none()
    if row is None or row.telegram_id is None:
        return None
    return OnCallInfo(row.telegram_id, row.display_name, row.set_at)


async def set_oncall(session: AsyncSession, telegram_id: int | None, *, name: str | None, by: int | None, now: datetime) -> None:
    """Set who is on call (None: nobody). Audited."""
    session.add(OnCall(telegram_id=telegram_id, display_name=(name or None) and name[:64], set_by=by, set_at=now))
    await audit(session, by, "oncall.set", None if telegram_id is None else str(telegram_id), now=now)
