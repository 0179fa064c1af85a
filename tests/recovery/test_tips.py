"""Daily tips: scheduling at the patient's local time, rotation, tailoring, on/off."""

from __future__ import annotations

from datetime import date, time, timedelta

from sqlalchemy import func, select

from bot.core.lifecycle import Lifecycle
from bot.platform.clock import FrozenClock, local_date
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper
from bot.recovery import tips
from bot.recovery.library import Tip, load_library
from bot.recovery.models import TipShown
from bot.recovery.rules import load_sos_rules
from tests.conftest import CONTENT_DIR
from tests.sos_helpers import make_patient

content = get_content(CONTENT_DIR)
RULES = load_sos_rules(CONTENT_DIR).tips


def _sweeper(db: Database, clock: FrozenClock) -> Sweeper:
    sw = Sweeper(db, clock)
    sw.register(tips.KIND, tips.sweeper_handler(content, halt_source=None))  # not tailored
    return sw


async def _pending(db: Database) -> list[ScheduledItem]:
    async with db.session() as s:
        q = select(ScheduledItem).where(ScheduledItem.kind == tips.KIND, ScheduledItem.status == "pending")
        return list((await s.execute(q)).scalars())


def test_there_are_enough_short_tips() -> None:
    all_tips = load_library(CONTENT_DIR).tips("en")
    assert len(all_tips) >= 60
    assert all(len(t.text) <= 400 for t in all_tips)


async def test_tip_is_scheduled_at_local_tip_time(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now(), timezone="America/Chicago", tip_time=time(8, 30))
    async with db.transaction() as s:
        due = await tips.schedule_next(s, pid, clock.now(), RULES)
        again = await tips.schedule_next(s, pid, clock.now(), RULES)
    assert due == again
    assert due is not None and due.astimezone(tips_zone("America/Chicago")).time() == time(8, 30)
    (item,) = await _pending(db)
    assert item.key == f"tip:{pid}:{local_date(due, 'America/Chicago').isoformat()}"


def tips_zone(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


async def test_sixty_days_never_repeat_within_thirty(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())
    sw = _sweeper(db, clock)
    async with db.transaction() as s:
        await tips.schedule_next(s, pid, clock.now(), RULES)
    for _ in range(60):
        (item,) = await _pending(db)
        clock.set(item.due_at + timedelta(seconds=5))
        assert await sw.tick() == 1
        assert await sw.tick() == 0  # once per day, even when ticked again
    async with db.session() as s:
        rows = list((await s.execute(select(TipShown).where(TipShown.patient_id == pid).order_by(TipShown.local_day))).scalars())
        sent = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    assert len(rows) == 60 and sent == 60
    days = [r.local_day for r in rows]
    assert days == [days[0] + timedelta(days=i) for i in range(60)]
    for i in range(60):
        window = [r.tip_id for r in rows[max(0, i - 29) : i + 1]]
        assert len(window) == len(set(window)), f"repeat within 30 days at day {i}"


async def test_rotation_with_few_tips_waits_thirty_days(db: Database, clock: FrozenClock) -> None:
    """With 31 tips every tip comes back only after 30 others: never within 30 days."""
    pid = await make_patient(db, clock.now())
    small = [Tip(id=f"t{i:02d}", text=f"tip {i}", tags=["general"]) for i in range(31)]
    start = date(2026, 3, 2)
    shown: list[str] = []
    for i in range(60):
        day = start + timedelta(days=i)
        async with db.transaction() as s:
            tip = await tips.pick_tip(s, pid, day, small, rules=RULES, halt_source=None)
            s.add(TipShown(patient_id=pid, tip_id=tip.id, local_day=day, sent_at=clock.now()))
        shown.append(tip.id)
    for i in range(60):
        window = shown[max(0, i - 29) : i + 1]
        assert len(window) == len(set(window))


async def test_tips_follow_the_halt_needs_reported_most(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())

    async def counts(_s, _pid, _since):  # type: ignore[no-untyped-def]
        return {"tired": 5, "hungry": 1}

    all_tips = load_library(CONTENT_DIR).tips("en")
    tired = {t.id for t in all_tips if "halt:tired" in t.tags}
    assert tired
    async with db.session() as s:
        tip = await tips.pick_tip(s, pid, date(2026, 3, 2), all_tips, rules=RULES, halt_source=counts)
    assert tip.id in tired


def test_preferred_tags() -> None:
    assert tips.preferred_tags({"tired": 4, "lonely": 4, "angry": 1}, 2) == ["halt:lonely", "halt:tired"]
    assert tips.preferred_tags({"tired": 1}, 2) == []
    assert tips.preferred_tags({}, 2) == []


async def test_disable_cancels_and_enable_schedules(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())
    async with db.transaction() as s:
        await tips.schedule_next(s, pid, clock.now(), RULES)
    async with db.transaction() as s:
        await tips.disable(s, pid)
    assert await _pending(db) == []
    async with db.transaction() as s:
        assert await tips.schedule_next(s, pid, clock.now(), RULES) is None
    async with db.transaction() as s:
        assert await tips.enable(s, pid, clock.now(), RULES) is not None
    assert len(await _pending(db)) == 1


async def test_a_tip_long_overdue_is_skipped_not_sent_at_night(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())
    sw = _sweeper(db, clock)
    async with db.transaction() as s:
        due = await tips.schedule_next(s, pid, clock.now(), RULES)
    assert due is not None
    clock.set(due + timedelta(hours=20))
    await sw.tick()
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one() == 0
    (item,) = await _pending(db)
    assert item.due_at > clock.now()


async def test_reconcile_and_settings_change(db: Database, clock: FrozenClock) -> None:
    a = await make_patient(db, clock.now())
    await make_patient(db, clock.now(), telegram_id=5003, code="P-3333", tips_enabled=False)
    async with db.transaction() as s:
        assert await tips.reconcile(s, clock.now(), RULES) == 1
        assert await tips.reconcile(s, clock.now(), RULES) == 0
    (item,) = await _pending(db)
    assert item.key.startswith(f"tip:{a}:")
    async with db.transaction() as s:
        from bot.core.models import Patient

        p = await s.get(Patient, a)
        assert p is not None
        p.tip_time = time(7, 0)
        lifecycle = Lifecycle()
        tips.setup(Sweeper(db, clock), content, lifecycle)
        await lifecycle.settings_changed(s, a, clock.now())
    (item,) = await _pending(db)
    assert item.due_at.astimezone(tips_zone("America/New_York")).time() == time(7, 0)



async def test_moving_the_tip_later_today_keeps_todays_tip(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())  # 09:00 in New York, tip at 10:00
    async with db.transaction() as s:
        await tips.schedule_next(s, pid, clock.now(), RULES)
    async with db.transaction() as s:
        from bot.core.models import Patient

        p = await s.get(Patient, pid)
        assert p is not None
        p.tip_time = time(11, 0)
        due = await tips.reschedule(s, pid, clock.now(), RULES)
    assert due is not None and local_date(due, "America/New_York") == local_date(clock.now(), "America/New_York")
