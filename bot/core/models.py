"""Core tables: cohorts, patients, staff roles, audit, chat state, the counselors' group roster."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.crypto import EncryptedJSON, EncryptedText
from bot.platform.db import Base, UTCDateTime


class Cohort(Base):
    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Patient(Base):
    """A person enrolled as a patient. Only the Telegram id exists before consent."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    first_name: Mapped[str | None] = mapped_column(EncryptedText)
    cohort_id: Mapped[int | None] = mapped_column(ForeignKey("cohorts.id", ondelete="SET NULL"))
    # onboarding | active | inactive (blocked the bot) | deleted
    status: Mapped[str] = mapped_column(String(16), default="onboarding")
    onboarding_step: Mapped[str | None] = mapped_column(String(32))
    consent_version: Mapped[str | None] = mapped_column(String(16))
    consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    language: Mapped[str] = mapped_column(String(8), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    checkin_time: Mapped[time | None] = mapped_column(Time)
    tips_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tip_time: Mapped[time | None] = mapped_column(Time)
    mat: Mapped[bool] = mapped_column(Boolean, default=False)
    # How often the MAT medication is taken: daily | weekly | monthly (an injection); None = daily.
    medication_schedule: Mapped[str | None] = mapped_column(String(16))
    sobriety_date: Mapped[date | None] = mapped_column(Date)
    share_milestones: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StaffRole(Base):
    __tablename__ = "staff_roles"
    __table_args__ = (UniqueConstraint("telegram_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    role: Mapped[str] = mapped_column(String(16))  # counselor | facilitator | admin
    display_name: Mapped[str | None] = mapped_column(EncryptedText)
    granted_by: Mapped[int | None] = mapped_column(BigInteger)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who viewed or changed what. Never holds health data or free text."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(48))
    # A patient code, flag id, …; indexed: erasure deletes a patient's entries by it.
    subject: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ChatState(Base):
    """What a person's next typed message answers (a plan entry, an outcome note, …)."""

    __tablename__ = "chat_states"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(48))
    data: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class GroupMember(Base):
    """A person Telegram told us is (or was) in the counselors' group: from chat_member updates
    and membership checks. Members of the group are counselors (README), so they are messaged
    directly when a crisis flag stays unclaimed, whether or not they hold a role."""

    __tablename__ = "group_members"

    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    is_member: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str | None] = mapped_column(String(16))  # Telegram's word: member, administrator, left, …
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
