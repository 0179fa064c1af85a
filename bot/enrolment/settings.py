"""A patient's settings after onboarding (DESIGN §2.1): every onboarding answer, the daily tip
and the language. Time settings fire the life cycle's `settings_changed` hooks so schedules follow."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.audit import audit
from bot.core.lifecycle import Lifecycle
from bot.core.models import Patient
from bot.core.people import MEDICATION_SCHEDULES, PatientInfo
from bot.enrolment.timezones import is_valid_zone

TIME_FIELDS = frozenset({"timezone", "checkin_time", "tips_enabled", "tip_time"})
FIELDS = frozenset(
    {"timezone", "checkin_time", "sobriety_date", "mat", "medication_schedule", "tips_enabled", "tip_time", "language"}
)


class SettingError(ValueError):
    pass


async def change(
    session: AsyncSession,
    telegram_id: int,
    field: str,
    value: Any,
    *,
    now: datetime,
    lifecycle: Lifecycle,
    languages: list[str] | None = None,
) -> PatientInfo | None:
    """Change one setting of an enrolled patient; None when the person is not enrolled."""
    if field not in FIELDS:
        raise SettingError(f"unknown setting {field!r}")
    _validate(field, value, languages)
    q = select(Patient).where(Patient.telegram_id == telegram_id).with_for_update()
    p = (await session.execute(q)).scalar_one_or_none()
    if p is None or p.status not in ("active", "inactive"):
        return None
    if field in ("checkin_time", "tip_time") and value is not None:
        value = value.replace(second=0, microsecond=0, tzinfo=None)
    old = getattr(p, field)
    setattr(p, field, value)
    await session.flush()
    if old != value:
        # Which setting changed, never its value (a sobriety date is health data).
        await audit(session, telegram_id, "settings.change", p.code, {"field": field}, now=now)
        if field in TIME_FIELDS:
            await lifecycle.settings_changed(session, p.id, now)
    return PatientInfo.of(p)


def _validate(field: str, value: Any, languages: list[str] | None) -> None:
    ok = {
        "timezone": lambda v: isinstance(v, str) and is_valid_zone(v),
        "checkin_time": lambda v: isinstance(v, time),
        "tip_time": lambda v: v is None or isinstance(v, time),
        "sobriety_date": lambda v: v is None or (isinstance(v, date) and not isinstance(v, datetime)),
        "mat": lambda v: isinstance(v, bool),
        "medication_schedule": lambda v: v in MEDICATION_SCHEDULES,
        "tips_enabled": lambda v: isinstance(v, bool),
        "language": lambda v: isinstance(v, str) and (languages is None or v in languages),
    }[field](value)
    if not ok:
        raise SettingError(f"invalid value for {field}")
