"""Typed text that answers the question on screen closes it as a press would: the question's
buttons are removed, so they cannot be pressed again."""

from __future__ import annotations

from typing import Any

from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.checkins_support import make_patient
from tests.harness import BotHarness


def _text(msg: Any) -> str:
    return msg.plain_text or ""


async def test_a_typed_checkin_note_removes_the_note_questions_buttons(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Sam", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/checkin")
    for data in ("ci:a:mood:3", "ci:a:craving:2", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:4"):
        await h.press(u, fake.last(u.id), data)
    question = fake.last(u.id)
    assert "ci:skip:note" in question.callback_data
    await h.send(u, "a calm day")
    question = fake.sent_message(u.id, question.message_id)
    assert question.callback_data == [], question.callback_data
    assert "Anything you'd like to add" in _text(question)  # the question stays, answered
    assert any("Thanks for checking in" in _text(m) for m in fake.sent(u.id))
    fake.assert_no_errors()


async def test_a_typed_plan_entry_removes_the_prompts_buttons(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Sam", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/plan")
    await h.press(u, fake.last(u.id), "pl:s:reasons")
    await h.press(u, fake.last(u.id), "pl:add:reasons")
    prompt = fake.last(u.id)
    assert prompt.callback_data, _text(prompt)
    await h.send(u, "my daughter")
    assert fake.sent_message(u.id, prompt.message_id).callback_data == []
    saved = fake.last(u.id)
    assert "Saved" in _text(saved) and saved.callback_data  # the section's own buttons follow
    fake.assert_no_errors()


async def test_typed_onboarding_answers_remove_the_questions_buttons(db: Database, clock: FrozenClock):
    from tests.onboarding_support import make_invite, running_bot, text_of

    async with running_bot(db, clock) as (h, fake, _group):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Zebulon")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:y")
        for typed, expect in (("chicago", "ob:tz"), ("8:30 pm", "ob:tm"), ("Jan 15 2026", "ob:sob")):
            questions = [m for m in fake.sent(u.id) if any(d.startswith(expect) for d in m.callback_data)]
            assert questions, (typed, [text_of(m) for m in fake.sent(u.id)[-2:]])
            asked = questions[-1]
            await h.send(u, typed)
            now_shown = fake.sent_message(u.id, asked.message_id)
            assert not any(d.startswith(expect) and d != "ob:sob:d20260115" for d in now_shown.callback_data), (typed, now_shown.callback_data)
        assert "Jan 15, 2026" in text_of(fake.last(u.id))  # read back to be confirmed, with its buttons
        assert fake.last(u.id).callback_data
        fake.assert_no_errors()


async def test_typed_settings_answers_remove_the_questions_buttons(db: Database, clock: FrozenClock):
    from tests.onboarding_support import enrol, make_invite, running_bot

    async with running_bot(db, clock) as (h, fake, _group):
        u = fake.add_user(first_name="Zebulon")
        await enrol(h, fake, u, await make_invite(h, fake))
        await h.send(u, "/settings")
        for opened, typed in (("st:tm", "7:15am"), ("st:sob", "2026-02-01")):
            await h.press(u, fake.last(u.id), opened)
            asked = fake.last(u.id)
            assert asked.callback_data, opened
            await h.send(u, typed)
            assert fake.sent_message(u.id, asked.message_id).callback_data == [], opened
            assert fake.last(u.id).callback_data  # what follows carries its own buttons
        fake.assert_no_errors()
