"""Small fixtures shared by the relapse-prevention tests: patients created directly."""

from __future__ import annotations

from datetime import date, datetime, time

from bot.core.models import Patient
from bot.platform.db import Database


async def make_patient(
    db: Database,
    now: datetime,
    *,
    telegram_id: int = 5001,
    code: str = "P-1234",
    timezone: str = "America/New_York",
    tip_time: time | None = time(10, 0),
    tips_enabled: bool = True,
    sobriety_date: date | None = None,
    first_name: str | None = "Sam",
) -> int:
    async with db.transaction() as s:
        p = Patient(
            telegram_id=telegram_id,
            code=code,
            first_name=first_name,
            status="active",
            language="en",
            timezone=timezone,
            checkin_time=time(20, 0),
            tips_enabled=tips_enabled,
            tip_time=tip_time,
            sobriety_date=sobriety_date,
            consent_version="1",
            consented_at=now,
            created_at=now,
        )
        s.add(p)
        await s.flush()
        return p.id
