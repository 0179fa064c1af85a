"""Assessment results (DESIGN §2.3)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.crypto import EncryptedJSON
from bot.platform.db import Base, UTCDateTime


class AssessmentResult(Base):
    """One administration of an instrument (weekly check, PHQ-9, GAD-7), answered item by item.

    `answers` maps item id -> {"v": option value, "at": ISO time}.
    """

    __tablename__ = "assessment_results"
    __table_args__ = (Index("ix_assessment_results_patient_instrument", "patient_id", "instrument", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    instrument: Mapped[str] = mapped_column(String(24))
    local_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | done | cancelled
    step: Mapped[str | None] = mapped_column(String(40))
    answers: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    total: Mapped[int | None] = mapped_column(Integer)
    band: Mapped[str | None] = mapped_column(String(32))
    domains: Mapped[dict[str, int] | None] = mapped_column(JSON)
    crisis_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
