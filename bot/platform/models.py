"""Plumbing tables: runtime settings, inbox, outbox, blocked chats, the schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.platform.crypto import EncryptedJSON
from bot.platform.db import Base, UTCDateTime


class RuntimeSetting(Base):
    """What the bot learned while running and must remember (e.g. the group's new chat id)."""

    __tablename__ = "runtime_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboxUpdate(Base):
    """Every incoming update, stored before it is handled (idempotent on update_id)."""

    __tablename__ = "inbox"
    # ix_inbox_done: handled rows past their retention are pruned by (status, done_at).
    __table_args__ = (Index("ix_inbox_status", "status"), Index("ix_inbox_done", "status", "done_at"))

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The raw update; cleared once handled (it holds what people typed).
    payload: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxMessage(Base):
    """A Bot API call that must happen: written in the same transaction as its cause."""

    __tablename__ = "outbox"
    # ix_outbox_sent: sent rows past their retention are pruned by (status, sent_at).
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"), Index("ix_outbox_sent", "status", "sent_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    method: Mapped[str] = mapped_column(String(32), default="sendMessage")
    payload: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON)
    file_name: Mapped[str | None] = mapped_column(String(128))
    file_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    dedup_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    ref: Mapped[str | None] = mapped_column(String(64), index=True)
    # What the row is about: its ref's first two parts (`flag:12`, `card:3`, `relay:7`), matched
    # exactly (indexed), so erasure finds the rows about a patient without scanning the outbox.
    about: Mapped[str | None] = mapped_column(String(64), index=True)
    bulk: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending | sending | sent | dead | blocked
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    # While `sending`: the claiming process holds the row until then; an expired lease (the
    # process died) lets any sender take the row again.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Higher goes first (crisis replies are urgent); rows of one chat keep their order.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class BlockedChat(Base):
    """A chat that answered 403: nothing more is sent there until it talks to us again."""

    __tablename__ = "blocked_chats"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(String(200))


class ScheduledItem(Base):
    """Something due at a UTC instant; the sweeper claims it and hands it to its kind's service."""

    __tablename__ = "scheduled_items"
    # ix_scheduled_done: finished rows past their retention are pruned by (status, done_at).
    __table_args__ = (Index("ix_scheduled_due", "status", "due_at"), Index("ix_scheduled_done", "status", "done_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    # The patient the item is about (from its payload's `patient_id`), so erasure finds their
    # items by an index rather than by reading every item.
    patient_id: Mapped[int | None] = mapped_column(Integer, index=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)  # idempotency key per occurrence
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # pending | running | done | cancelled | failed
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
