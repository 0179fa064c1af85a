"""Escalation flags, their event log, cards, on-call and relays (DESIGN §2.6)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.core.vocabulary import FlagStatus
from bot.platform.crypto import EncryptedText
from bot.platform.db import STAFF, Base, UTCDateTime


class Flag(Base):
    """One open flag per patient and category; new triggers add events to it."""

    __tablename__ = "flags"
    __table_args__ = (Index("ix_flags_patient_category_status", "patient_id", "category", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(12))  # a flag's Severity, low to crisis
    status: Mapped[str] = mapped_column(String(12), default=FlagStatus.OPEN)  # moved by lifecycle.py only
    source: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[int | None] = mapped_column(BigInteger, info=STAFF)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[int | None] = mapped_column(BigInteger, info=STAFF)
    outcome: Mapped[str | None] = mapped_column(EncryptedText)
    group_message_id: Mapped[int | None] = mapped_column(BigInteger)
    renotify_stage: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by_name: Mapped[str | None] = mapped_column(String(64), info=STAFF)
    resolved_by_name: Mapped[str | None] = mapped_column(String(64), info=STAFF)
    # Bumped on every change the group post shows; outbox refs carry it so late sends get edited.
    rev: Mapped[int] = mapped_column(Integer, default=0)
    # Every message showing this flag's buttons: [[chat_id, message_id], ...] (posts, reposts, DMs).
    posts: Mapped[list[list[int]] | None] = mapped_column(JSON)
    # The patient's card of the day in the group that lists this flag (None: not posted, e.g. low).
    card_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # Why the flag stands at its severity, for the post: the trigger's source, rule and the answers
    # behind it ({"source", "severity", "reason", "rule", "facts", "at", "n"}); never patient words.
    why: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class FlagEvent(Base):
    """Every trigger and every action on a flag: who, when, what."""

    __tablename__ = "flag_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("flags.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(24))  # trigger | claim | resolve | renotify | details | message | …
    actor_id: Mapped[int | None] = mapped_column(BigInteger, info=STAFF)
    source: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(200))  # a rule id or short reason, never patient text
    evidence: Mapped[str | None] = mapped_column(EncryptedText)  # the patient's words, if any (encrypted)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OnCall(Base):
    """Who is on call: the latest row wins (older rows are the history)."""

    __tablename__ = "oncall"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)  # None: nobody on call
    display_name: Mapped[str | None] = mapped_column(EncryptedText)
    set_by: Mapped[int | None] = mapped_column(BigInteger)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RelayConversation(Base):
    """A counselor writing to a patient through the bot; replies go back to that counselor."""

    __tablename__ = "relay_conversations"
    __table_args__ = (Index("ix_relay_patient_open", "patient_id", "ended_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    counselor_id: Mapped[int] = mapped_column(BigInteger, index=True, info=STAFF)
    # Indexed: erasing a patient's flags finds the conversations about them without a scan.
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id", ondelete="SET NULL"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RelayMessage(Base):
    """One relayed message (encrypted at rest)."""

    __tablename__ = "relay_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("relay_conversations.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(12))  # to_patient | to_counselor
    text: Mapped[str] = mapped_column(EncryptedText)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class FlagCard(Base):
    """One message per patient and clinic day in the counselors' group, listing that day's flags.

    Flags point at their card (`Flag.card_id`); the card is edited whenever one of them changes.
    """

    __tablename__ = "flag_cards"
    __table_args__ = (Index("ix_flag_cards_patient_day", "patient_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)  # the clinic's local date (DEFAULT_TIMEZONE)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)  # known once Telegram took it
    # Bumped whenever what the card shows changes; outbox refs carry it so late sends get edited.
    rev: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
