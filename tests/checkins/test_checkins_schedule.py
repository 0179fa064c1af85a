"""Prompts and reminders through the sweeper: local time, DST, restarts, one per local day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select

from bot.checkins import service as checkins
from bot.core.lifecycle import Lifecycle
from bot.core.models import Patient
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper
from tests import escalation_support as sup
from tests.checkins.test_checkins import full_checkin
from tests.checkins_support import content, flags_of, make_patient

C = content()
WF = sup.workflow()  # flags go to the counselors' group, as in the bot


def sweeper(db: Database, clock: FrozenClock, lifecycle: Lifecycle | None = None) -> Sweeper:
    """A sweeper with the check-in kinds; their life-cycle hooks go on `lifecycle` when given."""
    sw = Sweeper(db, clock)
    checkins.setup(sw, C, lifecycle or Lifecycle(), lambda: WF)
    return sw


async def sent(db: Database, chat_id: int) -> list[tuple[datetime, str]]:
    """(created_at, kind) of every prompt/reminder row for the chat."""
    async with db.session() as s:
        rows = (
            await s.execute(select(OutboxMessage).where(OutboxMessage.chat_id == chat_id).order_by(OutboxMessage.id))
        ).scalars()
        out = []
        for r in rows:
            kind = "reminder" if (r.dedup_key or "").startswith("checkin_reminder:") else "prompt"
            out.append((r.created_at, kind))
        return out


async def run_until(sw: Sweeper, clock: FrozenClock, end: datetime, step: timedelta = timedelta(minutes=15)) -> None:
    while clock.now() < end:
        clock.advance(step)
        await sw.tick()


async def test_prompts_follow_local_time_across_spring_forward_with_restarts(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))  # 07:00 in New York
    p = await make_patient(db, clock.now(), tz="America/New_York", checkin_time=time(9, 0))
    lifecycle = Lifecycle()
    sw = sweeper(db, clock, lifecycle)
    async with db.transaction() as s:
        await lifecycle.activated(s, p.id, clock.now())
    await run_until(sw, clock, datetime(2026, 3, 7, 20, 0, tzinfo=UTC))
    sw = sweeper(db, clock)  # a restart
    await sw.recover()
    await run_until(sw, clock, datetime(2026, 3, 10, 23, 0, tzinfo=UTC), step=timedelta(minutes=20))
    prompts = [t for t, k in await sent(db, p.telegram_id) if k == "prompt"]
    # 09:00 EST is 14:00 UTC; from March 8 (DST) 09:00 EDT is 13:00 UTC. Ticks are 15-20 min apart.
    expected = [datetime(2026, 3, 6, 14), datetime(2026, 3, 7, 14), datetime(2026, 3, 8, 13), datetime(2026, 3, 9, 13),
                datetime(2026, 3, 10, 13)]
    assert len(prompts) == 5
    for got, want in zip(prompts, expected, strict=True):
        assert timedelta(0) <= got - want.replace(tzinfo=UTC) < timedelta(minutes=21)
    reminders = [t for t, k in await sent(db, p.telegram_id) if k == "reminder"]
    assert len(reminders) == 5 and all(r.hour in (16, 17) for r in reminders)


async def test_fall_back_prompts_once_at_the_first_occurrence(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    p = await make_patient(db, clock.now(), tz="America/New_York", checkin_time=time(1, 30))
    async with db.transaction() as s:
        await checkins.on_activated(s, p.id, clock.now())
    sw = sweeper(db, clock)
    await run_until(sw, clock, datetime(2026, 11, 2, 12, 0, tzinfo=UTC), step=timedelta(minutes=10))
    prompts = [t for t, k in await sent(db, p.telegram_id) if k == "prompt"]
    # Nov 1: 01:30 EDT = 05:30 UTC (not again at 01:30 EST = 06:30 UTC); Nov 2: 06:30 UTC.
    assert [t.replace(second=0, microsecond=0) for t in prompts] == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]


async def test_zones_each_get_their_own_local_time(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    tokyo = await make_patient(db, clock.now(), tz="Asia/Tokyo", checkin_time=time(20, 0))
    la = await make_patient(db, clock.now(), tz="America/Los_Angeles", checkin_time=time(7, 30))
    async with db.transaction() as s:
        await checkins.on_activated(s, tokyo.id, clock.now())
        await checkins.on_activated(s, la.id, clock.now())
    sw = sweeper(db, clock)
    await run_until(sw, clock, datetime(2026, 3, 4, 0, 0, tzinfo=UTC), step=timedelta(minutes=30))
    t_prompts = [t for t, k in await sent(db, tokyo.telegram_id) if k == "prompt"]
    la_prompts = [t for t, k in await sent(db, la.telegram_id) if k == "prompt"]
    assert t_prompts == [datetime(2026, 3, 2, 11, 0, tzinfo=UTC), datetime(2026, 3, 3, 11, 0, tzinfo=UTC)]
    assert la_prompts == [datetime(2026, 3, 2, 15, 30, tzinfo=UTC), datetime(2026, 3, 3, 15, 30, tzinfo=UTC)]


async def test_done_checkin_means_no_prompt_and_no_reminder(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    p = await make_patient(db, clock.now(), checkin_time=time(9, 0))
    async with db.transaction() as s:
        await checkins.on_activated(s, p.id, clock.now())
    await full_checkin(db, clock, p)  # 07:00 local, before the prompt
    sw = sweeper(db, clock)
    await run_until(sw, clock, datetime(2026, 3, 3, 0, 0, tzinfo=UTC))
    assert await sent(db, p.telegram_id) == []
    # The prompt fired while the check-in was half done: the reminder offers to continue.
    await run_until(sw, clock, datetime(2026, 3, 3, 14, 30, tzinfo=UTC))
    async with db.transaction() as s:
        await checkins.start(s, C, p, clock.now())
    await run_until(sw, clock, datetime(2026, 3, 3, 18, 0, tzinfo=UTC))
    async with db.session() as s:
        rows = list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
    assert [r.dedup_key for r in rows] == [f"checkin:{p.id}:2026-03-03", f"checkin_reminder:{p.id}:2026-03-03"]
    assert rows[1].payload["reply_markup"]["inline_keyboard"][0][0]["text"] == "Continue my check-in"


async def test_a_late_tick_sends_one_prompt_not_a_backlog(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    p = await make_patient(db, clock.now(), checkin_time=time(9, 0))
    async with db.transaction() as s:
        await checkins.on_activated(s, p.id, clock.now())
    sw = sweeper(db, clock)
    clock.set(datetime(2026, 3, 4, 20, 0, tzinfo=UTC))  # the bot was down for two days
    await sw.tick()
    await sw.tick()
    assert await sent(db, p.telegram_id) == []  # the missed day's prompt is not sent late
    await run_until(sw, clock, datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    assert [k for _, k in await sent(db, p.telegram_id)] == ["prompt"]


async def test_settings_change_moves_the_prompt_but_never_doubles_a_day(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    p = await make_patient(db, clock.now(), checkin_time=time(9, 0))
    async with db.transaction() as s:
        await checkins.on_activated(s, p.id, clock.now())
    lifecycle = Lifecycle()
    sw = sweeper(db, clock, lifecycle)
    await run_until(sw, clock, datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # today's prompt sent
    async with db.transaction() as s:
        row = await s.get(Patient, p.id)
        assert row is not None
        row.checkin_time = time(18, 0)
        await lifecycle.settings_changed(s, p.id, clock.now())
    await run_until(sw, clock, datetime(2026, 3, 3, 23, 30, tzinfo=UTC))
    prompts = [t for t, k in await sent(db, p.telegram_id) if k == "prompt"]
    assert prompts[0] < datetime(2026, 3, 2, 14, 20, tzinfo=UTC)
    assert prompts[1:] == [datetime(2026, 3, 3, 23, 0, tzinfo=UTC)]
    async with db.session() as s:
        keys = [k for k in (await s.execute(select(ScheduledItem.key))).scalars() if k.startswith("checkin:")]
    assert len(keys) == len(set(keys))


async def test_silence_raises_the_missed_checkins_flag_at_3_then_7_days(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    p = await make_patient(db, clock.now(), checkin_time=time(9, 0))
    await full_checkin(db, clock, p)  # March 2
    async with db.transaction() as s:
        await checkins.on_activated(s, p.id, clock.now())
    sw = sweeper(db, clock)
    await run_until(sw, clock, datetime(2026, 3, 5, 20, 0, tzinfo=UTC), step=timedelta(hours=1))
    assert await flags_of(db, p.id) == []  # March 3 and 4 missed: two days
    await run_until(sw, clock, datetime(2026, 3, 6, 20, 0, tzinfo=UTC), step=timedelta(hours=1))
    assert await flags_of(db, p.id) == [("missed_checkins", "low")]
    await run_until(sw, clock, datetime(2026, 3, 10, 20, 0, tzinfo=UTC), step=timedelta(hours=1))
    assert await flags_of(db, p.id) == [("missed_checkins", "moderate")]


async def test_start_up_safety_net_schedules_missing_prompts_once(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    a = await make_patient(db, clock.now(), checkin_time=time(9, 0))
    b = await make_patient(db, clock.now(), checkin_time=None)
    async with db.transaction() as s:
        assert await checkins.ensure_prompts(s, clock.now()) == 1
    async with db.transaction() as s:
        assert await checkins.ensure_prompts(s, clock.now()) == 0
    async with db.session() as s:
        keys = list((await s.execute(select(ScheduledItem.key))).scalars())
    assert keys == [f"checkin:{a.id}:2026-03-02"] and b.id != a.id


async def test_a_blocked_patient_gets_nothing_but_keeps_the_chain(db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    p = await make_patient(db, clock.now(), checkin_time=time(9, 0))
    async with db.transaction() as s:
        await checkins.on_activated(s, p.id, clock.now())
        row = await s.get(Patient, p.id)
        assert row is not None
        row.status = "inactive"
    sw = sweeper(db, clock)
    await run_until(sw, clock, datetime(2026, 3, 4, 0, 0, tzinfo=UTC), step=timedelta(hours=1))
    assert await sent(db, p.telegram_id) == []
    async with db.transaction() as s:
        row = await s.get(Patient, p.id)
        assert row is not None
        row.status = "active"
    await run_until(sw, clock, datetime(2026, 3, 4, 15, 0, tzinfo=UTC), step=timedelta(hours=1))
    assert [k for _, k in await sent(db, p.telegram_id)] == ["prompt"]
