"""The safety flow end to end, with the real risk detector: every path from a risky message to the
counselors (yes, no, no answer, a failing database), the resources each kind of crisis gets, the
counselors' hours in the patient's own time zone, and what a patient in a live conversation with
a counselor is told."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from bot.core.models import Patient
from bot.escalation.models import Flag, FlagEvent
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.safety.models import SafetyCheck
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

SATURDAY_3AM = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)  # 03:00 in New York, 09:00 in Berlin


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(SATURDAY_3AM)


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, *, zone: str = "America/New_York"):  # type: ignore[no-untyped-def]
    u = fake.add_user(first_name="Jordan", started=True)
    pid = await sup.add_patient(db, clock.now(), telegram_id=u.id)
    if zone != "America/New_York":
        async with db.transaction() as s:
            await s.execute(update(Patient).where(Patient.id == pid).values(timezone=zone))
    return u


async def _flags(db: Database) -> list[Flag]:
    async with db.session() as s:
        return list((await s.execute(select(Flag))).scalars())


async def _reasons(db: Database) -> list[str]:
    async with db.session() as s:
        return [r or "" for r in (await s.execute(select(FlagEvent.reason).where(FlagEvent.kind == "trigger"))).scalars()]


def _texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.plain_text or "" for m in fake.sent(chat_id)]


# -- "No" and silence still reach the counselors ----------------------------------------------


async def test_self_harm_then_no_is_a_moderate_flag_and_gets_its_own_followup(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I cut myself last night")
    q = fake.last(u.id)
    text = q.plain_text or ""
    # Its own follow-up: is it serious (when to call 911), wound care, the /sos tools ...
    assert "911" in text and "pressure" in text
    assert "sos:menu" in q.callback_data
    # ... and the suicide question too.
    assert "ending your life" in text
    assert fake.sent(h.group.id) == []  # nothing posted while the question waits
    await h.press_button(u, q, "No")
    (flag,) = await _flags(db)
    assert flag.category == "suicide_self_harm" and flag.severity == "moderate" and flag.status == "open"
    assert "self-harm disclosed; intent denied" in await _reasons(db)
    (post,) = fake.sent(h.group.id)
    assert "MODERATE" in (post.plain_text or "") and "P-1234" in (post.plain_text or "")
    assert "cut myself" not in (post.plain_text or "")
    after = fake.last(u.id)
    assert "care team" in (after.plain_text or "") and "sos:menu" in after.callback_data
    # The timeout was cancelled: no second trigger later.
    clock.advance(minutes=30)
    await h.tick()
    assert len(await _reasons(db)) == 1
    fake.assert_no_errors()


async def test_a_wish_not_to_wake_up_then_no_still_reaches_the_counselors(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I don't want to wake up")
    q = fake.last(u.id)
    assert "ending your life" in (q.plain_text or "")
    assert "pressure" not in (q.plain_text or "")  # wound care is for self-harm only
    await h.press_button(u, q, "No")
    (flag,) = await _flags(db)
    assert flag.severity == "moderate" and flag.category == "suicide_self_harm"
    assert "wish to be dead; intent denied" in await _reasons(db)
    assert len(fake.sent(h.group.id)) == 1
    fake.assert_no_errors()


async def test_no_answer_at_all_reaches_the_counselors_even_for_a_moderate_signal(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I hate myself")
    assert "ending your life" in (fake.last(u.id).plain_text or "")
    clock.advance(minutes=4)
    await h.tick()
    assert await _flags(db) == []
    clock.advance(minutes=1)
    await h.tick()
    (flag,) = await _flags(db)
    assert flag.severity == "moderate" and flag.source == "safety_timeout"
    assert len(fake.sent(h.group.id)) == 1
    fake.assert_no_errors()


async def test_no_while_the_database_fails_is_still_flagged_when_the_question_times_out(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u = await _patient(fake, db, clock)
    await h.send(u, "I hate myself")
    q = fake.last(u.id)
    real = h.hub.db.transaction

    @asynccontextmanager
    async def down():  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError("database down")
        yield  # pragma: no cover

    h.hub.db.transaction = down  # type: ignore[method-assign]
    await h.press_button(u, q, "No")
    h.hub.db.transaction = real  # type: ignore[method-assign]
    assert await _flags(db) == []
    clock.advance(minutes=5)
    await h.tick()
    (flag,) = await _flags(db)
    assert flag.severity == "moderate"
    assert len(fake.sent(h.group.id)) == 1


async def test_no_after_the_timeout_already_flagged_adds_the_answer(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I cut myself last night")
    q = fake.last(u.id)
    clock.advance(minutes=5)
    await h.tick()
    (flag,) = await _flags(db)
    assert flag.severity == "high"
    assert await _reasons(db) == ["self-harm disclosed; no answer to the safety question"]
    await h.press_button(u, q, "No")
    (flag,) = await _flags(db)
    assert flag.severity == "high"  # a later "no" never lowers what is open
    assert "self-harm disclosed; intent denied" in await _reasons(db)
    async with db.session() as s:
        (check,) = (await s.execute(select(SafetyCheck))).scalars()
    assert check.answer == "no"


async def test_a_second_disclosure_while_the_question_waits_is_kept(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I don't want to wake up")
    q = fake.last(u.id)
    await h.send(u, "I cut myself last night")
    care = fake.last(u.id)
    # Not asked twice, but the self-harm gets its follow-up.
    assert "pressure" in (care.plain_text or "") and care.callback_data == ["sos:menu"]
    assert sum("ending your life" in t for t in _texts(fake, u.id)) == 1
    await h.press_button(u, q, "No")
    (flag,) = await _flags(db)
    assert flag.severity == "moderate"
    assert "self-harm disclosed; intent denied" in await _reasons(db)
    fake.assert_no_errors()


async def test_self_harm_told_as_a_crisis_gets_the_crisis_reply_then_wound_care(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I cut again last night")
    texts = _texts(fake, u.id)
    assert "988" in texts[0].splitlines()[0]
    assert "pressure" in texts[1] and "911" in texts[1]
    assert fake.sent(u.id)[1].callback_data == ["sos:menu"]
    (flag,) = await _flags(db)
    assert flag.severity == "crisis"
    fake.assert_no_errors()


async def test_yes_gets_the_suicide_resources_at_once(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    await h.send(u, "I don't want to wake up")
    await h.press_button(u, fake.last(u.id), "Yes")
    texts = _texts(fake, u.id)
    crisis = next(t for t in texts if "988" in t)
    assert crisis.splitlines()[0].count("988") and "Never Use Alone" not in crisis
    (flag,) = await _flags(db)
    assert flag.severity == "crisis"
    fake.assert_no_errors()


async def test_a_yes_button_without_a_category_still_gets_resources(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    """Buttons sent before "yes" carried the category (sf:y:<id>), and forged ones: the default
    list, 988 first."""
    u = await _patient(fake, db, clock)
    await h.send(u, "I don't want to wake up")
    q = fake.last(u.id)
    check_id = q.callback_data[0].split(":")[2]
    await h.press(u, q, f"sf:y:{check_id}:not_a_category")
    crisis = next(t for t in _texts(fake, u.id) if "988" in t)
    assert "988" in crisis.splitlines()[0] and "Never Use Alone" not in crisis
    (flag,) = await _flags(db)
    assert flag.severity == "crisis"
    await h.press(u, q, f"sf:y:{check_id}")
    assert "988" in _texts(fake, u.id)[-1].splitlines()[0]
    assert len(await _reasons(db)) == 1  # answered once
    fake.assert_no_errors()


# -- the right resources for the situation -----------------------------------------------------


@pytest.mark.parametrize(
    ("words", "first", "present", "absent"),
    [
        ("I'm going to end it all tonight", "988", ["911", "Crisis Text Line"], ["Never Use Alone", "88788"]),
        ("I overdosed, I can't breathe", "911", ["Naloxone", "Never Use Alone", "blue"], ["88788"]),
        # An overdose told with words of suicide: 911 first, 988 too, never "before you use".
        ("I took all my pills because I want to die", "911", ["988", "Signs of an overdose"], ["Never Use Alone"]),
        (
            "he is hitting me right now and I'm scared he will kill me",
            "911",
            ["1-800-799-7233", "START to 88788"],
            ["Never Use Alone"],
        ),
        ("I'm going to kill my neighbor tonight", "911", ["988"], ["Never Use Alone", "88788"]),
    ],
)
async def test_each_crisis_gets_its_own_resources_first_and_short(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, words: str, first: str, present: list[str], absent: list[str]
):
    u = await _patient(fake, db, clock)
    await h.send(u, words)
    reply = _texts(fake, u.id)[0]
    assert first in reply.splitlines()[0]
    for needle in present:
        assert needle in reply
    for needle in absent:
        assert needle not in reply
    assert len(reply) <= 700
    fake.assert_no_errors()


# -- counselors' hours in the patient's own zone -----------------------------------------------


async def test_a_patient_in_berlin_is_told_the_counselors_hours_in_berlin_time(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock, zone="Europe/Berlin")
    await h.send(u, "I'm going to end it all tonight")
    follow = " ".join(_texts(fake, u.id)[1:])
    # Monday 9 am in New York (summer time from 8 March) is Monday 2 pm in Berlin (not yet).
    assert "Monday at 2:00 pm" in follow and "Europe/Berlin" in follow
    assert "9:00 am" not in follow
    await h.send(u, "/talk")
    talk = fake.last(u.id).plain_text or ""
    assert "Monday at 2:00 pm" in talk and "Europe/Berlin" in talk and "9:00 am" not in talk
    # The toolbox's "talk to my counselor" tells it the same way.
    await h.send(u, "/sos")
    await h.press(u, fake.last(u.id), "sos:talk")
    sos_talk = fake.last(u.id).plain_text or ""
    assert "Monday at 2:00 pm" in sos_talk and "Europe/Berlin" in sos_talk
    fake.assert_no_errors()


async def test_in_office_hours_the_end_of_the_day_is_in_the_patients_time(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))  # Tuesday 10:00 in New York, 07:00 in Los Angeles
    u = await _patient(fake, db, clock, zone="America/Los_Angeles")
    await h.send(u, "/talk")
    talk = fake.last(u.id).plain_text or ""
    assert "2:00 pm" in talk and "America/Los_Angeles" in talk and "5:00 pm" not in talk


# -- a live conversation with a counselor ------------------------------------------------------


async def test_during_a_live_conversation_nobody_says_the_earliest_is_monday(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    await h.send(u, "/talk")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]
    await h.press(dana, post, f"fl:msg:{fid}")
    await h.send(dana, "Hi Jordan, it's Dana. I'm here now.")
    before = len(fake.sent(u.id))
    await h.send(u, "I'm going to end it all tonight")
    mine = _texts(fake, u.id)[before:]
    assert mine and "988" in mine[0]
    joined = " ".join(mine)
    assert "earliest" not in joined and "Monday" not in joined and "not working" not in joined
    assert "talking with you" in joined
    # Dana sees the message in the conversation.
    assert "end it all tonight" in (fake.last(dana.id).plain_text or "")
    before = len(fake.sent(u.id))
    await h.send(u, "/talk")
    talk = " ".join(_texts(fake, u.id)[before:])
    assert "earliest" not in talk and "Monday" not in talk and "talking with you" in talk
    await h.send(u, "/sos")
    before = len(fake.sent(u.id))
    await h.press(u, fake.last(u.id), "sos:talk")
    sos_talk = " ".join(_texts(fake, u.id)[before:])
    assert "talking with you" in sos_talk and "Monday" not in sos_talk and "back" not in sos_talk
    fake.assert_no_errors()
