"""Escalation end to end: the real Application against the fake Bot API."""

from __future__ import annotations

import itertools
import re
import string
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.core import state
from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

SATURDAY_3AM = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)  # 03:00 in New York


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(SATURDAY_3AM)


# The predictable detector, installed before the bot starts and removed after it stops.
pytestmark = pytest.mark.usefixtures("stub_detector")


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, name: str = "Jordan", code: str = "P-1234"):  # type: ignore[no-untyped-def]
    u = fake.add_user(first_name=name, started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code=code, first_name=name)
    return u


async def test_crisis_at_3am_gets_resources_and_a_group_post(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I can't do this. I'm going to end it all tonight")
    reply = fake.sent(u.id)[0].plain_text or ""
    assert "988" in reply.splitlines()[0] and "911" in reply and "Crisis Text Line" in reply
    assert "Never Use Alone" not in reply  # a suicide reply: 988 first, nothing about using
    # The care-team line follows once the flag is recorded (only then is it true).
    assert "not working right now" not in reply
    follow = fake.sent(u.id)[1].plain_text or ""
    assert "not working right now" in follow and "Monday at 9:00 am" in follow
    (post,) = fake.sent(h.group.id)
    text = post.plain_text or ""
    assert "CRISIS" in text and "P-1234" in text and "suicide or self-harm" in text and "Sat 07 Mar 03:00" in text
    assert "Jordan" not in text and "end it all" not in text
    assert [d.split(":")[1] for d in post.callback_data] == ["claim", "details", "msg", "resolve"]
    assert len(fake.sent(u.id)) == 2  # nothing else answered the crisis text
    fake.assert_no_errors()


async def test_someone_who_is_not_a_patient_is_not_promised_a_counselor(h: BotHarness, fake: FakeTelegram):
    stranger = fake.add_user(first_name="Sky")
    await h.send(stranger, "I cannot do this, I will end it all tonight")
    texts = [m.plain_text or "" for m in fake.sent(stranger.id)]
    assert texts and "988" in texts[0]
    assert not any("care team" in t.lower() and "know" in t.lower() for t in texts)
    assert fake.sent(h.group.id) == []


async def test_a_risk_message_while_a_setting_question_waits_is_acknowledged(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    from bot.core import state

    async with db.transaction() as s:
        await state.set_(s, u.id, "onboarding:setting", {"field": "sobriety_date"}, clock.now())
    await h.send(u, "I used last night")
    texts = [m.plain_text or "" for m in fake.sent(u.id)]
    assert texts and not any("date" in t.lower() for t in texts)
    async with db.session() as s:
        assert await state.get(s, u.id) is None


async def test_a_counselor_claims_reads_details_messages_and_resolves(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    dana = await sup.add_counselor(h, fake)
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]

    qid = await h.press(dana, post, f"fl:claim:{fid}")
    assert "Claimed" in (fake.callback_answer(qid) or {}).get("text", "")
    now = fake.sent_message(h.group.id, post.message_id)
    assert "Claimed by Dana" in (now.plain_text or "")

    await h.press(dana, post, f"fl:details:{fid}")
    details = fake.last(dana.id).plain_text or ""
    assert "Jordan" in details and "end it all tonight" in details
    assert all("Jordan" not in t for t in sup.group_texts(h, fake))

    await h.press(dana, post, f"fl:msg:{fid}")
    assert "writing to P-1234" in (fake.last(dana.id).plain_text or "")
    await h.send(dana, "Hi, this is Dana from the clinic. I'm here.")
    assert "Dana from the clinic" in (fake.last(u.id).plain_text or "")
    await h.send(u, "thank you, I'm at my sister's")
    back = fake.last(dana.id)
    assert "P-1234" in (back.plain_text or "") and "my sister's" in (back.plain_text or "")
    await h.press(dana, back, back.callback_data[0])  # End
    assert "ended" in (fake.last(u.id).plain_text or "")

    await h.press(dana, post, f"fl:resolve:{fid}")
    assert "outcome note" in (fake.last(dana.id).plain_text or "")
    await h.send(dana, "Called, safe with family, seen Monday")
    assert "resolved" in (fake.last(dana.id).plain_text or "")
    final = fake.sent_message(h.group.id, post.message_id).plain_text or ""
    assert "Resolved by Dana" in final and "safe with family" not in final
    async with db.session() as s:
        flag = (await s.execute(select(Flag))).scalar_one()
    assert flag.status == "resolved" and flag.outcome == "Called, safe with family, seen Monday"

    await h.send(dana, f"/flag {fid}")
    hist = fake.last(dana.id).plain_text or ""
    assert "claimed by Dana" in hist and "resolved by Dana" in hist and "end it all" not in hist
    fake.assert_no_errors()


async def test_a_patient_pressing_a_counselors_button_is_refused(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    stranger = fake.add_user(first_name="Nosy", started=True)
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]
    for who in (u, stranger):
        for action in ("claim", "details", "msg", "resolve"):
            qid = await h.press(who, post, f"fl:{action}:{fid}")
            assert "only counselors" in (fake.callback_answer(qid) or {}).get("text", "")
    async with db.session() as s:
        flag = (await s.execute(select(Flag))).scalar_one()
    assert flag.status == "open" and flag.claimed_by is None
    assert "Jordan" not in "".join(m.plain_text or "" for m in fake.sent(stranger.id))
    qid = await h.press(u, post, "fl:claim:notanumber")
    assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    fake.assert_no_errors()


async def test_a_flag_while_telegram_fails(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    fake.fail("sendMessage", kind="500", times=3)
    await h.send(u, "I'm going to end it all tonight")
    for _ in range(10):
        if fake.sent(h.group.id) and fake.sent(u.id):
            break
        clock.advance(seconds=30)
        await h.outbox_idle()
    assert any("988" in (m.plain_text or "") for m in fake.sent(u.id))
    assert len(fake.sent(h.group.id)) == 1
    fake.assert_no_errors()


async def test_a_restart_before_renotification(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I'm going to end it all tonight")
    await h.restart()
    clock.advance(minutes=5)
    await h.tick()
    posts = fake.sent(h.group.id)
    assert len(posts) == 2 and "Still unclaimed after 5 min" in (posts[1].plain_text or "")
    clock.advance(minutes=5)
    await h.tick()
    assert any("unclaimed for 10 min" in (m.plain_text or "") for m in fake.sent(h.admin.id))
    assert len(fake.sent(h.group.id)) == 2
    fake.assert_no_errors()


async def test_talk_and_uncertain_signals(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "/talk")
    talk = fake.last(u.id).plain_text or ""
    assert "care team know" in talk and "Monday at 9:00 am" in talk
    assert "asked to talk" in (fake.last(h.group.id).plain_text or "")
    await h.send(u, "some days I don't want to wake up")
    q = fake.last(u.id)
    assert "ending your life" in (q.plain_text or "")
    await h.press_button(u, q, "Yes")
    assert any("988" in (m.plain_text or "") for m in fake.sent(u.id)[-2:])
    async with db.session() as s:
        sev = {f.category: f.severity for f in (await s.execute(select(Flag))).scalars()}
    assert sev["suicide_self_harm"] == "crisis"
    fake.assert_no_errors()


_codes = itertools.count(2000)
NAME = st.text(alphabet=string.ascii_letters, min_size=8, max_size=12)
FREE = st.text(alphabet=string.ascii_letters + string.digits + " <>&'\"", min_size=10, max_size=60).filter(
    lambda s: sum(ch.isalnum() for ch in s) >= 8
)
PHRASE = st.sampled_from(["end it all tonight", "I used last night", "craving is bad", "took all my pills", ""])


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=NAME, free=FREE, phrase=PHRASE)
async def test_no_patient_name_or_words_ever_reach_the_group(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, name: str, free: str, phrase: str
):
    counselor = getattr(h, "escalation_counselor", None)
    if counselor is None:
        counselor = await sup.add_counselor(h, fake, name="Casey")
        h.escalation_counselor = counselor  # type: ignore[attr-defined]
    u = await _patient(fake, db, clock, name=name, code=f"P-{next(_codes)}")
    await h.send(u, f"{free} {phrase}".strip())
    clock.advance(minutes=31)
    await h.tick()
    await h.send(counselor, "/flags", chat=h.group)
    async with db.session() as s:
        ids = list((await s.execute(select(Flag.id))).scalars())
    for fid in ids[-2:]:
        await h.send(counselor, f"/flag {fid}", chat=h.group)
    texts = sup.group_texts(h, fake)
    for t in texts:
        assert name not in t
        assert free.strip() not in t
        for word in free.split():
            if len(word) >= 8:
                assert word not in t


async def test_edited_messages_and_photo_captions_are_screened(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    first = await h.send(u, "rough day")
    assert not fake.sent(h.group.id)
    await h.push(fake.edit_text(u, first, "rough day. I used last night"))
    assert "use disclosed" in (fake.last(h.group.id).plain_text or "")
    await h.push(fake.send_photo(u, caption="took all my pills"))
    assert any("911" in (m.plain_text or "") and "Naloxone" in (m.plain_text or "") for m in fake.sent(u.id))
    assert "overdose" in (fake.last(h.group.id).plain_text or "")
    fake.assert_no_errors()


async def test_the_crisis_reply_goes_out_while_the_database_is_down(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    from contextlib import asynccontextmanager

    u = await _patient(fake, db, clock)

    @asynccontextmanager
    async def down():  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError("database down")
        yield  # pragma: no cover

    h.hub.db.transaction = down  # type: ignore[method-assign]
    h.hub.db.session = down  # type: ignore[method-assign]
    inc = fake.send_text(u, "I'm going to end it all tonight")
    await h.handled(inc.update_id)
    (reply,) = fake.sent(u.id)
    assert "988" in (reply.plain_text or "") and "Never Use Alone" not in (reply.plain_text or "")
    fake.assert_no_errors()


async def test_a_counselor_quoting_crisis_words_is_relayed_not_treated_as_a_crisis(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u = await _patient(fake, db, clock)
    dana = await sup.add_counselor(h, fake)
    await h.send(u, "/talk")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]
    await h.press(dana, post, f"fl:msg:{fid}")
    before = len(fake.sent(dana.id))
    await h.send(dana, "You said you might end it all tonight. I'm calling you in 5 minutes.")
    assert "end it all tonight" in (fake.last(u.id).plain_text or "")
    mine = [m.plain_text or "" for m in fake.sent(dana.id)[before:]]
    assert len(mine) == 1 and "Sent to P-1234" in mine[0]
    fake.assert_no_errors()


async def test_the_patients_plan_follows_the_crisis_reply(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    from bot.core.models import Patient
    from bot.recovery.models import PlanEntry

    u = await _patient(fake, db, clock)
    async with db.transaction() as s:
        pid = (await s.execute(select(Patient.id).where(Patient.telegram_id == u.id))).scalar_one()
        s.add(PlanEntry(patient_id=pid, section="people", text="My sister Ana", phone="+1 555 010 0200", position=0, created_at=clock.now(), updated_at=clock.now()))
    await h.send(u, "I'm going to end it all tonight")
    texts = [m.plain_text or "" for m in fake.sent(u.id)]
    assert "988" in texts[0]
    assert any("My sister Ana" in t and "+1 555 010 0200" in t for t in texts[1:])
    assert all("Ana" not in t for t in sup.group_texts(h, fake))
    fake.assert_no_errors()


async def test_oncall_and_the_flags_list_in_the_group(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    dana = await sup.add_counselor(h, fake)
    await h.send(dana, "/oncall", chat=h.group)
    assert "Nobody is on call" in (fake.last(h.group.id).plain_text or "")
    await h.send(dana, "/oncall me", chat=h.group)
    assert "On call now: Dana" in (fake.last(h.group.id).plain_text or "")
    await h.send(u, "I used last night")
    await h.send(u, "/talk")
    await h.send(dana, "/flags", chat=h.group)
    listing = fake.last(h.group.id)
    assert "P-1234" in (listing.plain_text or "") and "Jordan" not in (listing.plain_text or "")
    assert [d.split(":")[1] for d in listing.callback_data] == ["claim", "details", "claim", "details"]
    await h.send(u, "/flags")
    assert "only for the care team" in (fake.last(u.id).plain_text or "")
    clock.advance(minutes=30)
    await h.tick()
    assert "On call: Dana" in (fake.last(h.group.id).plain_text or "")
    fake.assert_no_errors()


async def test_a_followup_after_a_resolved_crisis(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    dana = await sup.add_counselor(h, fake)
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]
    await h.press(dana, post, f"fl:resolve:{fid}")
    prompt = fake.last(dana.id)
    await h.send(dana, "Spoke by phone; safe; appointment Monday")
    assert "Resolved by Dana" in (fake.sent_message(h.group.id, post.message_id).plain_text or "")
    qid = await h.press(dana, prompt, f"fl:resolve:{fid}")
    assert "already resolved" in (fake.callback_answer(qid) or {}).get("text", "")
    clock.advance(hours=24)
    await h.tick()
    fu = fake.last(u.id)
    assert "check in" in (fu.plain_text or "")
    ok_data = fu.callback_data[0]
    await h.press_button(u, fu, "Not great")
    assert "let your care team know" in (fake.last(u.id).plain_text or "")
    newest = fake.last(h.group.id)
    assert "P-1234" in (newest.plain_text or "") and f"Flag #{fid}" not in (newest.plain_text or "")
    assert fu.callback_data == []  # the answered question lost its buttons
    qid = await h.press(u, fu, ok_data)
    assert "already have your answer" in ((fake.callback_answer(qid) or {}).get("text") or "")
    fake.assert_no_errors()


async def test_a_counselor_still_writes_to_the_patient_after_resolving_with_a_note(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    """Typing the outcome note takes the counselor's next typed text; afterwards their text goes
    to the patient they are still talking with, never to the patient-facing "I can't chat" line."""
    u = await _patient(fake, db, clock)
    dana = await sup.add_counselor(h, fake)
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]
    await h.press(dana, post, f"fl:claim:{fid}")
    await h.press(dana, post, f"fl:msg:{fid}")
    await h.send(dana, "Hi, this is Dana. I'm here.")
    await h.press(dana, post, f"fl:resolve:{fid}")
    await h.send(dana, "Called, safe with family")
    assert "resolved" in (fake.last(dana.id).plain_text or "")

    await h.send(dana, "Also, bring your workbook on Thursday.")
    assert "bring your workbook" in (fake.last(u.id).plain_text or "")
    assert "Sent to P-1234" in (fake.last(dana.id).plain_text or "")
    await h.send(dana, "See you then.")  # and the next one too, without a button
    assert "See you then" in (fake.last(u.id).plain_text or "")
    assert all("program assistant" not in (m.plain_text or "") for m in fake.sent(dana.id))
    fake.assert_no_errors()


async def test_a_counselor_with_several_conversations_is_asked_to_choose(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    a = await _patient(fake, db, clock)
    b = await _patient(fake, db, clock, name="Riley", code="P-5678")
    dana = await sup.add_counselor(h, fake)
    for u in (a, b):
        await h.send(u, "I'm going to end it all tonight")
    flags = [m for m in fake.sent(h.group.id) if m.callback_data]
    for post in flags[:2]:
        fid = post.callback_data[0].split(":")[2]
        await h.press(dana, post, f"fl:msg:{fid}")
    async with db.transaction() as s:  # as after a resolve note: nothing waits for her text
        await state.clear(s, dana.id)
    await h.send(dana, "Hello?")
    said = fake.last(dana.id).plain_text or ""
    assert "P-1234" in said and "P-5678" in said and "Message patient" in said
    assert all("Hello?" not in (m.plain_text or "") for m in fake.sent(a.id) + fake.sent(b.id))
    fake.assert_no_errors()


async def test_staff_typing_with_nothing_waiting_get_a_staff_line(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    dana = await sup.add_counselor(h, fake)
    await h.send(dana, "hello")
    said = fake.last(dana.id).plain_text or ""
    assert "program assistant" not in said and "Message patient" in said
    fake.assert_no_errors()


async def test_every_promise_that_a_counselor_will_reach_out_is_the_same_sentence(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    """/talk, Talk to my counselor in /sos and the crisis reply say when a counselor will reach
    out in one wording (crisis.counselor_line from the configured office hours), open or closed,
    and never promise a time ("before 3:00 pm") the configuration cannot keep."""
    from bot.platform.content import get_content
    from bot.safety.crisis import counselor_line

    c = get_content()
    settings = h.hub.settings
    u = await _patient(fake, db, clock)
    for when in (datetime(2026, 3, 7, 8, 0, tzinfo=UTC), datetime(2026, 3, 9, 15, 0, tzinfo=UTC)):  # Sat 03:00, Mon 11:00 (NY)
        clock.set(when)
        line = counselor_line(
            "en", settings.office_hours, clock.now(), zone=settings.default_timezone, patient_zone="America/New_York", content=c
        )
        plain = re.sub(r"<[^>]+>", "", line)
        n = len(fake.sent(u.id))
        await h.send(u, "/talk")
        await h.send(u, "/sos")
        await h.press(u, fake.last(u.id), "sos:talk")
        await h.send(u, "I'm going to end it all tonight")
        said = [m.plain_text or "" for m in fake.sent(u.id)[n:]]
        talk = [x for x in said if "let your care team know you'd like to talk" in x or "knows you'd like to talk" in x]
        crisis = [x for x in said if "letting your care team know now" in x]
        assert len(talk) == 2 and crisis, said
        for text in (*talk, *crisis):
            assert plain in text, (plain, text)
            assert not re.search(r"before \d", text)
