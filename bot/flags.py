"""Escalation flags: the one service every source raises flags through (DESIGN §2.6).

`raise_flag` keeps one open flag per patient and category: a new trigger adds an event and may
raise the severity; it never opens a second flag. Posting to the counselors' group goes through
the outbox in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import Flag, FlagEvent

SEVERITIES = ("low", "moderate", "high", "crisis")
CATEGORIES = (
    "suicide_self_harm",
    "overdose_medical",
    "harm_to_others",
    "abuse_violence",
    "use_disclosure",
    "severe_craving",
    "assessment",
    "missed_checkins",
    "urge_followup",
    "talk_request",
    "missed_sessions",
)


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class FlagResult:
    flag_id: int
    created: bool  # False: the trigger joined an open flag
    severity: str  # the flag's severity after this trigger
    escalated: bool  # True: the severity went up


async def raise_flag(
    session: AsyncSession,
    *,
    patient_id: int,
    category: str,
    severity: str,
    reason: str,
    source: str,
    now: datetime,
    evidence: str | None = None,
    actor_id: int | None = None,
) -> FlagResult:
    """Open a flag, or add this trigger to the open flag of the same patient and category."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    q = (
        select(Flag)
        .where(Flag.patient_id == patient_id, Flag.category == category, Flag.status != "resolved")
        .with_for_update()
    )
    flag = (await session.execute(q)).scalars().first()
    created = flag is None
    escalated = False
    if flag is None:
        flag = Flag(
            patient_id=patient_id,
            category=category,
            severity=severity,
            status="open",
            source=source,
            opened_at=now,
            renotify_stage=0,
        )
        session.add(flag)
        await session.flush()
    elif rank(severity) > rank(flag.severity):
        flag.severity = severity
        escalated = True
    session.add(
        FlagEvent(
            flag_id=flag.id,
            at=now,
            kind="trigger",
            actor_id=actor_id,
            source=source,
            severity=severity,
            reason=reason[:200],
            evidence=evidence,
        )
    )
    await session.flush()
    for hook in _on_raised:
        await hook(session, flag, created, escalated, now)
    return FlagResult(flag.id, created, flag.severity, escalated)


# The escalation workflow (group posts, re-notification) subscribes here, so every source
# gets the same treatment without knowing about it.
_on_raised: list = []  # type: ignore[type-arg]


def on_raised(hook) -> None:  # type: ignore[no-untyped-def]
    """Register `async hook(session, flag, created, escalated, now)` run inside raise_flag."""
    _on_raised.append(hook)
