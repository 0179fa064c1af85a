"""The counselors' group: its chat id can change when Telegram upgrades it to a supergroup.

The new id is remembered in the database, so after a restart the bot keeps using it even while
COUNSELOR_CHAT_ID still names the old group.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.platform.models import RuntimeSetting

KEY = "counselor_chat_migrated:{old}"


async def record_migration(session: AsyncSession, old_id: int, new_id: int, now: datetime) -> None:
    key = KEY.format(old=old_id)
    row = await session.get(RuntimeSetting, key)
    if row is None:
        session.add(RuntimeSetting(key=key, value=str(new_id), updated_at=now))
    else:
        row.value, row.updated_at = str(new_id), now


async def current_id(session: AsyncSession, configured: int) -> int:
    """The group's id today: follows recorded migrations from the configured one."""
    seen = {configured}
    chat = configured
    while True:
        row = await session.get(RuntimeSetting, KEY.format(old=chat))
        if row is None or int(row.value) in seen:
            return chat
        chat = int(row.value)
        seen.add(chat)
