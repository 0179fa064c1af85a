"""The outbox's lanes: a 429 holds one chat only, urgent rows go first, and several senders
(processes) share one database through leases that expire.

Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set (each sender its own engine, as a
process would have).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from telegram import Bot

from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.platform.outbox import LEASE, Outgoing, Sender, enqueue
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = Bot(fake.token, base_url=fake.base_url)
    async with b:
        yield b


async def _statuses(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
    return {k: v for k, v in rows}


def _texts(fake: FakeTelegram, chat_id: int | None = None) -> list[str]:
    return [m.text or "" for m in (fake.sent(chat_id) if chat_id is not None else fake.sent())]


# -- a 429 for one chat -------------------------------------------------------------------------


async def test_a_429_for_the_group_holds_the_group_only(db: Database, fake: FakeTelegram, bot: Bot, clock: FrozenClock):
    group = fake.add_group("Counselors", supergroup=True)
    patient = fake.add_user(first_name="Pat", started=True)
    sender = Sender(db, bot, clock)
    fake.fail("sendMessage", "429", times=None, retry_after=30, chat_id=group.id)
    async with db.transaction() as s:
        await enqueue(s, Outgoing(group.id, "post 1"), now=clock.now())
        await enqueue(s, Outgoing(group.id, "post 2"), now=clock.now())
    await sender.run_once()
    assert _texts(fake, group.id) == []

    # The group is at its limit; the patient's message goes out now, not when the group may post.
    async with db.transaction() as s:
        await enqueue(s, Outgoing(patient.id, "for the patient"), now=clock.now())
    await sender.run_once()
    assert _texts(fake, patient.id) == ["for the patient"]

    # The group's posts wait their turn (in order) and go once the wait is over.
    async with db.session() as s:
        waits = (await s.execute(select(OutboxMessage.next_attempt_at).where(OutboxMessage.chat_id == group.id))).scalars().all()
    assert max(waits) == clock.now() + timedelta(seconds=30)  # the first post; the second waits behind it
    fake.clear_faults()
    await sender.run_once()
    assert _texts(fake, group.id) == []  # still waiting: the clock has not moved
    clock.advance(seconds=30)
    while (await sender.run_once())[0]:
        pass
    assert _texts(fake, group.id) == ["post 1", "post 2"]
    assert (await _statuses(db)) == {"sent": 3}


async def test_urgent_rows_are_sent_before_a_backlog(db: Database, fake: FakeTelegram, bot: Bot, clock: FrozenClock):
    users = [fake.add_user(first_name=f"U{i}", started=True) for i in range(30)]
    sender = Sender(db, bot, clock, batch=10)
    async with db.transaction() as s:
        for i in range(60):
            await enqueue(s, Outgoing(users[i % 30].id, f"ordinary {i}"), now=clock.now())
        # Written last, for a patient who also has older ordinary rows waiting.
        await enqueue(s, Outgoing(users[3].id, "crisis reply"), now=clock.now(), urgent=True)
    await sender.run_once()
    first_batch = _texts(fake)
    assert "crisis reply" in first_batch
    # It did not wait behind the patient's own older ordinary rows either.
    assert _texts(fake, users[3].id)[0] == "crisis reply"
    while (await sender.run_once())[0]:
        pass
    assert len(_texts(fake)) == 61


async def test_a_crisis_reply_goes_out_while_the_group_is_at_its_limit(
    fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: object
):
    """End to end: the group answers 429 to every post; a crisis reply that had to go through the
    outbox (its direct send failed) still reaches the patient at once."""
    h = BotHarness(fake, db, clock, detector=stub_detector)
    first = fake.add_user(first_name="Alex", started=True)
    second = fake.add_user(first_name="Sam", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=first.id, code="P-1001", first_name="Alex")
    await sup.add_patient(db, clock.now(), telegram_id=second.id, code="P-1002", first_name="Sam")
    await h.start()
    try:
        fake.fail("sendMessage", "429", times=None, retry_after=30, chat_id=h.group.id)
        # A first crisis: its group post meets the limit.
        inc = fake.send_text(first, "I'm going to end it all tonight")
        await h.handled(inc.update_id)
        await fake.wait_for(
            lambda: any(e.status == 429 for e in fake.errors), description="the group's 429"
        )
        assert fake.sent(h.group.id) == []

        # A second crisis whose direct reply fails: the reply goes through the outbox.
        fake.fail("sendMessage", "502", times=1, chat_id=second.id)
        loop = asyncio.get_running_loop()
        started = loop.time()
        inc = fake.send_text(second, "I took all my pills")
        reply = await fake.wait_for_message(second.id, timeout=5)
        assert loop.time() - started < 2.0
        assert "911" in (reply.plain_text or "")  # the resources for an overdose
        await h.handled(inc.update_id)
        assert fake.sent(h.group.id) == []  # the group still waits for its limit
    finally:
        await h.stop()


# -- several senders on one database -------------------------------------------------------------


async def test_a_starting_sender_leaves_another_senders_rows_in_flight_alone(
    db_url: str, fake: FakeTelegram, clock: FrozenClock
):
    """Sender B starting (recover) while sender A is mid-send must not send A's rows again."""
    first = Database(db_url)
    await first.create_all()
    second = Database(db_url)
    users = [fake.add_user(first_name=f"U{i}", started=True) for i in range(8)]
    async with Bot(fake.token, base_url=fake.base_url) as bot_a, Bot(fake.token, base_url=fake.base_url) as bot_b:
        a = Sender(first, bot_a, clock, batch=8, concurrency=8)
        b = Sender(second, bot_b, clock, batch=8, concurrency=8)
        try:
            async with first.transaction() as s:
                for i, u in enumerate(users):
                    await enqueue(s, Outgoing(u.id, f"row {i}"), now=clock.now())
            fake.hold("sendMessage")
            in_flight = asyncio.create_task(a.run_once())
            await fake.wait_held(count=len(users))
            await b.recover()  # what `start()` does
            # Nothing for B: A holds every row (before leases, B sent them again, and waited here).
            assert (await asyncio.wait_for(b.run_once(), 5))[0] == 0
            fake.release()
            await in_flight
            assert sorted(_texts(fake)) == sorted(f"row {i}" for i in range(8))

            # A sender that died leaves its rows leased; once the lease expires another takes them.
            async with first.transaction() as s:
                await enqueue(s, Outgoing(users[0].id, "orphan"), now=clock.now())
            fake.hold("sendMessage")
            dying = asyncio.create_task(a.run_once())
            await fake.wait_held(count=1)
            dying.cancel()  # the process is gone; its row stays `sending`
            with pytest.raises(asyncio.CancelledError):
                await dying
            fake.release()
            await b.recover()
            assert (await b.run_once())[0] == 0  # the lease still holds
            clock.advance(LEASE + timedelta(seconds=1))
            await b.recover()
            assert (await b.run_once())[0] == 1
            assert (await _statuses(first)) == {"sent": 9}
        finally:
            await first.dispose()
            await second.dispose()


async def test_a_live_sender_keeps_its_lease_and_a_dead_ones_rows_go_within_a_lease(
    db_url: str, fake: FakeTelegram, clock: FrozenClock
):
    """A send may outlast one lease: the sender renews the leases of the rows it holds, so
    another sender never takes them; a process that died stops renewing, and its rows (e.g. a
    crisis reply it was sending) are taken over one lease later — seconds, not minutes."""
    assert LEASE <= timedelta(seconds=30)
    first = Database(db_url)
    await first.create_all()
    second = Database(db_url)
    u = fake.add_user(first_name="Slow", started=True)
    async with Bot(fake.token, base_url=fake.base_url) as bot_a, Bot(fake.token, base_url=fake.base_url) as bot_b:
        a = Sender(first, bot_a, clock, batch=8, concurrency=8)
        b = Sender(second, bot_b, clock, batch=8, concurrency=8)
        try:
            async with first.transaction() as s:
                await enqueue(s, Outgoing(u.id, "slow send"), now=clock.now())
            fake.hold("sendMessage")
            in_flight = asyncio.create_task(a.run_once())
            await fake.wait_held(count=1)
            for _ in range(3):  # three leases long, renewed each time
                clock.advance(LEASE - timedelta(seconds=1))
                assert await a.renew_leases() == 1
                await b.recover()
                assert (await asyncio.wait_for(b.run_once(), 5))[0] == 0
            fake.release()
            await in_flight
            assert _texts(fake) == ["slow send"]
            assert await a.renew_leases() == 0  # nothing held once sent

            # A dies mid-send: nothing renews its lease, and B sends the row once it expires.
            async with first.transaction() as s:
                await enqueue(s, Outgoing(u.id, "orphan"), now=clock.now())
            fake.hold("sendMessage")
            dying = asyncio.create_task(a.run_once())
            await fake.wait_held(count=1)
            dying.cancel()
            with pytest.raises(asyncio.CancelledError):
                await dying
            fake.release()
            clock.advance(LEASE + timedelta(seconds=1))
            await b.recover()
            assert (await b.run_once())[0] == 1
            assert (await _statuses(first)) == {"sent": 2}
        finally:
            await first.dispose()
            await second.dispose()


async def test_two_senders_on_one_database_send_1000_rows_none_twice(db_url: str, fake: FakeTelegram, clock: FrozenClock):
    first = Database(db_url)
    await first.create_all()
    second = Database(db_url)
    users = [fake.add_user(first_name=f"U{i}", started=True) for i in range(40)]
    async with first.transaction() as s:
        for i in range(1000):
            await enqueue(s, Outgoing(users[i % 40].id, f"message {i}"), now=clock.now())
    async with Bot(fake.token, base_url=fake.base_url) as bot_a, Bot(fake.token, base_url=fake.base_url) as bot_b:
        a = Sender(first, bot_a, clock, batch=25, concurrency=8)
        b = Sender(second, bot_b, clock, batch=25, concurrency=8)
        by_sender: Counter[str] = Counter()

        def counting(name: str):  # type: ignore[no-untyped-def]
            async def hook(row: OutboxMessage, message_id: int | None) -> None:
                by_sender[name] += 1

            return hook

        a.sent_hooks.append(counting("a"))
        b.sent_hooks.append(counting("b"))
        try:
            await a.recover()
            await a.start()
            await fake.wait_for(lambda: len(fake.sent()) >= 100, timeout=30, description="sender A under way")
            # The second process starts while the first has rows in flight.
            fake.hold("sendMessage")
            await fake.wait_held(count=8)
            await b.start()
            fake.release()

            async def drained() -> bool:
                counts = await _statuses(first)
                return counts == {"sent": 1000}

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while not await drained():
                assert loop.time() < deadline, await _statuses(first)
                a.wake()
                b.wake()
                await asyncio.sleep(0.05)  # re-check; the senders work meanwhile
        finally:
            await a.stop()
            await b.stop()
            await first.dispose()
            await second.dispose()
    counts = Counter(_texts(fake))
    assert len(counts) == 1000
    assert [t for t, n in counts.items() if n > 1] == []
    assert len([c for c in fake.calls if c.method == "sendMessage" and c.ok]) == 1000
    # Both processes took part.
    assert by_sender["a"] > 0 and by_sender["b"] > 0 and by_sender["a"] + by_sender["b"] == 1000
    # Per chat, the order is kept across the two senders.
    for u in users:
        nums = [int(t.split()[1]) for t in _texts(fake, u.id)]
        assert nums == sorted(nums)


# -- direct replies that Telegram does not take ---------------------------------------------------


async def test_a_backlog_of_50_patients_after_a_restart_is_answered_once_each_through_429s(
    fake: FakeTelegram, db: Database, clock: FrozenClock
):
    """Every reply is delivered once, later if Telegram says wait: nothing is dropped on a 429."""
    h = BotHarness(fake, db, clock)
    patients = [fake.add_user(first_name=f"P{i}", started=True) for i in range(50)]
    for i, u in enumerate(patients):
        await sup.add_patient(db, clock.now(), telegram_id=u.id, code=f"P-{2000 + i}", first_name=f"P{i}")
    # The bot was down while they wrote; Telegram answers 429 to the first 7 replies after the restart.
    updates = [fake.send_text(u, "/help") for u in patients]
    fake.fail("sendMessage", "429", times=7, retry_after=3)
    await h.start()
    try:
        for inc in updates:
            await h.handled(inc.update_id, timeout=30)
        answered = {u.id for u in patients if fake.sent(u.id)}
        assert len(answered) == 43  # the other 7 wait, as Telegram asked
        clock.advance(seconds=3)
        await h.outbox_idle(timeout=30)
        for u in patients:
            replies = fake.sent(u.id)
            assert len(replies) == 1, (u.id, [m.plain_text for m in replies])
            assert "/talk" in (replies[0].plain_text or "")
        assert len([e for e in fake.errors if e.status == 429]) == 7
    finally:
        await h.stop()


async def test_replies_after_a_429_keep_their_order(
    fake: FakeTelegram, db: Database, clock: FrozenClock
):
    h = BotHarness(fake, db, clock)
    u = fake.add_user(first_name="Pat", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code="P-3000", first_name="Pat")
    await h.start()
    try:
        fake.fail("sendMessage", "429", times=1, retry_after=2, chat_id=u.id)
        first = fake.send_text(u, "/help")
        await h.handled(first.update_id)
        assert fake.sent(u.id) == []
        second = fake.send_text(u, "/nosuchcommand")
        await h.handled(second.update_id)
        # The second reply did not overtake the first: it waits behind it in the outbox.
        assert fake.sent(u.id) == []
        clock.advance(seconds=2)
        await h.outbox_idle()
        texts = [m.plain_text or "" for m in fake.sent(u.id)]
        assert len(texts) == 2 and "/talk" in texts[0] and "/talk" not in texts[1]
    finally:
        await h.stop()


async def test_a_fast_tap_in_onboarding_under_a_429_still_gets_the_next_question(
    fake: FakeTelegram, db: Database, clock: FrozenClock
):
    from tests.onboarding_support import make_invite, text_of

    h = BotHarness(fake, db, clock)
    await h.start()
    try:
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Quinn")
        await h.send(u, f"/start {code}")
        question = fake.last(u.id)
        before = len(fake.sent(u.id))
        # Telegram refuses both the edit of the pressed message and the next question: wait 2 s.
        fake.fail("editMessageText", "429", times=1, retry_after=2, chat_id=u.id)
        fake.fail("sendMessage", "429", times=1, retry_after=2, chat_id=u.id)
        await h.press(u, question, "ob:age:y")
        assert len(fake.sent(u.id)) == before and not fake.sent_message(u.id, question.message_id).edits
        # The edit was handed over; the question queued behind it (and met the 429 in the outbox).
        for _ in range(2):
            clock.advance(seconds=2)
            await h.outbox_idle()
        assert fake.sent_message(u.id, question.message_id).edits  # the answer is shown on it
        (nxt,) = fake.sent(u.id)[before:]
        assert any(d.startswith("ob:con:") for d in nxt.callback_data)  # the next question came
        await h.press(u, nxt, "ob:con:y")
        assert text_of(fake.last(u.id)) and fake.last(u.id).message_id != nxt.message_id
    finally:
        await h.stop()
