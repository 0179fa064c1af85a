from datetime import timedelta

from sqlalchemy import select

from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import ScheduledItem
from bot.platform.scheduler import Sweeper, cancel, schedule


async def _sweeper(db: Database, clock: FrozenClock, seen: list[str], *, fail_keys: set[str] | None = None) -> Sweeper:
    sw = Sweeper(db, clock, batch=7)

    async def handle(session, item, now):
        if fail_keys and item.key in fail_keys:
            raise RuntimeError("boom")
        seen.append(item.key)

    sw.register("test", handle)
    return sw


async def test_schedule_is_idempotent_per_key(db: Database, clock: FrozenClock):
    async with db.transaction() as s:
        assert await schedule(s, "test", "k:1", clock.now())
        assert not await schedule(s, "test", "k:1", clock.now() + timedelta(hours=1))
    async with db.session() as s:
        rows = (await s.execute(select(ScheduledItem))).scalars().all()
    assert len(rows) == 1 and rows[0].due_at == clock.now()


async def test_late_tick_catches_up_in_due_order_and_never_repeats(db: Database, clock: FrozenClock):
    seen: list[str] = []
    sw = await _sweeper(db, clock, seen)
    async with db.transaction() as s:
        for i in range(20):
            await schedule(s, "test", f"k:{i:02d}", clock.now() + timedelta(minutes=i))
    assert await sw.tick() == 1  # only k:00 is due
    clock.advance(hours=2)  # the process slept through the rest
    assert await sw.tick() == 19
    assert seen == [f"k:{i:02d}" for i in range(20)]
    assert await sw.tick() == 0


async def test_restart_neither_repeats_nor_skips(db: Database, clock: FrozenClock):
    seen: list[str] = []
    sw = await _sweeper(db, clock, seen)
    async with db.transaction() as s:
        await schedule(s, "test", "a", clock.now())
        await schedule(s, "test", "b", clock.now())
    # A process claims both and dies before running them: their work was never committed.
    await sw.claim(clock.now())
    sw2 = await _sweeper(db, clock, seen)
    await sw2.recover()
    assert await sw2.tick() == 2
    assert sorted(seen) == ["a", "b"]
    # And a finished item is not run again after another restart.
    await sw2.recover()
    assert await sw2.tick() == 0


async def test_failing_item_is_retried_later_then_set_aside(db: Database, clock: FrozenClock):
    seen: list[str] = []
    sw = await _sweeper(db, clock, seen, fail_keys={"bad"})
    async with db.transaction() as s:
        await schedule(s, "test", "bad", clock.now())
        await schedule(s, "test", "good", clock.now())
    await sw.tick()
    assert seen == ["good"]
    for _ in range(10):
        clock.advance(hours=1)
        await sw.tick()
    async with db.session() as s:
        bad = (await s.execute(select(ScheduledItem).where(ScheduledItem.key == "bad"))).scalar_one()
    assert bad.status == "failed" and bad.attempts == 5


async def test_cancel_by_prefix_and_replace(db: Database, clock: FrozenClock):
    seen: list[str] = []
    sw = await _sweeper(db, clock, seen)
    async with db.transaction() as s:
        await schedule(s, "test", "p:1:x", clock.now())
        await schedule(s, "test", "p:1:y", clock.now())
        await schedule(s, "test", "p:2:x", clock.now())
        assert await cancel(s, key_prefix="p:1:") == 2
        await schedule(s, "test", "p:2:x", clock.now() + timedelta(hours=1), replace=True)
    assert await sw.tick() == 0
    clock.advance(hours=1)
    assert await sw.tick() == 1 and seen == ["p:2:x"]


async def test_unknown_kind_is_set_aside_not_crashing(db: Database, clock: FrozenClock):
    sw = Sweeper(db, clock)
    async with db.transaction() as s:
        await schedule(s, "nobody", "n:1", clock.now())
    await sw.tick()
    async with db.session() as s:
        assert (await s.execute(select(ScheduledItem.status))).scalar_one() == "failed"
