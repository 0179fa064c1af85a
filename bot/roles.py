"""Who is who: admins (configuration), counselors and facilitators (roles or group membership).

Every staff command and button re-checks here on the server side (DESIGN §1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.clock import Clock
from bot.config import Settings
from bot.db import Database
from bot.models import StaffRole

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

    def set_membership(self, user_id: int, is_member: bool) -> None:
        """Record what a chat_member update told us (a leave revokes at once)."""
        self._membership[user_id] = (is_member, self.clock.now())

    def forget(self, user_id: int) -> None:
        self._membership.pop(user_id, None)

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
