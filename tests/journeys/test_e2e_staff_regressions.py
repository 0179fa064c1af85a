"""Staff-side edge cases: long Details, on-call, losing the role mid-conversation, erasure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from fakeapi import FakeTelegram
from tests import escalation_support as sup

CRISIS = "I'm going to end it all tonight"


# The predictable detector, installed before the bot starts and removed after it stops.
pytestmark = pytest.mark.usefixtures("stub_detector")


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, name: str = "Jordan"):  # type: ignore[no-untyped-def]
    u = fake.add_user(first_name=name, started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code="P-1234", first_name=name)
    return u


def _flag_id(post) -> str:  # type: ignore[no-untyped-def]
    return post.callback_data[0].split(":")[2]


async def test_details_of_a_very_long_crisis_message_reaches_the_counselor(h, fake, db, clock):
    u = await _patient(fake, db, clock, name="Jo & <Co>")
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    await h.send(u, CRISIS + "\n" + "<&>\n" * 900)
    post = fake.last(h.group.id)
    assert "<b>" not in post.plain_text  # severity is shown bold, not as literal tags
    await h.press(dana, post, f"fl:details:{_flag_id(post)}")
    details = [m for m in fake.sent(dana.id) if "Jo & <Co>" in (m.plain_text or "")]
    assert details and "end it all" in details[0].plain_text
    fake.assert_no_errors()


async def test_only_a_counselor_can_be_put_on_call(h, fake, db, clock):
    u = await _patient(fake, db, clock)
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    for arg in (str(u.id), "0", "²", "9" * 30):
        await h.send(dana, f"/oncall {arg}")
        assert "Only a counselor" in fake.last(dana.id).plain_text
    await h.send(dana, "/flag ²")
    assert "something went wrong" not in fake.last(dana.id).plain_text
    await h.send(u, CRISIS)
    clock.advance(timedelta(minutes=12))
    await h.tick()
    assert not any("unclaimed" in (m.plain_text or "") for m in fake.sent(u.id))


async def test_losing_the_counselor_role_ends_their_conversations(h, fake, db, clock):
    u = await _patient(fake, db, clock)
    rita = fake.add_user(first_name="Rita", started=True)
    await h.send(h.admin, f"/grant {rita.id} counselor")
    await h.send(u, CRISIS)
    post = fake.last(h.group.id)
    await h.press(rita, post, f"fl:msg:{_flag_id(post)}")
    await h.send(rita, "Hi, this is Rita from the care team")
    await h.send(h.admin, f"/revoke {rita.id} counselor")
    before = len(fake.sent(rita.id))
    await h.send(u, "my private reply after the revoke")
    assert not any("private reply" in (m.plain_text or "") for m in fake.sent(rita.id)[before:])


async def test_delete_also_erases_relayed_words_sent_to_staff(h, fake, db, clock):
    u = await _patient(fake, db, clock)
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    await h.send(u, CRISIS)
    post = fake.last(h.group.id)
    await h.press(dana, post, f"fl:msg:{_flag_id(post)}")
    await h.send(dana, "hello")
    await h.send(u, "ZEBRA-SECRET my reply")
    await h.send(u, "/delete")
    await h.press(u, fake.last(u.id), "pv:del:1")
    await h.press(u, fake.last(u.id), "pv:del:2")
    async with db.session() as s:
        rows = (await s.execute(select(OutboxMessage))).scalars().all()
    assert not [r for r in rows if "ZEBRA" in str(r.payload) or "end it all" in str(r.payload)]
