"""Daily tips: one short relapse-prevention tip at the patient's tip time (DESIGN §2.5).

Each occurrence is a sweeper item of kind `daily_tip` keyed per local date
(`tip:<patient id>:<YYYY-MM-DD>`), so a restart or a late tick never sends twice. A tip is not
repeated within `no_repeat_days` (content/rules/sos.yaml); where check-in data shows which HALT
needs a patient reported most, tips tagged for those needs come first. `/tip` asks for one on
demand: the next tip of the same rotation (tips shown on demand count as shown, so neither path
repeats the other), without taking the place of the daily one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.lifecycle import Lifecycle
from bot.core.models import Patient
from bot.platform import scheduler
from bot.platform.clock import local_date, next_local_due
from bot.platform.content import Content, Html
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.recovery.library import Tip, load_library
from bot.recovery.models import TipShown
from bot.recovery.rules import TipRules, load_sos_rules, next_tip

KIND = "daily_tip"
HALT_NEEDS = ("hungry", "angry", "lonely", "tired")

# How many times a patient reported each HALT need since a date: {"tired": 5, …}. The bot reads
# them from the check-ins (`halt_counts_from_checkins`); with None tips are not tailored.
HaltSource = Callable[[AsyncSession, int, date], Awaitable[Mapping[str, int]]]


def key_prefix(patient_id: int) -> str:
    return f"tip:{patient_id}:"


def tip_key(patient_id: int, day: date) -> str:
    return f"{key_prefix(patient_id)}{day.isoformat()}"


def tip_time(patient_tip_time: time | None, rules: TipRules) -> time:
    return patient_tip_time or rules.default_time


async def schedule_next(session: AsyncSession, patient_id: int, now: datetime, rules: TipRules) -> datetime | None:
    """Schedule the next tip for an active patient with tips on; returns when, or None.

    Idempotent: a pending tip already scheduled is kept. Call it after enrolment and whenever
    the tip time or time zone changes (after `cancel_pending`)."""
    p = await session.get(Patient, patient_id)
    if p is None or p.status != "active" or not p.tips_enabled:
        return None
    pending = (
        await session.execute(
            select(ScheduledItem.due_at).where(
                ScheduledItem.kind == KIND,
                ScheduledItem.status == "pending",
                ScheduledItem.key.startswith(key_prefix(patient_id), autoescape=True),
            )
        )
    ).scalars().first()
    if pending is not None:
        return pending
    due = next_local_due(tip_time(p.tip_time, rules), p.timezone, now)
    day = local_date(due, p.timezone)
    await _free_cancelled(session, tip_key(patient_id, day))
    while not await scheduler.schedule(session, KIND, tip_key(patient_id, day), due, {"patient_id": patient_id}):
        # That day's tip already ran (e.g. the time moved later today): take the next day.
        due = next_local_due(tip_time(p.tip_time, rules), p.timezone, due)
        day = local_date(due, p.timezone)
    return due


async def _free_cancelled(session: AsyncSession, key: str) -> None:
    """A cancelled occurrence (the time was changed) must not block that day's new one."""
    row = (
        await session.execute(select(ScheduledItem).where(ScheduledItem.key == key, ScheduledItem.status == "cancelled"))
    ).scalar_one_or_none()
    if row is not None:
        row.key = f"{key}:cancelled:{row.id}"
        await session.flush()


async def cancel_pending(session: AsyncSession, patient_id: int) -> int:
    return await scheduler.cancel(session, key_prefix=key_prefix(patient_id))


async def reschedule(session: AsyncSession, patient_id: int, now: datetime, rules: TipRules) -> datetime | None:
    """After a change of tip time or time zone: drop the pending tip and schedule anew."""
    await cancel_pending(session, patient_id)
    return await schedule_next(session, patient_id, now, rules)


async def enable(session: AsyncSession, patient_id: int, now: datetime, rules: TipRules) -> datetime | None:
    """Turn daily tips on and schedule the next one."""
    await session.execute(update(Patient).where(Patient.id == patient_id).values(tips_enabled=True))
    return await schedule_next(session, patient_id, now, rules)


async def disable(session: AsyncSession, patient_id: int) -> None:
    """Turn daily tips off; nothing more is sent."""
    await session.execute(update(Patient).where(Patient.id == patient_id).values(tips_enabled=False))
    await cancel_pending(session, patient_id)


async def reconcile(session: AsyncSession, now: datetime, rules: TipRules, *, limit: int = 500) -> int:
    """Schedule the next tip for active patients with tips on and nothing pending."""
    has_pending = {
        int(k.split(":")[1])
        for k in (
            await session.execute(
                select(ScheduledItem.key).where(ScheduledItem.kind == KIND, ScheduledItem.status == "pending")
            )
        ).scalars()
    }
    ids = list(
        (
            await session.execute(
                select(Patient.id).where(Patient.status == "active", Patient.tips_enabled.is_(True))
            )
        ).scalars()
    )
    n = 0
    for pid in ids:
        if pid in has_pending:
            continue
        if await schedule_next(session, pid, now, rules) is not None:
            n += 1
        if n >= limit:
            break
    return n


async def recent_tip_ids(session: AsyncSession, patient_id: int, day: date, days: int) -> list[str]:
    """Tips shown in the `days` days up to `day` (those shown on demand that day too), oldest first."""
    rows = (
        await session.execute(
            select(TipShown.tip_id)
            .where(
                TipShown.patient_id == patient_id,
                TipShown.local_day >= day - timedelta(days=days - 1),
                TipShown.local_day <= day,
            )
            .order_by(TipShown.local_day, TipShown.id)
        )
    ).scalars()
    return list(rows)


def preferred_tags(halt_counts: Mapping[str, int], min_reports: int) -> list[str]:
    """`halt:<need>` tags for the needs reported most (at least `min_reports` times)."""
    counted = {k: v for k, v in halt_counts.items() if k in HALT_NEEDS and v >= min_reports}
    if not counted:
        return []
    top = max(counted.values())
    return [f"halt:{k}" for k in HALT_NEEDS if counted.get(k) == top]


async def pick_tip(
    session: AsyncSession,
    patient_id: int,
    day: date,
    tips: Sequence[Tip],
    *,
    rules: TipRules,
    halt_source: HaltSource | None,
) -> Tip:
    r = rules
    recent = await recent_tip_ids(session, patient_id, day, r.no_repeat_days)
    tags: list[str] = []
    if halt_source is not None:
        try:
            counts = await halt_source(session, patient_id, day - timedelta(days=r.halt_lookback_days))
        except Exception:  # tailoring is a nicety; a tip is still sent
            counts = {}
        tags = preferred_tags(counts, r.halt_min_reports)
    return next_tip(tips, recent, tags, rng_seed=f"{patient_id}:{day.isoformat()}")


async def send_tip(
    session: AsyncSession,
    content: Content,
    patient_id: int,
    day: date,
    now: datetime,
    *,
    halt_source: HaltSource | None,
) -> str | None:
    """Record and enqueue the tip for `day` (once per local date); returns the tip id."""
    p = await session.get(Patient, patient_id)
    if p is None or p.status != "active" or not p.tips_enabled:
        return None
    # Once per local date: that day's daily tip is in the outbox already (a tip asked for with
    # /tip does not count).
    done = (
        await session.execute(select(OutboxMessage.id).where(OutboxMessage.dedup_key == tip_key(patient_id, day)))
    ).scalars().first()
    if done is not None:
        return None
    tips = load_library(content.root).tips(p.language)
    tip = await pick_tip(session, patient_id, day, tips, rules=load_sos_rules(content.root).tips, halt_source=halt_source)
    session.add(TipShown(patient_id=patient_id, tip_id=tip.id, local_day=day, sent_at=now))
    text = content.t("sos.tip.daily", p.language, tip=Html(tip.text))
    await enqueue(
        session,
        Outgoing(p.telegram_id, text),
        now=now,
        dedup_key=tip_key(patient_id, day),
        ref=f"tip:{patient_id}",
        bulk=True,
    )
    return tip.id


async def tip_on_demand(session: AsyncSession, content: Content, patient_id: int, now: datetime) -> Tip | None:
    """`/tip`: the next tip of the patient's rotation, recorded as shown; None if not a patient."""
    p = await session.get(Patient, patient_id)
    if p is None or p.status != "active":
        return None
    day = local_date(now, p.timezone)
    tips = load_library(content.root).tips(p.language)
    tip = await pick_tip(
        session, patient_id, day, tips, rules=load_sos_rules(content.root).tips, halt_source=halt_counts_from_checkins
    )
    session.add(TipShown(patient_id=patient_id, tip_id=tip.id, local_day=day, sent_at=now))
    await session.flush()
    return tip


def sweeper_handler(
    content: Content, halt_source: HaltSource | None
) -> Callable[[AsyncSession, ScheduledItem, datetime], Awaitable[None]]:
    """The `daily_tip` service: send today's tip (tailored by `halt_source`), then schedule tomorrow's."""
    rules = load_sos_rules(content.root).tips

    async def handle(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        patient_id = int((item.payload or {})["patient_id"])
        p = await session.get(Patient, patient_id)
        if p is None:
            return
        day = local_date(item.due_at, p.timezone)
        # A tip found far too late (the bot was down for a day) is skipped, not sent at night.
        if now - item.due_at < timedelta(hours=6):
            await send_tip(session, content, patient_id, day, now, halt_source=halt_source)
        await schedule_next(session, patient_id, max(now, item.due_at), rules)

    return handle


async def halt_counts_from_checkins(session: AsyncSession, patient_id: int, since: date) -> dict[str, int]:
    """How often each HALT need was ticked in completed check-ins since `since`."""
    try:
        from bot.checkins.models import CheckinEntry
    except ImportError:
        return {}
    rows = (
        await session.execute(
            select(CheckinEntry.halt).where(
                CheckinEntry.patient_id == patient_id,
                CheckinEntry.local_date >= since,
                CheckinEntry.completed_at.is_not(None),
            )
        )
    ).scalars()
    counts: dict[str, int] = {}
    for halt in rows:
        for need in halt or []:
            if need in HALT_NEEDS:
                counts[need] = counts.get(need, 0) + 1
    return counts


def setup(sweeper: Any, content: Content, lifecycle: Lifecycle) -> None:
    """Register the `daily_tip` kind (tailored by the check-ins' HALT answers) and the life-cycle
    hooks: a patient activated gets a next tip; a change of tip time or time zone moves it."""
    rules = load_sos_rules(content.root).tips

    async def on_activated(session: AsyncSession, patient_id: int, now: datetime) -> None:
        await schedule_next(session, patient_id, now, rules)

    async def on_settings_changed(session: AsyncSession, patient_id: int, now: datetime) -> None:
        await reschedule(session, patient_id, now, rules)

    if KIND not in sweeper.kinds:
        sweeper.register(KIND, sweeper_handler(content, halt_counts_from_checkins))
    lifecycle.on_activated(on_activated)
    lifecycle.on_settings_changed(on_settings_changed)
