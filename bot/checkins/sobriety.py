"""The sobriety counter (DESIGN §2.4): current and longest streak, total sober days, milestones.

The state starts from the patient's sobriety date. A lapse ends the current streak on the day it
is reported (the new streak counts from that day) and keeps every sober day counted so far.
Milestones are congratulated once each per streak; sharing one with the cohort is opt-in and the
choice is stored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.checkins.models import SobrietyState
from bot.checkins.rules import MilestoneRules, milestones_reached
from bot.core.models import Patient


@dataclass(frozen=True)
class SobrietyNumbers:
    sobriety_date: date
    streak_start: date
    current_days: int
    longest_days: int
    total_days: int
    lapses: int
    last_lapse: date | None


def _current(state: SobrietyState, today: date) -> int:
    return max(0, (today - state.streak_start).days)


def _numbers(state: SobrietyState, today: date) -> SobrietyNumbers:
    current = _current(state, today)
    lapses = list(state.lapse_dates or [])
    return SobrietyNumbers(
        sobriety_date=state.base_date,
        streak_start=state.streak_start,
        current_days=current,
        longest_days=max(state.longest_days, current),
        total_days=state.days_before + current,
        lapses=len(lapses),
        last_lapse=date.fromisoformat(lapses[-1]) if lapses else None,
    )


async def _state(session: AsyncSession, patient_id: int, now: datetime, *, lock: bool) -> SobrietyState | None:
    """The patient's state, created (or restarted after a new sobriety date) as needed."""
    q = select(SobrietyState).where(SobrietyState.patient_id == patient_id)
    if lock:
        q = q.with_for_update()
    state = (await session.execute(q)).scalar_one_or_none()
    sobriety_date = (
        await session.execute(select(Patient.sobriety_date).where(Patient.id == patient_id))
    ).scalar_one_or_none()
    if sobriety_date is None:
        return state
    if state is None:
        state = SobrietyState(
            patient_id=patient_id,
            base_date=sobriety_date,
            streak_start=sobriety_date,
            days_before=0,
            longest_days=0,
            lapse_dates=[],
            milestones_done=[],
            milestones_shared={},
            updated_at=now,
        )
        session.add(state)
        await session.flush()
    elif state.base_date != sobriety_date:
        # The patient set a new sobriety date: a new streak from it; the total is kept.
        ended = max(0, (min(sobriety_date, now.date()) - state.streak_start).days)
        state.longest_days = max(state.longest_days, ended)
        state.days_before += ended
        state.base_date = sobriety_date
        state.streak_start = sobriety_date
        state.milestones_done = []
        state.updated_at = now
    return state


async def numbers(session: AsyncSession, patient_id: int, today: date, now: datetime) -> SobrietyNumbers | None:
    """The counter for /days; None when the patient has no sobriety date."""
    state = await _state(session, patient_id, now, lock=False)
    return None if state is None else _numbers(state, today)


def _record_lapse(state: SobrietyState, day: date, now: datetime) -> None:
    lapses = list(state.lapse_dates or [])
    if day.isoformat() in lapses or day < state.streak_start:
        return
    ended = max(0, (day - state.streak_start).days)
    state.longest_days = max(state.longest_days, ended)
    state.days_before += ended
    state.streak_start = day
    state.lapse_dates = [*lapses, day.isoformat()]
    state.milestones_done = []
    state.updated_at = now


def _take_milestone(state: SobrietyState, rules: MilestoneRules, today: date, now: datetime) -> int | None:
    done = set(state.milestones_done or [])
    reached = [m for m in milestones_reached(rules, 0, _current(state, today)) if m not in done]
    if not reached:
        return None
    state.milestones_done = sorted(done | set(reached))
    state.updated_at = now
    return max(reached)


async def record_lapse(session: AsyncSession, patient_id: int, day: date, now: datetime) -> SobrietyNumbers | None:
    """A lapse reported on `day`: the streak restarts that day; the total is kept. Idempotent per day.

    The one way a lapse reaches the counter, whether the patient said so in the check-in or in
    their own words (both through `bot.checkins.lapse.record`)."""
    state = await _state(session, patient_id, now, lock=True)
    if state is None:
        return None
    _record_lapse(state, day, now)
    return _numbers(state, day)


async def counter(
    session: AsyncSession, patient_id: int, rules: MilestoneRules, today: date, now: datetime
) -> tuple[SobrietyNumbers | None, int | None]:
    """What a finished check-in (without a lapse) or /days shows, from one read of the state:
    the counter and the milestone due now (`due_milestone`)."""
    state = await _state(session, patient_id, now, lock=True)
    if state is None:
        return None, None
    return _numbers(state, today), _take_milestone(state, rules, today, now)


async def lapse_dates(session: AsyncSession, patient_id: int) -> list[date]:
    row = (
        await session.execute(select(SobrietyState.lapse_dates).where(SobrietyState.patient_id == patient_id))
    ).scalar_one_or_none()
    return [date.fromisoformat(d) for d in row or []]


async def due_milestone(
    session: AsyncSession, patient_id: int, rules: MilestoneRules, today: date, now: datetime
) -> int | None:
    """The milestone to congratulate now (the highest one not yet congratulated in this
    streak), marking every milestone reached as done; None when there is nothing new."""
    state = await _state(session, patient_id, now, lock=True)
    return None if state is None else _take_milestone(state, rules, today, now)


async def set_share(session: AsyncSession, patient_id: int, days: int, share: bool, now: datetime) -> bool:
    """Store the patient's choice to share (or not) a milestone with the cohort."""
    state = await _state(session, patient_id, now, lock=True)
    if state is None:
        return False
    shared = dict(state.milestones_shared or {})
    shared[str(days)] = {"share": share, "at": now.isoformat(), "streak_start": state.streak_start.isoformat()}
    state.milestones_shared = shared
    state.updated_at = now
    return True


async def shared_milestones(session: AsyncSession, patient_id: int) -> dict[int, bool]:
    row = (
        await session.execute(
            select(SobrietyState.milestones_shared).where(SobrietyState.patient_id == patient_id)
        )
    ).scalar_one_or_none()
    return {int(k): bool(v.get("share")) for k, v in (row or {}).items()}
