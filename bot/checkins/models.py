"""Check-ins and the sobriety counter (DESIGN §2.2, §2.4)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.crypto import EncryptedJSON
from bot.platform.db import Base, UTCDateTime


class CheckinEntry(Base):
    """One daily check-in per patient and local date; a second check-in that day updates it.

    `answers` and `draft` map item id -> {"v": value, "at": ISO time}: `answers` holds what was
    last finished, `draft` what is being answered now (step = the item being asked). The main
    numbers are also kept in plain columns for rules and charts; the note only in `answers`.
    """

    __tablename__ = "checkin_entries"
    __table_args__ = (
        UniqueConstraint("patient_id", "local_date"),
        Index("ix_checkin_entries_patient_completed", "patient_id", "completed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    local_date: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    step: Mapped[str | None] = mapped_column(String(40))
    draft: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    answers: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    mood: Mapped[int | None] = mapped_column(Integer)
    craving: Mapped[int | None] = mapped_column(Integer)
    use: Mapped[str | None] = mapped_column(String(40))
    sleep: Mapped[int | None] = mapped_column(Integer)
    medication: Mapped[str | None] = mapped_column(String(40))
    halt: Mapped[list[str] | None] = mapped_column(JSON)


class SobrietyState(Base):
    """The counter behind /days. A lapse ends the current streak but keeps the total."""

    __tablename__ = "sobriety_states"

    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # The patient's sobriety date this state was built from (a new date in settings restarts it).
    base_date: Mapped[date] = mapped_column(Date)
    streak_start: Mapped[date] = mapped_column(Date)
    # Sober days of the streaks that ended (the current streak is added on reading).
    days_before: Mapped[int] = mapped_column(Integer, default=0)
    longest_days: Mapped[int] = mapped_column(Integer, default=0)
    lapse_dates: Mapped[list[str] | None] = mapped_column(JSON)
    # Milestones congratulated in the current streak, and those the patient chose to share.
    milestones_done: Mapped[list[int] | None] = mapped_column(JSON)
    milestones_shared: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
