"""End to end: what a patient meets outside the clinical flows (issue 11, items 8, 11, 14, 15).

The plan keeps a name in brackets whole and is one message edited in place; /tip gives the next
tip of the rotation; /settings and the rest of a patient's view write times one way; typed text
that is not a risk gets the right short answer; consent and /privacy say only what is true.
"""

from __future__ import annotations

import re
from datetime import time

from sqlalchemy import select

from bot import tips
from bot.clinical import load_clinical
from bot.clock import FrozenClock
from bot.db import Database
from bot.models import OutboxMessage, Patient, TipShown
from fakeapi import FakeTelegram
from handlers import PATIENT_COMMANDS
from tests.conftest import CONTENT_DIR
from tests.harness import BotHarness
from tests.sos_helpers import make_patient


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, **kw):  # type: ignore[no-untyped-def]
    user = fake.add_user(first_name="Sam", started=True)
    await make_patient(db, clock.now(), telegram_id=user.id, code=f"P-{user.id % 10000:04d}", **kw)
    return user


def _text(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.plain_text or ""


# -- item 15: the plan ------------------------------------------------------------------------


async def test_plan_keeps_a_name_in_brackets_and_is_one_message_edited_in_place(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/plan")
    plan_msg = fake.last(u.id)
    before = len(fake.sent(u.id))

    # Every tap on the plan's own screens edits that one message.
    for data, expect in (
        ("pl:s:people", "pl:add:people"),
        ("pl:menu", "pl:show"),
        ("pl:s:people", "pl:add:people"),
        ("pl:add:people", "pl:cancel"),
    ):
        await h.press(u, fake.sent_message(u.id, plan_msg.message_id), data)
        assert len(fake.sent(u.id)) == before, f"{data} sent a new message"
        assert expect in fake.sent_message(u.id, plan_msg.message_id).callback_data

    # The typed entry: the answer follows the patient's message (a new one), name intact.
    await h.send(u, "Sam (sponsor) 617 555 0134")
    saved = fake.last(u.id)
    assert saved.message_id != plan_msg.message_id
    assert "Sam (sponsor) — +1 617 555 0134" in _text(saved)
    assert "(sponsor —" not in _text(saved)
    # The number stands alone in international form (what Telegram makes tappable).
    assert re.search(r"(^|\s)\+1 617 555 0134($|\s)", _text(saved), re.M)

    # From there on, taps edit the new screen in place too, up to the whole plan.
    n = len(fake.sent(u.id))
    await h.press(u, saved, "pl:menu")
    await h.press(u, fake.sent_message(u.id, saved.message_id), "pl:show")
    assert len(fake.sent(u.id)) == n
    whole = _text(fake.sent_message(u.id, saved.message_id))
    assert "Sam (sponsor) — +1 617 555 0134" in whole and "988" in whole

    # A plan button on a message that is not the plan's (the /sos "call someone" list) keeps
    # that message and opens the plan in a new one.
    await h.send(u, "/sos")
    await h.press(u, fake.last(u.id), "sos:call")
    call_list = fake.last(u.id)
    call_text = _text(call_list)
    await h.press(u, call_list, "pl:s:people")
    assert _text(fake.sent_message(u.id, call_list.message_id)) == call_text
    assert fake.last(u.id).message_id != call_list.message_id
    fake.assert_no_errors()


# -- item 15: /tip ----------------------------------------------------------------------------


async def test_tip_on_demand_rotates_without_repeats_and_leaves_the_daily_tip(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock, tip_time=time(10, 0))  # 09:00 in New York now
    async with h.svc.db.transaction() as s:
        pid = (await s.execute(select(Patient.id).where(Patient.telegram_id == u.id))).scalar_one()
        await tips.schedule_next(s, pid, clock.now())
    texts = {t.id: t.text for t in load_clinical(CONTENT_DIR).tips("en")}
    shown: list[str] = []
    for _ in range(5):
        await h.send(u, "/tip")
        reply = _text(fake.last(u.id))
        assert "/tip" in reply
        found = [tid for tid, body in texts.items() if re.sub(r"<[^>]+>", "", body) in reply]
        assert len(found) == 1, reply
        shown.append(found[0])
    assert len(set(shown)) == 5

    # The same day's daily tip still comes, and is none of the tips just asked for.
    clock.advance(hours=1, minutes=1)  # 10:01 in New York
    await h.tick()
    async with h.svc.db.session() as s:
        daily = (await s.execute(select(OutboxMessage).where(OutboxMessage.dedup_key.like("tip:%")))).scalars().all()
        rows = (await s.execute(select(TipShown.tip_id).order_by(TipShown.id))).scalars().all()
    assert len(daily) == 1 and len(rows) == 6
    assert rows[-1] not in shown

    # In the command menu and in /help.
    assert "tip" in PATIENT_COMMANDS
    menu = [c["command"] for c in fake.commands("all_private_chats")]
    assert "tip" in menu
    await h.send(u, "/help")
    assert "/tip" in _text(fake.last(u.id))
    fake.assert_no_errors()


async def test_tip_from_someone_not_enrolled(h: BotHarness, fake: FakeTelegram) -> None:
    stranger = fake.add_user(first_name="Max", started=True)
    await h.send(stranger, "/tip")
    assert "invite link" in _text(fake.last(stranger.id))
    async with h.svc.db.session() as s:
        assert (await s.execute(select(TipShown))).first() is None
