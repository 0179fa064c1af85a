"""Patient-side edge cases of the crisis path and the lapse flow."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.escalation.models import Flag
from bot.platform.models import OutboxMessage
from bot.recovery import plans
from bot.recovery.rules import load_sos_rules
from tests import escalation_support as sup
from tests.conftest import CONTENT_DIR

# The predictable detector, installed before the bot starts and removed after it stops.
pytestmark = pytest.mark.usefixtures("stub_detector")


async def test_a_long_plan_still_reaches_the_patient_after_a_crisis(h, fake, db, clock):
    u = fake.add_user(first_name="Jordan", started=True)
    pid = await sup.add_patient(db, clock.now(), telegram_id=u.id)
    async with db.transaction() as s:
        for i in range(10):
            await plans.add_entry(s, load_sos_rules(CONTENT_DIR).plan, pid, "reasons", f"Reason {i}: " + "my family and my future " * 20, clock.now())
    await h.send(u, "I'm going to end it all tonight")
    texts = [m.plain_text or "" for m in fake.sent(u.id)]
    assert "988" in texts[0]
    assert any("Reason 9" in t for t in texts)  # the whole plan arrived, in parts
    assert all(len(t) <= 4096 for t in texts)
    async with db.session() as s:
        assert not (await s.execute(select(OutboxMessage).where(OutboxMessage.status == "dead"))).first()
    fake.assert_no_errors()


async def test_use_disclosed_in_free_text_gets_the_lapse_flow(h, fake, db, clock):
    u = fake.add_user(first_name="Jordan", started=True)
    pid = await sup.add_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "I used last night")
    last = fake.last(u.id)
    assert "lapse is not a relapse" in (last.plain_text or "").lower()
    assert "sos:talk" in last.callback_data
    async with db.session() as s:
        cats = (await s.execute(select(Flag.category).where(Flag.patient_id == pid))).scalars().all()
    assert "use_disclosure" in cats
