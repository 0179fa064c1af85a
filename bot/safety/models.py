"""Safety questions asked after a risk signal (DESIGN §2.6)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.crypto import EncryptedText
from bot.platform.db import Base, UTCDateTime


class SafetyCheck(Base):
    """An uncertain risk signal the patient was asked to confirm."""

    __tablename__ = "safety_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(String(32))
    evidence: Mapped[str | None] = mapped_column(EncryptedText)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # yes | no | talk | timeout
    answer: Mapped[str | None] = mapped_column(String(12))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flag_id: Mapped[int | None] = mapped_column(Integer)
