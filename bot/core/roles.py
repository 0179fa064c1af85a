"""Who is who: admins (configuration), counselors and facilitators (roles or group membership).

Every staff command and button re-checks here on the server side (DESIGN §1). What Telegram says
about the counselors' group (chat_member updates, membership checks) is also kept in the
database as the group's roster, so crisis alerts reach every member, not only role holders.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import GroupMember, StaffRole
from bot.platform.clock import Clock
from bot.platform.config import Settings
from bot.platform.content import get_content
from bot.platform.db import Database, conflict_insert

log = logging.getLogger(__name__)

ADMIN = "admin"
COUNSELOR = "counselor"
FACILITATOR = "facilitator"
STAFF_ROLES = (COUNSELOR, FACILITATOR, ADMIN)

# Returns the member status of a user in the counselors' group ("member", "left", …) or None.
MemberLookup = Callable[[int, int], Awaitable[str | None]]

MEMBERSHIP_TTL = timedelta(minutes=5)
_IN = {"creator", "administrator", "member", "restricted"}


class Roles:
    def __init__(self, db: Database, settings: Settings, clock: Clock, lookup: MemberLookup | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.lookup = lookup
        self._membership: dict[int, tuple[bool, datetime]] = {}
        # Called after someone lost access and messages were queued (the outbox sender's wake).
        self.after_change: list[Callable[[], None]] = []
        # What ends when someone is no longer a counselor, in the same transaction (the
        # escalation area ends their conversations with patients): fn(session, user_id, now).
        self.on_access_lost: list[Callable[[AsyncSession, int, datetime], Awaitable[None]]] = []

    def set_membership(self, user_id: int, is_member: bool) -> None:
        """Record what a chat_member update told us (a leave revokes at once)."""
        self._membership[user_id] = (is_member, self.clock.now())

    async def record_membership(self, user_id: int, is_member: bool, status: str | None = None) -> None:
        """A chat_member update or a join/leave service message: access follows at once, the
        group's roster remembers it, and leaving the group ends a granted counselor role."""
        self.set_membership(user_id, is_member)
        await self._remember(user_id, is_member, status, removed=not is_member)

    async def _remember(self, user_id: int, is_member: bool, status: str | None, *, removed: bool) -> None:
        """Keep the roster. Someone out of the group who was in it (Telegram said they left or
        were removed, or a check found them out while the roster had them in) loses a granted
        counselor role (staff.left_group), and then what their access allowed ends (settle_access). A
        check that finds someone out who was not in (a counselor an admin granted the role to
        after their removal) changes nothing."""
        from bot.core import staff

        now = self.clock.now()
        left = False
        try:
            async with self.db.transaction() as s:
                was_member = await on_roster(s, user_id)
                await record_member(s, user_id, is_member, status, now)
                left = not is_member and (removed or was_member)
        except Exception as exc:  # the roster is for alerts; a role check never fails on it
            log.warning("roles: could not record a group membership (%s)", type(exc).__name__)
            left = not is_member and removed
        if not left:
            return
        try:
            async with self.db.transaction() as s:
                told = await staff.left_group(
                    s, user_id, now=now, admin_ids=list(self.settings.admin_user_ids),
                    content=get_content(self.settings.content_dir), lang=self.settings.default_language,
                )
            if told:
                self._wake()
        except Exception as exc:
            log.error("roles: a counselor role could not be ended after leaving the group (%s)", type(exc).__name__)
        await self.settle_access(user_id)

    async def settle_access(self, user_id: int) -> None:
        """After someone's role or membership changed: if they are no longer a counselor, their
        conversations with patients end (each patient is told) and they are no longer on call."""
        try:
            if await self.has(user_id, COUNSELOR):
                return
            async with self.db.transaction() as s:
                for ends in self.on_access_lost:
                    await ends(s, user_id, self.clock.now())
        except Exception as exc:
            log.error("roles: conversations of someone who lost access were not ended (%s)", type(exc).__name__)
            return
        self._wake()

    def _wake(self) -> None:
        for wake in self.after_change:
            wake()

    def forget(self, user_id: int) -> None:
        self._membership.pop(user_id, None)

    def known_member(self, user_id: int) -> bool:
        """Whether this user was seen in the counselors' group recently, from memory only (never
        waits for Telegram or the database: the crisis reply asks it before anything else)."""
        cached = self._membership.get(user_id)
        return bool(cached and cached[0])

    async def in_counselor_group(self, user_id: int) -> bool:
        chat = self.settings.counselor_chat_id
        if chat is None or self.lookup is None:
            return False
        cached = self._membership.get(user_id)
        now = self.clock.now()
        if cached and now - cached[1] < MEMBERSHIP_TTL:
            return cached[0]
        try:
            status = await self.lookup(chat, user_id)
        except Exception:
            # Telegram unreachable: keep a known answer rather than lock staff out or let others in.
            return cached[0] if cached else False
        member = status in _IN
        self._membership[user_id] = (member, now)
        if cached is None or cached[0] != member:
            await self._remember(user_id, member, status, removed=bool(cached and cached[0]) and not member)
        return member

    async def roles_of(self, user_id: int) -> set[str]:
        roles: set[str] = set()
        if self.settings.is_admin(user_id):
            roles.add(ADMIN)
        async with self.db.session() as s:
            roles.update((await s.execute(select(StaffRole.role).where(StaffRole.telegram_id == user_id))).scalars())
        if COUNSELOR not in roles and await self.in_counselor_group(user_id):
            roles.add(COUNSELOR)
        return roles

    async def has(self, user_id: int, *wanted: str) -> bool:
        """True if the user holds any of the wanted roles (admins hold every role)."""
        roles = await self.roles_of(user_id)
        return ADMIN in roles or bool(roles.intersection(wanted))

    async def is_staff(self, user_id: int) -> bool:
        return bool(await self.roles_of(user_id))


# -- the group's roster -------------------------------------------------------------------------


async def record_member(session: AsyncSession, user_id: int, is_member: bool, status: str | None, now: datetime) -> None:
    """Upsert one person's membership of the counselors' group."""
    values = {"is_member": is_member, "status": (status or None) and status[:16], "updated_at": now}
    ins = conflict_insert(session, GroupMember).values(telegram_id=user_id, **values)
    await session.execute(ins.on_conflict_do_update(index_elements=["telegram_id"], set_=values))


async def on_roster(session: AsyncSession, user_id: int) -> bool:
    """True if the roster has this person in the counselors' group."""
    q = select(GroupMember.is_member).where(GroupMember.telegram_id == user_id)
    return bool((await session.execute(q)).scalar_one_or_none())


async def group_members(session: AsyncSession) -> list[int]:
    """Telegram ids of everyone known to be in the counselors' group now."""
    q = select(GroupMember.telegram_id).where(GroupMember.is_member.is_(True)).order_by(GroupMember.telegram_id)
    return list((await session.execute(q)).scalars())
