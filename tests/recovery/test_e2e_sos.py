"""End to end: /sos, every tool by buttons, the urge follow-up, and /plan with bad input."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.harness import BotHarness
from tests.sos_helpers import make_patient

PHONE = re.compile(r"\+1 555 123 4567")


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, name: str = "Sam"):  # type: ignore[no-untyped-def]
    user = fake.add_user(first_name=name)
    await make_patient(db, clock.now(), telegram_id=user.id, code=f"P-{user.id % 10000:04d}")
    return user


def _text(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.plain_text or ""


async def _flags(db: Database) -> list[Flag]:
    async with db.session() as s:
        return list((await s.execute(select(Flag))).scalars())


async def test_every_tool_completes_by_buttons(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/sos")
    toolbox = fake.last(u.id)
    data = toolbox.callback_data
    exercises = [d for d in data if d.startswith("sos:x:")]
    assert len(exercises) >= 4
    assert {"sos:plan", "sos:call", "sos:talk"} <= set(data)
    assert not any("meet" in d for d in data)

    for start in exercises:
        qid = await h.press(u, toolbox, start)
        assert fake.callback_answer(qid) is not None
        msg = fake.last(u.id)
        ratings = iter(["7", "3"])
        for _ in range(30):
            msg = fake.sent_message(u.id, msg.message_id)
            buttons = msg.callback_data
            if "sos:menu" in buttons:
                break
            ask = [b for b in buttons if b.startswith("sos:r:")]
            pick = [b for b in buttons if b.startswith("sos:c:")]
            nxt = [b for b in buttons if b.startswith("sos:x:")]
            if ask:
                value = next(ratings)
                await h.press(u, msg, next(b for b in ask if b.endswith(f":{value}")))
            elif pick:
                await h.press(u, msg, pick[0])
            else:
                assert len(nxt) == 1, buttons
                await h.press(u, msg, nxt[0])
        else:
            pytest.fail(f"{start} never reached its end")
        if start.startswith("sos:x:ride_the_wave"):
            assert "from 7 to 3" in _text(msg)

    # My reasons and plan: empty, so an invitation to write it.
    await h.press(u, toolbox, "sos:plan")
    assert "pl:menu" in fake.last(u.id).callback_data
    # Call someone: nobody yet, but 988 is always there.
    await h.press(u, toolbox, "sos:call")
    assert "988" in _text(fake.last(u.id))
    # Talk to my counselor: a flag and an honest expectation.
    await h.press(u, toolbox, "sos:talk")
    reply = _text(fake.last(u.id))
    assert "care team" in reply and "988" in reply
    assert [f.category for f in await _flags(db)] == ["talk_request"]
    fake.assert_no_errors()


async def test_followup_fires_once_after_the_delay_and_survives_restart(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/sos")
    toolbox = fake.last(u.id)
    await h.press(u, toolbox, "sos:x:ride_the_wave:0")
    msg = fake.last(u.id)
    await h.press(u, msg, "sos:x:ride_the_wave:1")
    await h.press(u, fake.sent_message(u.id, msg.message_id), "sos:r:ride_the_wave:1:6")
    await h.send(u, "/urge")  # a second /sos: still one follow-up

    before = len(fake.sent(u.id))
    clock.advance(minutes=19)
    await h.tick()
    assert len(fake.sent(u.id)) == before

    await h.restart()
    clock.advance(minutes=2)
    await h.tick()
    await h.tick()
    asks = [m for m in fake.sent(u.id)[before:] if "How strong is the urge now" in _text(m)]
    assert len(asks) == 1
    await h.restart()
    clock.advance(hours=1)
    await h.tick()
    assert len([m for m in fake.sent(u.id) if "How strong is the urge now" in _text(m)]) == 1

    ask = asks[0]
    nine = next(d for d in ask.callback_data if d.endswith(":9"))
    two = next(d for d in ask.callback_data if d.endswith(":2"))
    await h.press(u, ask, nine)
    answered = fake.sent_message(u.id, ask.message_id)
    assert "sos:talk" in answered.callback_data
    flags = await _flags(db)
    assert [(f.category, f.severity) for f in flags] == [("urge_followup", "high")]
    # Answering again changes nothing.
    qid = await h.press(u, ask, two)
    assert fake.callback_answer(qid) is not None
    assert len(await _flags(db)) == 1
    fake.assert_no_errors()


async def test_followup_lower_is_encouraged(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/sos")
    toolbox = fake.last(u.id)
    await h.press(u, toolbox, "sos:x:ride_the_wave:0")
    msg = fake.last(u.id)
    await h.press(u, msg, "sos:x:ride_the_wave:1")
    await h.press(u, fake.sent_message(u.id, msg.message_id), "sos:r:ride_the_wave:1:8")
    clock.advance(minutes=21)
    await h.tick()
    ask = fake.last(u.id)
    await h.press(u, ask, next(d for d in ask.callback_data if d.endswith(":4")))
    assert "from 8 to 4" in _text(fake.sent_message(u.id, ask.message_id))
    assert await _flags(db) == []
    fake.assert_no_errors()


async def test_plan_edit_paths_with_bad_input(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/plan")
    menu = fake.last(u.id)
    assert "pl:s:people" in menu.callback_data
    await h.press(u, menu, "pl:s:people")
    section = fake.last(u.id)
    assert section.message_id == menu.message_id  # one message, edited in place
    await h.press(u, section, "pl:add:people")
    assert "name and a phone number" in _text(fake.last(u.id))

    await h.send(u, "Maria")
    assert "couldn't find a phone number" in _text(fake.last(u.id))
    await h.send(u, "Maria 555-12")
    assert "doesn't look complete" in _text(fake.last(u.id))
    await h.send(u, "x" * 2000)
    assert "2000 characters" in _text(fake.last(u.id))
    await h.send(u, "Maria (555) 123-4567")
    saved = _text(fake.last(u.id))
    assert "Saved" in saved and PHONE.search(saved)

    # A contact shared from the phone book.
    await h.press(u, fake.last(u.id), "pl:add:people")
    await h.push(fake.send_contact(u, "447946095800", first_name="Joe", last_name="Sponsor"))
    assert "Joe Sponsor — +44 7946 095800" in _text(fake.last(u.id))

    # Reasons: an empty-looking entry, a 2,000-character one, then a good one.
    await h.send(u, "/plan")
    await h.press(u, fake.last(u.id), "pl:add:reasons")
    await h.send(u, "   .  ")
    assert "empty" in _text(fake.last(u.id))
    await h.send(u, "y" * 2000)
    assert "2000 characters" in _text(fake.last(u.id))
    await h.send(u, "My <kids> & me")
    assert "My <kids> & me" in _text(fake.last(u.id))

    # Edit, then remove.
    view = fake.last(u.id)
    edit_button = next(d for d in view.callback_data if d.startswith("pl:e:"))
    await h.press(u, view, edit_button)
    await h.send(u, "My family")
    view = fake.last(u.id)
    assert "My family" in _text(view)
    remove = next(d for d in view.callback_data if d.startswith("pl:d:"))
    await h.press(u, view, remove)
    confirm = fake.sent_message(u.id, view.message_id)
    await h.press(u, confirm, next(d for d in confirm.callback_data if d.startswith("pl:dy:")))
    assert "Removed" in _text(fake.sent_message(u.id, view.message_id))

    # The whole plan: readable, the number tappable, 988 always listed.
    await h.send(u, "/plan")
    whole = _text(fake.last(u.id))
    assert PHONE.search(whole) and "988" in whole and "My family" not in whole
    await h.send(u, "/sos")
    await h.press(u, fake.last(u.id), "sos:call")
    assert PHONE.search(_text(fake.last(u.id)))

    # A stale or forged button gets a friendly answer.
    qid = await h.press(u, fake.last(u.id), "pl:dy:999999")
    assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    qid = await h.press(u, fake.last(u.id), "sos:x:nope:3")
    assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    fake.assert_no_errors()


async def test_sos_open_from_checkin_and_strangers(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/help")
    qid = await h.press(u, fake.last(u.id), "sos:open")
    assert fake.callback_answer(qid) is not None
    toolbox = fake.last(u.id)
    assert "sos:talk" in toolbox.callback_data
    # Thoughts typed during an exercise are acknowledged.
    await h.press(u, toolbox, "sos:x:tape_forward:0")
    await h.send(u, "I would end up alone at the bar")
    assert "putting that into words" in _text(fake.last(u.id))
    stranger = fake.add_user(first_name="Robin")
    await h.send(stranger, "/sos")
    assert "invite link" in _text(fake.last(stranger.id))
    clock.advance(timedelta(minutes=25))
    await h.tick()
    assert "How strong is the urge now" in _text(fake.last(u.id))
    fake.assert_no_errors()


async def test_every_sos_screen_shows_the_crisis_lines_from_the_resources(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    """/sos (and the toolbox it comes back to) always ends with the clinic region's crisis lines,
    read from content/resources as the crisis reply reads them; someone not enrolled gets them too."""
    from bot.escalation.rules import load_rules
    from bot.platform.content import get_content
    from bot.safety.crisis import resources

    c = get_content()
    listed = resources(load_rules(c.root).default_region, "en", c.root, "sos")
    assert listed and listed[0].id == "lifeline_988"
    crisis_reply_ids = {r.id for r in resources("us", "en", c.root, "suicide_self_harm")}
    assert {r.id for r in listed} <= crisis_reply_ids | {r.id for r in resources("us", "en", c.root, None)}
    hows = [r.how for r in listed]

    u = await _patient(fake, db, clock)
    stranger = fake.add_user(first_name="Lee", started=True)
    for who in (u, stranger):
        await h.send(who, "/sos")
        text = _text(fake.last(who.id))
        for how in hows:
            assert how in text, (who.first_name, how)
        assert "988" in text
        assert "crisis service" not in text.lower()
    # Back to the toolbox from a tool: the lines are still there.
    toolbox = fake.last(u.id)
    await h.press(u, toolbox, next(d for d in toolbox.callback_data if d.startswith("sos:x:")))
    await h.press(u, fake.last(u.id), "sos:menu")
    assert all(how in _text(fake.last(u.id)) for how in hows)
