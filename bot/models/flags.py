"""Escalation flags and their event log (DESIGN §2.6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.crypto import EncryptedText
from bot.db import Base, UTCDateTime


class Flag(Base):
    """One open flag per patient and category; new triggers add events to it."""

    __tablename__ = "flags"
    __table_args__ = (Index("ix_flags_patient_category_status", "patient_id", "category", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(12))  # crisis | high | moderate | low
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | claimed | resolved
    source: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[int | None] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str | None] = mapped_column(EncryptedText)
    group_message_id: Mapped[int | None] = mapped_column(BigInteger)
    renotify_stage: Mapped[int] = mapped_column(Integer, default=0)


class FlagEvent(Base):
    """Every trigger and every action on a flag: who, when, what."""

    __tablename__ = "flag_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("flags.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(24))  # trigger | claim | resolve | renotify | details | message | …
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(200))  # a rule id or short reason, never patient text
    evidence: Mapped[str | None] = mapped_column(EncryptedText)  # the patient's words, if any (encrypted)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
