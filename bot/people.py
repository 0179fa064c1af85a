"""People as the plumbing sees them: who is a patient, and who has blocked the bot."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import Patient
from bot.outbox import mark_blocked, mark_unblocked


async def patient_by_telegram(session: AsyncSession, telegram_id: int) -> Patient | None:
    return (await session.execute(select(Patient).where(Patient.telegram_id == telegram_id))).scalar_one_or_none()


async def set_blocked(session: AsyncSession, telegram_id: int, blocked: bool, now: datetime) -> None:
    """A private chat that blocked the bot: no more prompts; unblocking restores the patient."""
    if blocked:
        await mark_blocked(session, telegram_id, now, "blocked by the user")
        await session.execute(
            update(Patient)
            .where(Patient.telegram_id == telegram_id, Patient.status == "active")
            .values(status="inactive", blocked_at=now)
        )
    else:
        await mark_unblocked(session, [telegram_id])
        await session.execute(
            update(Patient)
            .where(Patient.telegram_id == telegram_id, Patient.status == "inactive")
            .values(status="active", blocked_at=None)
        )
