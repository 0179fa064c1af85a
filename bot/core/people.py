"""People as the plumbing sees them: who is a patient, and who has blocked the bot."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, time

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Patient
from bot.platform.outbox import mark_blocked, mark_unblocked

# Patients who have consented and not left: active, or inactive (they blocked the bot).
ENROLLED = ("active", "inactive")
# How often a patient in medication-assisted treatment takes their medication (a monthly one is
# an injection); a MAT patient without one takes it daily.
MEDICATION_SCHEDULES = ("daily", "weekly", "monthly")


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


async def active_patient(session: AsyncSession, telegram_id: int) -> Patient | None:
    """The enrolled (consented) patient behind a Telegram user, or None."""
    p = await patient_by_telegram(session, telegram_id)
    return p if p is not None and p.status in ENROLLED else None


@dataclass(frozen=True)
class PatientInfo:
    """A patient as plain values (ORM objects never leave a service)."""

    id: int
    telegram_id: int
    code: str
    first_name: str | None
    status: str
    language: str
    timezone: str
    checkin_time: time | None
    tips_enabled: bool
    tip_time: time | None
    mat: bool
    sobriety_date: date | None
    cohort_id: int | None
    medication_schedule: str | None = None  # daily | weekly | monthly; None = daily

    @classmethod
    def of(cls, p: Patient) -> PatientInfo:
        return cls(
            id=p.id,
            telegram_id=p.telegram_id,
            code=p.code,
            first_name=p.first_name,
            status=p.status,
            language=p.language,
            timezone=p.timezone,
            checkin_time=p.checkin_time,
            tips_enabled=p.tips_enabled,
            tip_time=p.tip_time,
            mat=p.mat,
            sobriety_date=p.sobriety_date,
            cohort_id=p.cohort_id,
            medication_schedule=p.medication_schedule,
        )


# Built once (every button press asks this): the statement, its cache key and compiled form are
# reused, only the parameter changes. Table columns, not ORM attributes: nothing for the ORM to do.
_PATIENTS = Patient.__table__.c
_ACTIVE_INFO = select(*[_PATIENTS[f.name] for f in fields(PatientInfo)]).where(
    # One bound value per status (a plain `IN (?, ?)`), not an expanding list re-rendered per call.
    _PATIENTS.telegram_id == bindparam("telegram_id"), _PATIENTS.status.in_([literal(v) for v in ENROLLED])
)


async def active_patient_info(session: AsyncSession, telegram_id: int) -> PatientInfo | None:
    """`active_patient` as plain values, read as columns."""
    row = (await session.execute(_ACTIVE_INFO, {"telegram_id": telegram_id})).first()
    return None if row is None else PatientInfo(*row)
