"""Relapse prevention: the patient's plan, tip history and urge sessions (DESIGN §2.5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.crypto import EncryptedText
from bot.platform.db import Base, UTCDateTime


class PlanEntry(Base):
    """One line of a patient's relapse-prevention and safety plan (free text, encrypted)."""

    __tablename__ = "plan_entries"
    __table_args__ = (Index("ix_plan_entries_patient_section", "patient_id", "section"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    # warning_signs | triggers | coping | reasons | people | places | professionals
    section: Mapped[str] = mapped_column(String(24))
    text: Mapped[str] = mapped_column(EncryptedText)
    phone: Mapped[str | None] = mapped_column(EncryptedText)  # normalised, for people/professionals
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TipShown(Base):
    """A daily tip sent to a patient on a local date (for rotation without repeats)."""

    __tablename__ = "tip_history"
    __table_args__ = (Index("ix_tip_history_patient_day", "patient_id", "local_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    tip_id: Mapped[str] = mapped_column(String(48))
    local_day: Mapped[date] = mapped_column(Date)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UrgeSession(Base):
    """One hard moment: /sos opened, the tools used, the urge ratings and the follow-up."""

    __tablename__ = "urge_sessions"
    __table_args__ = (Index("ix_urge_sessions_patient_started", "patient_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16), default="sos")  # sos | urge | checkin
    # Ratings 0-10 by key ("before", "after", …) in the order given; tools used, by id.
    ratings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tools: Mapped[list[Any] | None] = mapped_column(JSON)
    followup_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    followup_rating: Mapped[int | None] = mapped_column(Integer)
    followup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    talk_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
