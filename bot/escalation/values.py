"""Flags as plain values: what the service hands out and rendering shows (no database rows
leave the escalation package), and the small row look-ups they are built with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Patient
from bot.escalation.models import Flag


@dataclass(frozen=True)
class FlagInfo:
    id: int
    patient_id: int
    patient_code: str
    category: str
    severity: str
    status: str
    source: str
    opened_at: datetime
    claimed_at: datetime | None
    claimed_by: int | None
    claimed_by_name: str | None
    resolved_at: datetime | None
    resolved_by: int | None
    resolved_by_name: str | None
    group_message_id: int | None
    rev: int
    last_trigger_at: datetime | None = None  # set by open_flags: the latest trigger's time
    why: dict[str, Any] | None = None  # the trigger behind the severity (flags.why; why_text reads it)
    card_id: int | None = None  # the patient's card of the day in the group


@dataclass(frozen=True)
class Trigger:
    at: datetime
    source: str | None
    severity: str | None
    reason: str | None
    evidence: str | None
    facts: dict[str, Any] | None = None  # the answers its readable reason names


@dataclass(frozen=True)
class ScoreInfo:
    """The latest questionnaire of one instrument, for Details."""

    instrument: str
    title: str
    total: int | None
    band: str | None  # the band's label
    item9: int | None  # PHQ-9 item 9 (thoughts of death or self-harm), 0-3, when answered
    at: datetime  # completed (or started, when not finished)
    done: bool


@dataclass(frozen=True)
class CheckinInfo:
    at: datetime  # when it was completed
    mood: int | None
    craving: int | None
    use: str | None
    medication: str | None


@dataclass(frozen=True)
class FlagDetails:
    flag: FlagInfo
    first_name: str | None
    telegram_id: int
    language: str
    triggers: list[Trigger]
    scores: list[ScoreInfo] = field(default_factory=list)
    other_flags: list[FlagInfo] = field(default_factory=list)
    plan: dict[str, list[str]] = field(default_factory=dict)  # section -> entries (plain text)
    mat: bool = False
    medication_schedule: str | None = None
    recent: list[CheckinInfo] = field(default_factory=list)  # the last check-ins, newest first
    at: datetime | None = None  # when Details was asked for (names the zone's abbreviation then)


def flag_info(flag: Flag, code: str) -> FlagInfo:
    return FlagInfo(
        id=flag.id,
        patient_id=flag.patient_id,
        patient_code=code,
        category=flag.category,
        severity=flag.severity,
        status=flag.status,
        source=flag.source,
        opened_at=flag.opened_at,
        claimed_at=flag.claimed_at,
        claimed_by=flag.claimed_by,
        claimed_by_name=flag.claimed_by_name,
        resolved_at=flag.resolved_at,
        resolved_by=flag.resolved_by,
        resolved_by_name=flag.resolved_by_name,
        group_message_id=flag.group_message_id,
        rev=flag.rev or 0,
        why=flag.why,
        card_id=flag.card_id,
    )


async def patient_code(session: AsyncSession, patient_id: int) -> str:
    code = (await session.execute(select(Patient.code).where(Patient.id == patient_id))).scalar_one_or_none()
    return code or "?"


async def locked(session: AsyncSession, flag_id: int) -> Flag | None:
    return (await session.execute(select(Flag).where(Flag.id == flag_id).with_for_update())).scalar_one_or_none()
