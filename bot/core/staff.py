"""Staff roles granted by admins (DESIGN §1). Admins themselves come from ADMIN_USER_IDS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.audit import audit
from bot.core.models import StaffRole
from bot.core.roles import ADMIN, COUNSELOR, FACILITATOR
from bot.platform.content import Content
from bot.platform.outbox import Outgoing, enqueue

GRANTABLE = (COUNSELOR, FACILITATOR)


class StaffError(ValueError):
    pass


@dataclass(frozen=True)
class StaffMember:
    telegram_id: int
    roles: tuple[str, ...]
    display_name: str | None


def parse_role(text: str) -> str | None:
    t = text.strip().lower()
    return t if t in GRANTABLE else None


async def grant(
    session: AsyncSession,
    *,
    actor_id: int,
    telegram_id: int,
    role: str,
    now: datetime,
    display_name: str | None = None,
) -> bool:
    """Grant a role; False when the person already held it."""
    if role not in GRANTABLE:
        raise StaffError(f"role {role!r} cannot be granted")
    q = select(StaffRole).where(StaffRole.telegram_id == telegram_id, StaffRole.role == role)
    if (await session.execute(q)).scalar_one_or_none() is not None:
        return False
    session.add(
        StaffRole(
            telegram_id=telegram_id, role=role, granted_by=actor_id, granted_at=now,
            display_name=(display_name or None),
        )
    )
    await audit(session, actor_id, "staff.grant", f"user:{telegram_id}", {"role": role}, now=now)
    return True


async def revoke(
    session: AsyncSession, *, actor_id: int | None, telegram_id: int, role: str, now: datetime, reason: str | None = None
) -> bool:
    """Revoke a role; False when the person did not hold it. `actor_id` None: the bot did it, for
    the `reason` recorded in the audit trail."""
    if role not in GRANTABLE:
        raise StaffError(f"role {role!r} cannot be revoked")
    res = await session.execute(
        delete(StaffRole).where(StaffRole.telegram_id == telegram_id, StaffRole.role == role)
    )
    if not res.rowcount:
        return False
    detail = {"role": role} if reason is None else {"role": role, "reason": reason}
    await audit(session, actor_id, "staff.revoke", f"user:{telegram_id}", detail, now=now)
    return True


LEFT_GROUP = "left_group"


async def left_group(
    session: AsyncSession, telegram_id: int, *, now: datetime, admin_ids: list[int], content: Content, lang: str
) -> bool:
    """Someone left or was removed from the counselors' group: a counselor role granted to them
    ends with it (audited), and every admin is told in a direct message. An admin who grants the
    role again afterwards has decided they are a counselor outside the group; that grant stands
    until they are removed from the group again. False when they held no granted counselor role."""
    q = select(StaffRole.display_name).where(StaffRole.telegram_id == telegram_id, StaffRole.role == COUNSELOR)
    name = (await session.execute(q)).scalar_one_or_none()
    if not await revoke(session, actor_id=None, telegram_id=telegram_id, role=COUNSELOR, now=now, reason=LEFT_GROUP):
        return False
    text = content.t(
        "staff.left_group", lang, user=str(telegram_id), name=f" ({name})" if name else ""
    )
    for admin in admin_ids:
        await enqueue(session, Outgoing(admin, text), now=now)
    return True


async def roles_in_db(session: AsyncSession, telegram_id: int) -> set[str]:
    q = select(StaffRole.role).where(StaffRole.telegram_id == telegram_id)
    return set((await session.execute(q)).scalars())


async def list_staff(session: AsyncSession, admin_ids: list[int]) -> list[StaffMember]:
    """Everyone with a role: admins from configuration, then granted roles."""
    roles: dict[int, set[str]] = {uid: {ADMIN} for uid in admin_ids}
    names: dict[int, str | None] = {}
    for r in (await session.execute(select(StaffRole).order_by(StaffRole.id))).scalars():
        roles.setdefault(r.telegram_id, set()).add(r.role)
        if r.display_name:
            names[r.telegram_id] = r.display_name
    order = {ADMIN: 0, COUNSELOR: 1, FACILITATOR: 2}
    return [
        StaffMember(uid, tuple(sorted(rs, key=lambda x: order.get(x, 9))), names.get(uid))
        for uid, rs in sorted(roles.items())
    ]
