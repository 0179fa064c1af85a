"""Messages the bot sent to staff about a patient, so erasure can take them back (DESIGN §2.10)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.db import Base, UTCDateTime


class StaffMessage(Base):
    """One message in a staff chat (a counselor's DM or the counselors' group) that shows a
    patient: Details, relayed words, flag posts and cards. On `/delete` each is deleted, or edited
    to a neutral line where Telegram no longer allows deleting it. No foreign key: the row
    outlives nothing, erasure reads it and removes it in the same transaction."""

    __tablename__ = "staff_messages"
    __table_args__ = (Index("uq_staff_messages_chat_message", "chat_id", "message_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(Integer, index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
