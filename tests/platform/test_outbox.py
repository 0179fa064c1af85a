"""The outbox against the fake Bot API: faults, 429, 403, 400, rate, dedup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from telegram import Bot

from bot.platform.clock import Clock
from bot.platform.db import Database
from bot.platform.models import BlockedChat, OutboxMessage
from bot.platform.outbox import OR_SEND, Outgoing, Sender, enqueue
from fakeapi import FakeTelegram


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = Bot(fake.token, base_url=fake.base_url)
    async with b:
        yield b


async def _counts(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
    return {k: v for k, v in rows}


async def _drain(db: Database, sender: Sender, timeout: float = 60.0) -> None:
    """Run the sender until nothing is pending (retries included)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        n, next_due = await sender.run_once()
        counts = await _counts(db)
        if not counts.get("pending") and not counts.get("sending"):
            return
        assert loop.time() < deadline, f"outbox did not drain: {counts}"
        if not n and next_due is not None:
            await asyncio.sleep(max(0.0, min(1.0, (next_due - sender.clock.now()).total_seconds())))


async def test_200_messages_through_faults_all_delivered_none_twice(db: Database, fake: FakeTelegram, bot: Bot):
    users = [fake.add_user(first_name=f"U{i}") for i in range(20)]
    for u in users:
        fake.send_text(u, "hi")  # opens the private chat
    clock = Clock()
    sender = Sender(db, bot, clock, send_rate=1000, backoff_base=0.02, concurrency=8)
    async with db.transaction() as s:
        for i in range(200):
            u = users[i % len(users)]
            await enqueue(s, Outgoing(u.id, f"message {i}"), now=clock.now(), dedup_key=f"m:{i}")
    fake.fail("sendMessage", "429", times=2, retry_after=1)
    fake.fail_randomly(rate=0.3, kinds=("500", "502", "drop"), seed=7, methods=["sendMessage"])
    await _drain(db, sender)
    fake.clear_faults()

    delivered = [m.text for m in fake.sent() if m.text and m.text.startswith("message ")]
    assert sorted(delivered) == sorted(f"message {i}" for i in range(200))
    assert len(delivered) == len(set(delivered)) == 200
    assert (await _counts(db)) == {"sent": 200}
    # Per chat, the order is kept.
    for u in users:
        nums = [int(m.text.split()[1]) for m in fake.sent(u.id) if m.text and m.text.startswith("message ")]
        assert nums == sorted(nums)


async def test_blocked_recipient_is_recorded_and_not_retried(db: Database, fake: FakeTelegram, bot: Bot):
    u = fake.add_user(first_name="Blocked")
    fake.send_text(u, "hi")
    fake.block(u)
    clock = Clock()
    sender = Sender(db, bot, clock, backoff_base=0.01)
    async with db.transaction() as s:
        await enqueue(s, Outgoing(u.id, "one"), now=clock.now())
    await _drain(db, sender)
    async with db.transaction() as s:
        await enqueue(s, Outgoing(u.id, "two"), now=clock.now())
    await _drain(db, sender)
    assert (await _counts(db)) == {"blocked": 2}
    async with db.session() as s:
        assert (await s.get(BlockedChat, u.id)) is not None
    sends = [c for c in fake.calls if c.method == "sendMessage" and c.params.get("chat_id") in (u.id, str(u.id))]
    assert len(sends) == 1  # the second message never went to Telegram


async def test_rejected_message_is_dead_lettered_with_a_log_line(db: Database, fake: FakeTelegram, bot: Bot, caplog):
    u = fake.add_user(first_name="Bad")
    fake.send_text(u, "hi")
    clock = Clock()
    sender = Sender(db, bot, clock, backoff_base=0.01)
    async with db.transaction() as s:
        await enqueue(s, Outgoing(u.id, "<b>unclosed"), now=clock.now())
        await enqueue(s, Outgoing(u.id, "fine"), now=clock.now())
    with caplog.at_level(logging.ERROR, logger="bot.platform.outbox"):
        await _drain(db, sender)
    assert (await _counts(db)) == {"dead": 1, "sent": 1}
    assert any("dead-lettered" in r.getMessage() for r in caplog.records)
    assert "<b>unclosed" not in caplog.text  # the text itself is never logged


async def test_bulk_sends_stay_under_the_rate(db: Database, fake: FakeTelegram, bot: Bot):
    users = [fake.add_user(first_name=f"R{i}") for i in range(40)]
    for u in users:
        fake.send_text(u, "hi")
    clock = Clock()
    rate = 20
    sender = Sender(db, bot, clock, send_rate=rate, concurrency=16)
    async with db.transaction() as s:
        for u in users:
            await enqueue(s, Outgoing(u.id, "news"), now=clock.now(), bulk=True)
    await _drain(db, sender)
    times = sorted(c.time for c in fake.calls if c.method == "sendMessage" and c.ok)
    assert len(times) == 40
    # In any one-second window no more than the rate (plus the bucket's first burst) went out.
    worst = max(sum(1 for t in times if t0 <= t < t0 + 1.0) for t0 in times)
    assert worst <= rate + 1


async def test_dedup_key_makes_enqueue_idempotent(db: Database):
    clock = Clock()
    async with db.transaction() as s:
        first = await enqueue(s, Outgoing(1, "x"), now=clock.now(), dedup_key="k")
        second = await enqueue(s, Outgoing(1, "x"), now=clock.now(), dedup_key="k")
    assert first is not None and second is None
    assert (await _counts(db)) == {"pending": 1}


async def test_not_before_is_respected(db: Database, fake: FakeTelegram, bot: Bot):
    u = fake.add_user(first_name="Later")
    fake.send_text(u, "hi")
    clock = Clock()
    sender = Sender(db, bot, clock)
    async with db.transaction() as s:
        await enqueue(s, Outgoing(u.id, "later"), now=clock.now(), not_before=clock.now() + timedelta(hours=1))
    n, next_due = await sender.run_once()
    assert n == 0 and next_due is not None
    assert not [m for m in fake.sent(u.id) if m.text == "later"]


async def test_an_edit_that_must_arrive_is_sent_anew_where_the_message_cannot_be_edited(
    db: Database, fake: FakeTelegram, bot: Bot
):
    """An `editMessageText` row with OR_SEND (a reply written with the answer it replies to)
    replaces the message; where Telegram no longer has it, the text arrives as a new message."""
    u = fake.add_user(first_name="Ash")
    fake.send_text(u, "hi")
    question = await bot.send_message(u.id, "a question")
    clock = Clock()
    sender = Sender(db, bot, clock, backoff_base=0.01)
    async with db.transaction() as s:
        for message_id, text in ((question.message_id, "replaced"), (question.message_id + 999, "sent anew")):
            params = {"message_id": message_id, OR_SEND: True}
            await enqueue(s, Outgoing(u.id, text, method="editMessageText", params=params), now=clock.now())
    await _drain(db, sender)
    assert (await _counts(db)) == {"sent": 2}
    assert fake.sent_message(u.id, question.message_id).text == "replaced"
    assert [m.text for m in fake.sent(u.id)] == ["replaced", "sent anew"]
