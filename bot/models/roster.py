"""Who is in the counselors' group: the roster the crisis alerts reach (DESIGN §2.6)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime


class GroupMember(Base):
    """A person Telegram told us is (or was) in the counselors' group: from chat_member updates
    and membership checks. Members of the group are counselors (README), so they are messaged
    directly when a crisis flag stays unclaimed, whether or not they hold a role."""

    __tablename__ = "group_members"

    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    is_member: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str | None] = mapped_column(String(16))  # Telegram's word: member, administrator, left, …
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
