"""Shared helpers for the check-in, assessment and sobriety tests."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time

from sqlalchemy import select

from bot.core.models import Patient
from bot.core.people import PatientInfo
from bot.escalation.models import Flag
from bot.platform.content import Content, get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage

_ids = itertools.count(1)


def content() -> Content:
    return get_content()


async def make_patient(
    db: Database,
    now: datetime,
    *,
    telegram_id: int | None = None,
    tz: str = "America/New_York",
    checkin_time: time | None = time(9, 0),
    mat: bool = False,
    sobriety_date: date | None = None,
    code: str | None = None,
) -> PatientInfo:
    n = next(_ids)
    tid = telegram_id or 700000 + n
    async with db.transaction() as s:
        p = Patient(
            telegram_id=tid,
            code=code or f"P-{1000 + n}",
            first_name="Sam",
            status="active",
            language="en",
            timezone=tz,
            checkin_time=checkin_time,
            tips_enabled=False,
            mat=mat,
            sobriety_date=sobriety_date,
            created_at=now,
            consented_at=now,
        )
        s.add(p)
        await s.flush()
        return PatientInfo.of(p)


async def flags_of(db: Database, patient_id: int) -> list[tuple[str, str]]:
    async with db.session() as s:
        rows = (await s.execute(select(Flag).where(Flag.patient_id == patient_id).order_by(Flag.id))).scalars()
        return [(f.category, f.severity) for f in rows]


async def outbox_texts(db: Database, chat_id: int) -> list[str]:
    async with db.session() as s:
        rows = (
            await s.execute(select(OutboxMessage).where(OutboxMessage.chat_id == chat_id).order_by(OutboxMessage.id))
        ).scalars()
        return [str((r.payload or {}).get("text", "")) for r in rows]
