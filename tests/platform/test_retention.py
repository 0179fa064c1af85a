"""Finished inbox, outbox and scheduled rows are pruned after their retention, in bounded batches,
by indexed keys; waiting, in-flight and failed rows stay whatever their age."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text

from bot.platform import retention
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import InboxUpdate, OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper, schedule
from tests.conftest import TEST_DATABASE_URL

R = retention.Retention(inbox=timedelta(days=7), outbox=timedelta(days=30), schedule=timedelta(days=30))
# Every status each table knows; which of them a prune may take, and by which time column.
SCHEDULED = {"pending": False, "running": False, "done": True, "cancelled": True, "failed": False}
OUTBOX = {"pending": False, "sending": False, "sent": True, "dead": False, "blocked": False}
INBOX = {"pending": False, "done": True, "failed": False}


def _sched(i: int, status: str, at: datetime, now: datetime | None = None) -> dict[str, Any]:
    # A pending row is not yet due (the sweeper would run it); its age is in its key alone.
    due = at + timedelta(days=3650) if status == "pending" else at
    return {"kind": "test", "key": f"test:{status}:{i}:{at.isoformat()}", "due_at": due, "status": status,
            "attempts": 0, "done_at": at if status == "done" else None, "claimed_at": (now or at) if status == "running" else None}


def _out(i: int, status: str, at: datetime) -> dict[str, Any]:
    return {"chat_id": 1000 + i, "method": "sendMessage", "payload": {"text": "x"}, "status": status, "attempts": 0,
            "next_attempt_at": at, "created_at": at, "sent_at": at, "bulk": False, "priority": 0}


def _in(uid: int, status: str, at: datetime) -> dict[str, Any]:
    return {"update_id": uid, "payload": None, "status": status, "attempts": 1, "received_at": at, "done_at": at}


async def _fill(db: Database, now: datetime) -> dict[str, set[Any]]:
    """Rows of every status, well past the retention and just inside it. Returns what must go."""
    old_s, new_s = now - R.schedule - timedelta(days=1), now - R.schedule + timedelta(hours=1)
    old_o, new_o = now - R.outbox - timedelta(days=1), now - R.outbox + timedelta(hours=1)
    old_i, new_i = now - R.inbox - timedelta(days=1), now - R.inbox + timedelta(hours=1)
    sched, out, inbox = [], [], []
    uid = 1
    for n, status in enumerate(SCHEDULED):
        sched += [_sched(n, status, old_s, now), _sched(n, status, new_s, now)]
    for n, status in enumerate(OUTBOX):
        out += [_out(2 * n, status, old_o), _out(2 * n + 1, status, new_o)]
    for status in INBOX:
        inbox += [_in(uid, status, old_i), _in(uid + 1, status, new_i)]
        uid += 2
    async with db.transaction() as s:
        await s.execute(insert(ScheduledItem), sched)
        await s.execute(insert(OutboxMessage), out)
        await s.execute(insert(InboxUpdate), inbox)
    return {
        "scheduled": {r["key"] for r in sched if SCHEDULED[r["status"]] and r["key"].endswith(old_s.isoformat())},
        "outbox": {r["chat_id"] for r in out if OUTBOX[r["status"]] and r["created_at"] == old_o},
        "inbox": {r["update_id"] for r in inbox if INBOX[r["status"]] and r["received_at"] == old_i},
    }


async def _left(db: Database) -> dict[str, set[Any]]:
    async with db.session() as s:
        return {
            "scheduled": set((await s.execute(select(ScheduledItem.key).where(ScheduledItem.kind == "test"))).scalars()),
            "outbox": set((await s.execute(select(OutboxMessage.chat_id))).scalars()),
            "inbox": set((await s.execute(select(InboxUpdate.update_id))).scalars()),
        }


def _sweeper(db: Database, clock: FrozenClock, batch: int = retention.BATCH) -> Sweeper:
    sw = Sweeper(db, clock)
    sw.register(retention.KIND, retention.handler(R, batch))
    return sw


async def test_old_finished_rows_go_recent_and_unfinished_rows_stay(db: Database, clock: FrozenClock):
    now = clock.now()
    gone = await _fill(db, now)
    before = await _left(db)
    assert all(gone[k] and gone[k] < before[k] for k in gone)
    async with db.transaction() as s:
        await retention.ensure_scheduled(s, now)
    assert await _sweeper(db, clock).tick() == 1
    after = await _left(db)
    for k in before:
        assert after[k] == before[k] - gone[k], k
    # The next prune is tomorrow's, and nothing else is waiting.
    async with db.session() as s:
        waiting = (
            await s.execute(select(ScheduledItem.key, ScheduledItem.due_at).where(
                ScheduledItem.kind == retention.KIND, ScheduledItem.status == "pending"))
        ).all()
    assert [(k, d) for k, d in waiting] == [(retention.daily_key(now + timedelta(days=1)), now + timedelta(days=1))]


async def test_a_backlog_goes_one_bounded_batch_per_tick(db: Database, clock: FrozenClock):
    now = clock.now()
    old = now - R.schedule - timedelta(days=2)
    batch = 40
    total = 2 * batch + 7
    async with db.transaction() as s:
        await s.execute(insert(ScheduledItem), [_sched(i, "done", old) for i in range(total)])
        await s.execute(insert(OutboxMessage), [_out(i, "sent", old) for i in range(batch + 1)])
        await retention.ensure_scheduled(s, now)
    sweeper = _sweeper(db, clock, batch)

    async def counts() -> tuple[int, int]:
        async with db.session() as s:
            sc = (await s.execute(select(func.count()).select_from(ScheduledItem).where(ScheduledItem.kind == "test"))).scalar_one()
            ob = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
        return sc, ob

    seen = []
    for _ in range(5):
        await sweeper.tick()
        seen.append(await counts())
    assert seen == [(total - batch, 1), (total - 2 * batch, 0), (0, 0), (0, 0), (0, 0)]
    async with db.session() as s:
        pending = list((await s.execute(select(ScheduledItem.key).where(
            ScheduledItem.kind == retention.KIND, ScheduledItem.status == "pending"))).scalars())
    assert pending == [retention.daily_key(now + timedelta(days=1))]


async def test_a_prune_runs_again_the_next_day(db: Database, clock: FrozenClock):
    async with db.transaction() as s:
        await retention.ensure_scheduled(s, clock.now())
    sweeper = _sweeper(db, clock)
    assert await sweeper.tick() == 1
    assert await sweeper.tick() == 0
    clock.advance(timedelta(days=1))
    async with db.transaction() as s:
        await s.execute(insert(InboxUpdate), [_in(9, "done", clock.now() - R.inbox - timedelta(minutes=1))])
        await retention.ensure_scheduled(s, clock.now())  # a restart that day: still one run
    assert await sweeper.tick() == 1
    assert (await _left(db))["inbox"] == set()


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's query plan")
async def test_every_prune_selects_by_an_index(db: Database, clock: FrozenClock):
    async with db.transaction() as s:
        await s.execute(insert(ScheduledItem), [_sched(i, "done", clock.now()) for i in range(50)])
    async with db.session() as s:
        for name, _model, key, expired in retention._targets(R, clock.now()):
            q = select(key).where(expired).limit(retention.BATCH)
            sql = str(q.compile(s.bind, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r[-1]) for r in (await s.execute(text("EXPLAIN QUERY PLAN " + sql))).all())
            assert "SEARCH" in plan and "INDEX" in plan and "SCAN" not in plan, (name, plan)


async def test_the_running_bot_prunes_every_day(h: Any):
    # The bot pruned when it started; the next prune is a day later.
    tomorrow = h.clock.now() + timedelta(days=1)
    gone = await _fill(h.db, tomorrow)
    before = await _left(h.db)
    await h.tick()
    assert await _left(h.db) == before
    h.clock.advance(timedelta(days=1))
    await h.tick()
    after = await _left(h.db)
    assert after["scheduled"] == before["scheduled"] - gone["scheduled"]
    assert after["inbox"] == before["inbox"] - gone["inbox"]
    # Outbox rows of the test's own chats only (the bot may have sent its own since).
    assert not (after["outbox"] & gone["outbox"])
    assert before["outbox"] - gone["outbox"] <= after["outbox"]


async def test_schedule_stays_idempotent_on_its_key(db: Database, clock: FrozenClock):
    async with db.transaction() as s:
        assert await schedule(s, retention.KIND, retention.daily_key(clock.now()), clock.now())
        await retention.ensure_scheduled(s, clock.now())
    async with db.session() as s:
        n = (await s.execute(select(func.count()).select_from(ScheduledItem))).scalar_one()
    assert n == 1
