"""An update handled again after the process died before marking it done (DESIGN §3 Durability):
what reached people the first time is not sent again, and what did not is still sent.

"Died before marking it done" is what a SIGKILL leaves between the end of a handler and the
inbox's mark (tests/test_crash.py does it with a real process): here the inbox fails to mark the
update, the bot stops, and a new Application starts on the same database and handles it again.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.escalation.models import FlagEvent
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import InboxUpdate
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

CRISIS = "I'm going to end it all tonight"


def dies_before_marking(h: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on this run never marks an update done, as if it were killed right after its handlers."""

    async def killed(update_id: int, *, failed: bool = False) -> None:
        raise RuntimeError("the process was killed")

    monkeypatch.setattr(h.hub.inbox, "mark_done", killed)


async def handled_again(h: BotHarness, update_id: int, clock: FrozenClock, *, minutes: int = 15) -> None:
    """Stop, let time pass (a slow restart), start a new Application and wait for `update_id`."""
    await h.stop()
    async with h.db.session() as s:
        assert (await s.get(InboxUpdate, update_id)).status == "pending"  # type: ignore[union-attr]
    clock.advance(minutes=minutes)
    h.processed.discard(update_id)
    await h.start()
    await h.handled(update_id, timeout=30)
    await h.outbox_idle()
    async with h.db.session() as s:
        row = await s.get(InboxUpdate, update_id)
        assert row is not None and row.status == "done" and row.payload is None


def crisis_replies(fake: FakeTelegram, chat_id: int) -> list[Any]:
    return [m for m in fake.sent(chat_id) if "988lifeline.org" in (m.plain_text or "")]


async def triggers(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(FlagEvent).where(FlagEvent.kind == "trigger"))).scalar_one())


async def test_a_crisis_handled_again_is_not_answered_or_flagged_twice(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_before_marking(h, monkeypatch)
    inc = await h.send(u, CRISIS)
    assert len(crisis_replies(fake, u.id)) == 1
    sent_before = len(fake.sent(u.id))
    posts = len(fake.sent(h.group.id))
    assert posts == 1 and await triggers(db) == 1

    await handled_again(h, inc.update_id, clock)
    assert len(crisis_replies(fake, u.id)) == 1, "the crisis reply went out twice"
    assert len(fake.sent(u.id)) == sent_before  # nor the plan, nor the line about the care team
    assert len(fake.sent(h.group.id)) == posts  # no second post, no "new trigger"
    assert await triggers(db) == 1
    fake.assert_no_errors()


async def test_a_crisis_reply_telegram_refused_arrives_once_after_the_restart(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct reply failed, so it went to the outbox with the flag; the process died before
    the update was marked done. After the restart the reply arrives, once (not lost, not doubled)."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_before_marking(h, monkeypatch)
    fake.fail("sendMessage", kind="500", times=1, chat_id=u.id)
    inc = fake.send_text(u, CRISIS)
    await h.handled(inc.update_id)
    await handled_again(h, inc.update_id, clock)
    assert len(crisis_replies(fake, u.id)) == 1
    assert len(fake.sent(h.group.id)) == 1 and await triggers(db) == 1


async def test_a_crisis_never_recorded_is_answered_after_the_restart(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died before anything was recorded (the database refused the flag's write):
    handled again, the crisis reply goes out again rather than not at all, and the flag is raised."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_before_marking(h, monkeypatch)

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr("bot.safety.signals.record", refused)
    inc = fake.send_text(u, CRISIS)
    await h.handled(inc.update_id)
    assert len(crisis_replies(fake, u.id)) == 1 and await triggers(db) == 0
    monkeypatch.undo()
    await handled_again(h, inc.update_id, clock, minutes=1)
    assert len(crisis_replies(fake, u.id)) == 2  # a duplicate, never a loss
    assert await triggers(db) == 1


async def test_yes_to_the_safety_question_handled_again_sends_the_crisis_reply_once(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "I don't want to wake up")
    question = fake.last(u.id)
    assert any(d.startswith("sf:y:") for d in question.callback_data)
    dies_before_marking(h, monkeypatch)
    fake.press_button(u, question, "Yes")
    update_id = fake.updates[-1].update_id
    await h.handled(update_id)
    await h.outbox_idle()
    assert len(crisis_replies(fake, u.id)) == 1
    posts = len(fake.sent(h.group.id))
    await handled_again(h, update_id, clock)
    assert len(crisis_replies(fake, u.id)) == 1, "the crisis reply went out twice"
    assert len(fake.sent(h.group.id)) == posts and await triggers(db) == 1

