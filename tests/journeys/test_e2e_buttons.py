"""Button presses end to end when Telegram refuses the answer or the edit (handlers/ui.py).

Answering a press and editing the message it was on are sent as raw Bot API calls; these tests
hold them to what python-telegram-bot's own methods did: the same fields on the wire, and the
same outcome for each refusal Telegram can give.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.checkins.models import CheckinEntry
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.checkins_support import make_patient
from tests.harness import BotHarness

ERROR = "something went wrong"


async def _checkin(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):  # type: ignore[no-untyped-def]
    u = fake.add_user(first_name="Jo", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/checkin")
    return u, fake.last(u.id)


async def _step(db: Database) -> str | None:
    async with db.session() as s:
        return (await s.execute(select(CheckinEntry.step))).scalar_one()


async def test_a_press_is_answered_and_the_message_edited_in_place(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u, msg = await _checkin(h, fake, db, clock)
    qid = await h.press(u, msg, "ci:a:mood:4")
    assert fake.callback_answer(qid) is not None
    edited = fake.sent_message(u.id, msg.message_id)
    assert "cravings" in (edited.plain_text or "")
    assert edited.parse_mode == "HTML"
    assert any(d.startswith("ci:a:craving:") for d in edited.callback_data)
    assert "ci:back" in edited.callback_data  # the second question has a Back button
    assert len(fake.sent(u.id)) == 1  # edited, not sent again
    fake.assert_no_errors()


async def test_a_stale_button_gets_a_short_answer_and_nothing_changes(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u, msg = await _checkin(h, fake, db, clock)
    await h.press(u, msg, "ci:a:mood:4")
    qid = await h.press(u, msg, "ci:a:mood:2")  # the mood question is no longer current
    answer = fake.callback_answer(qid)
    # Answered without a word; the check-in goes on at its question, its answers unchanged.
    assert answer is not None and not answer.get("text")
    shown = fake.sent_message(u.id, msg.message_id).plain_text or ""
    assert "pick up your check-in" in shown and "cravings" in shown
    assert await _step(db) == "craving"
    fake.assert_no_errors()


async def test_message_to_edit_gone_sends_the_next_question_as_a_new_message(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u, msg = await _checkin(h, fake, db, clock)
    fake.fail("editMessageText", "400", description="Bad Request: message to edit not found")
    qid = await h.press(u, msg, "ci:a:mood:4")
    assert fake.callback_answer(qid) is not None
    new = fake.last(u.id)
    assert new.message_id != msg.message_id
    assert "cravings" in (new.plain_text or "") and any(d.startswith("ci:a:craving:") for d in new.callback_data)
    assert await _step(db) == "craving"
    assert not any(ERROR in (m.plain_text or "") for m in fake.sent(u.id))


@pytest.mark.parametrize(
    ("description", "told"),
    [
        ("Bad Request: message is not modified", False),  # nothing to change: not an error
        ("Bad Request: can't parse entities", True),  # a real refusal: the error handler tells them
    ],
)
async def test_an_edit_refused_in_place(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, description: str, told: bool
) -> None:
    u, msg = await _checkin(h, fake, db, clock)
    fake.fail("editMessageText", "400", description=description)
    await h.press(u, msg, "ci:a:mood:4")
    assert await _step(db) == "craving"  # the answer was stored before the edit
    told_error = [m for m in fake.sent(u.id) if ERROR in (m.plain_text or "").lower()]
    assert len(told_error) == (1 if told else 0)
    assert len(fake.sent(u.id)) == (2 if told else 1)  # nothing else sent instead


async def test_an_answer_too_late_does_not_stop_the_step(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u, msg = await _checkin(h, fake, db, clock)
    fake.fail(
        "answerCallbackQuery", "400",
        description="Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    await h.press(u, msg, "ci:a:mood:4")
    assert "cravings" in (fake.sent_message(u.id, msg.message_id).plain_text or "")
    assert await _step(db) == "craving"
    assert not any(ERROR in (m.plain_text or "").lower() for m in fake.sent(u.id))
