"""Another process holding SQLite's write lock (a backup, a migration, a second bot) does not
delay a crisis reply: the patient has the resources while the lock is still held, and once it
frees the flag is stored, posted to the counselors' group and the update marked handled — nothing
lost, nothing twice. The lock is held by a real second process, released when the test says so.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import InboxUpdate
from bot.safety.signals import SignalKeeper
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.conftest import TEST_DATABASE_URL
from tests.harness import BotHarness

pytestmark = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's write lock")

# The second process: takes the write lock, says so, keeps it until told (a line on stdin).
HOLDER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
conn.rollback()
conn.close()
print("released", flush=True)
"""


class LockHolder:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode().strip()

    @property
    def holding(self) -> bool:
        return self.proc.returncode is None

    async def release(self) -> None:
        assert self.proc.stdin is not None
        if self.proc.returncode is None:
            self.proc.stdin.write(b"go\n")
            await self.proc.stdin.drain()
            assert await self._line() == "released"
        await asyncio.wait_for(self.proc.wait(), 30)


@asynccontextmanager
async def _hold(url: str) -> AsyncIterator[LockHolder]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url.split(":///", 1)[1],
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    holder = LockHolder(proc)
    try:
        assert await holder._line() == "held"
        yield holder
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


@pytest.fixture
async def bot(fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: object) -> AsyncIterator[Any]:
    h = BotHarness(fake, db, clock, detector=stub_detector)
    h.jordan = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=h.jordan.id, code="P-1234", first_name="Jordan")
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_a_crisis_is_answered_while_another_process_holds_the_write_lock(bot: Any, fake: FakeTelegram):
    h, jordan = bot, bot.jordan
    # Ordinary updates wait for their store as long as it takes here: only the crisis is urgent.
    h.hub.inbox.store_wait = 120
    async with _hold(h.db.url) as holder:
        inc = fake.send_text(jordan, "I'm going to end it all tonight")
        # The resources reach the patient while the other process still holds the lock
        # (before, the reply waited for the lock: as long as the other process kept it).
        reply = await fake.wait_for_message(jordan.id, timeout=15)
        assert "988" in (reply.plain_text or "")
        assert holder.holding
        assert await _count(h.db, Flag) == 0  # nothing could be written yet
        await holder.release()
    # The lock is free: the flag is stored, the group hears of it, the update is done.
    await h.handled(inc.update_id, timeout=30)
    await _until(lambda: _stored(h), "the flag to be stored")
    await h.outbox_idle(timeout=30)
    async with h.db.session() as s:
        flags = (await s.execute(select(Flag.category, Flag.severity, Flag.patient_id))).all()
        status = (await s.execute(select(InboxUpdate.status).where(InboxUpdate.update_id == inc.update_id))).scalar_one()
    assert [(c, sev) for c, sev, _ in flags] == [("suicide_self_harm", "crisis")]
    assert status == "done"
    assert any("P-1234" in t for t in sup.group_texts(h, fake))
    assert not any("Jordan" in t or "end it all" in t for t in sup.group_texts(h, fake))
    # One crisis reply, not two (the direct one; none again from the outbox).
    crisis_replies = [m for m in fake.sent(jordan.id) if "988" in (m.plain_text or "")]
    assert len(crisis_replies) == 1
    # An ordinary message afterwards is answered, once.
    before = len(fake.sent(jordan.id))
    nxt = await h.send(jordan, "hello")
    assert len(fake.sent(jordan.id)) == before + 1
    assert await _count(h.db, InboxUpdate, InboxUpdate.status != "done") == 0
    assert await _count(h.db, Flag) == 1
    assert nxt.update_id > inc.update_id
    fake.assert_no_errors()


async def _stored(h: Any) -> bool:
    return await _count(h.db, Flag) >= 1 and h.hub.get(SignalKeeper).held == 0


async def test_ordinary_messages_sent_during_the_lock_are_answered_once_after(bot: Any, fake: FakeTelegram):
    h, jordan = bot, bot.jordan
    h.hub.inbox.store_wait = 0.05
    async with _hold(h.db.url) as holder:
        first = fake.send_text(jordan, "hello")
        # Received and handed on after the bounded wait; marking it done waits for its store.
        await fake.wait_idle(timeout=15)
        assert first.update_id in h.hub.inbox._storing
        # The database is known busy now: the next update is not held back at all, however
        # long the bounded wait (before, every batch waited it out again).
        h.hub.inbox.store_wait = 120
        second = fake.send_text(jordan, "how are you")
        await fake.wait_idle(timeout=15)
        assert holder.holding
        await holder.release()
    for inc in (first, second):
        await h.handled(inc.update_id, timeout=30)
    await h.outbox_idle(timeout=30)
    assert len(fake.sent(jordan.id)) == 2  # one answer each
    ids = (first.update_id, second.update_id)
    assert await _count(h.db, InboxUpdate, InboxUpdate.update_id.in_(ids), InboxUpdate.status == "done") == 2
    assert await _count(h.db, InboxUpdate) == 2
    assert not h.hub.inbox._storing
    fake.assert_no_errors()


def _update(text: str, chat_type: str = "private", key: str = "message", field: str = "text") -> dict[str, Any]:
    return {"update_id": 1, key: {"message_id": 1, "date": 0, "chat": {"id": 5, "type": chat_type}, field: text}}


def test_only_a_private_crisis_text_is_urgent(stub_detector: sup.StubDetector):
    from bot.safety.service import Detection

    crisis_update = Detection(stub_detector).crisis_update

    crisis = "I'm going to end it all tonight"
    for key in ("message", "edited_message"):
        for field in ("text", "caption"):
            assert crisis_update(_update(crisis, key=key, field=field))
    assert not crisis_update(_update("hello"))
    assert not crisis_update(_update("some days I don't want to wake up"))  # uncertain: a question first
    assert not crisis_update(_update(crisis, chat_type="supergroup"))
    assert not crisis_update({"update_id": 1, "callback_query": {"id": "1", "data": "sf:y:1"}})
    assert not crisis_update(_update("   "))


def test_while_the_detector_builds_every_private_text_is_urgent(monkeypatch: pytest.MonkeyPatch):
    from bot.safety.risk import registry
    from bot.safety.service import Detection

    crisis_update = Detection().crisis_update
    monkeypatch.setattr(registry, "detector_ready", lambda content_dir=None: False)
    assert crisis_update(_update("hello"))  # cannot be told yet: not held back
    assert not crisis_update(_update("hello", chat_type="group"))
