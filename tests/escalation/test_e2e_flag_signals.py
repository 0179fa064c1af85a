"""Safety signals that must never be lost, end to end: the real Application over HTTP against the
fake Bot API (issue 11, items 1, 2 and 4).

- every category and severity the flag service knows reaches the counselors' group, and a flag
  whose words are missing still does (a PHQ-9 of 16, a MAT patient's "No" to medication);
- a new high or crisis trigger on a flag that is already open reaches the group again, starts
  re-notification over, and `/flags` lists flags by their latest trigger;
- the crisis DM step reaches every member of the counselors' group (a roster kept from
  chat_member updates and membership checks), and "nobody is on call" is said once a day.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.assessments.models import AssessmentResult
from bot.checkins.models import CheckinEntry
from bot.core.vocabulary import FLAG_SEVERITIES, Category, Severity
from bot.escalation.digest import KIND_DIGEST
from bot.escalation.models import Flag
from bot.escalation.rules import Workflow, load_rules
from bot.escalation.service import FlagResult, raise_flag
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import ScheduledItem
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.checkins_support import flags_of, make_patient
from tests.harness import BotHarness

MONDAY_10AM = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
_ids = itertools.count(1)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_10AM)


def text(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.plain_text or ""


def group_texts(h: BotHarness, fake: FakeTelegram) -> list[str]:
    return [text(m) for m in fake.sent(h.group.id)]


async def press(h: BotHarness, fake: FakeTelegram, user, prefix: str):  # type: ignore[no-untyped-def]
    """Press the button of the patient's latest message whose callback data starts with `prefix`."""
    msg = fake.last(user.id)
    data = next((d for d in msg.callback_data if d.startswith(prefix)), None)
    assert data is not None, (prefix, msg.callback_data, text(msg))
    return await h.press(user, msg, data)


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, code: str | None = None):  # type: ignore[no-untyped-def]
    n = next(_ids)
    u = fake.add_user(first_name=f"Zed{n}", started=True)
    pid = await sup.add_patient(db, clock.now(), telegram_id=u.id, code=code or f"P-{5000 + n}", first_name=f"Zed{n}")
    return u, pid


async def _raise(
    h: BotHarness, clock: FrozenClock, pid: int, *, category: str = "use_disclosure", severity: str = "high",
    source: str = "message", reason: str = "t",
) -> FlagResult:
    """A trigger raised now, as the bot's own sources raise it; its messages have gone out."""
    async with h.hub.db.transaction() as s:
        res = await raise_flag(
            s, h.hub.get(Workflow), patient_id=pid, category=category, severity=severity, reason=reason, source=source,
            now=clock.now(),
        )
    await h.outbox_idle()
    return res


async def _digest(h: BotHarness, fake: FakeTelegram, clock: FrozenClock) -> str:
    """Run the sweeper at the next daily digest and return what the group got."""
    async with h.hub.db.session() as s:
        due = (
            await s.execute(select(ScheduledItem.due_at).where(ScheduledItem.kind == KIND_DIGEST, ScheduledItem.status == "pending"))
        ).scalar_one()
    clock.set(due + timedelta(minutes=1))
    before = len(fake.sent(h.group.id))
    await h.tick()
    new = fake.sent(h.group.id)[before:]
    return "\n".join(text(m) for m in new)


# -- 1. every category and severity reaches the group ----------------------------------------


@pytest.mark.parametrize("severity", FLAG_SEVERITIES)
async def test_a_flag_of_every_category_reaches_the_group(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, severity: str
):
    c = get_content()
    codes: dict[str, str] = {}
    for i, category in enumerate(Category):
        code = f"P-{Severity(severity).rank()}{i:02d}"
        _, pid = await _patient(fake, db, clock, code=code)
        codes[category] = code
        async with h.hub.db.transaction() as s:
            res = await raise_flag(
                s, h.hub.get(Workflow), patient_id=pid, category=category, severity=severity, reason="test",
                source="checkin", now=clock.now(),
            )
        assert res.created
    h.hub.sender.wake()
    await h.outbox_idle()
    posts = group_texts(h, fake)
    if severity == "low" and not any(codes["talk_request"] in t for t in posts):
        # Low flags are listed in the daily digest rather than posted one by one.
        posts = [await _digest(h, fake, clock)]
    for category, code in codes.items():
        label = c.t(f"flags.category.{category}", "en")
        assert any(code in t and label in t for t in posts), (category, severity)
    async with db.session() as s:
        assert len((await s.execute(select(Flag))).scalars().all()) == len(Category)
    fake.assert_no_errors()


async def _checkin(h: BotHarness, fake: FakeTelegram, u, *, mood: str = "3", medication: str | None = None):  # type: ignore[no-untyped-def]
    await h.send(u, "/checkin")
    for prefix in (f"ci:a:mood:{mood}", "ci:a:craving:1", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:3"):
        await press(h, fake, u, prefix)
    if medication is not None:
        await press(h, fake, u, f"ci:a:medication:{medication}")
    await press(h, fake, u, "ci:skip:note")


async def test_a_phq9_total_of_16_is_saved_and_flagged(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Rae", started=True)
    p = await make_patient(db, clock.now(), telegram_id=u.id, code="P-0016", checkin_time=None)
    await _checkin(h, fake, u)
    offer = next(m for m in reversed(fake.sent(u.id)) if "as:start:phq9" in m.callback_data)
    await h.press(u, offer, "as:start:phq9")
    for i in range(1, 9):
        await press(h, fake, u, f"as:a:phq9:q{i}:2")
    await press(h, fake, u, "as:a:phq9:q9:0")
    await press(h, fake, u, "as:a:phq9:difficulty:")
    assert not any("went wrong" in text(m) for m in fake.sent(u.id))
    async with db.session() as s:
        result = (
            await s.execute(select(AssessmentResult).where(AssessmentResult.patient_id == p.id, AssessmentResult.instrument == "phq9"))
        ).scalar_one()
    assert (result.total, result.status) == (16, "done")
    assert ("depression", "moderate") in await flags_of(db, p.id)
    post = next(t for t in group_texts(h, fake) if "P-0016" in t)
    assert "depression" in post and "MODERATE" in post and "Rae" not in post
    fake.assert_no_errors()


async def test_a_mat_patient_answering_no_to_medication_keeps_the_checkins_and_is_flagged(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u = fake.add_user(first_name="Mo", started=True)
    # No daily prompt: only the check-ins the test starts.
    p = await make_patient(db, clock.now(), telegram_id=u.id, mat=True, code="P-0MAT", sobriety_date=date(2026, 2, 1), checkin_time=None)
    for day in range(2):
        await _checkin(h, fake, u, medication="not_taken")
        assert not any("went wrong" in text(m) for m in fake.sent(u.id))
        if day == 0:
            clock.advance(days=1)
    async with db.session() as s:
        entries = (await s.execute(select(CheckinEntry).where(CheckinEntry.patient_id == p.id))).scalars().all()
    assert len(entries) == 2 and all(e.medication == "not_taken" and e.completed_at is not None for e in entries)
    assert ("medication", "low") in await flags_of(db, p.id)
    posts = [t for t in group_texts(h, fake) if "P-0MAT" in t] or [await _digest(h, fake, clock)]
    assert any("P-0MAT" in t and "medication" in t for t in posts)
    fake.assert_no_errors()


# -- 2. a new trigger on an open flag ---------------------------------------------------------


async def test_a_crisis_hours_after_a_phq9_flag_reaches_the_group_again(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u, pid = await _patient(fake, db, clock, code="P-7001")
    _, other = await _patient(fake, db, clock, code="P-7002")
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    # 10:00: the PHQ-9 raises a high flag (item 9); nobody claims it; its re-notification runs.
    first = await _raise(
        h, clock, pid, category="suicide_self_harm", reason="phq9_item9_positive", source="assessment_phq9"
    )
    (post,) = [m for m in fake.sent(h.group.id) if "P-7001" in text(m)]
    clock.advance(minutes=30)
    await h.tick()
    assert "Still unclaimed after 30 min" in text(fake.last(h.group.id))
    # 12:00: another patient's flag.
    clock.advance(minutes=90)
    await _raise(h, clock, other, category="severe_craving", severity="moderate", source="checkin")
    # 13:51: the patient writes it.
    clock.set(MONDAY_10AM + timedelta(hours=3, minutes=51))
    before = len(fake.sent(h.group.id))
    await h.send(u, "I want to kill myself")
    new = fake.sent(h.group.id)[before:]
    async with db.session() as s:
        flag = await s.get(Flag, first.flag_id)
        assert flag is not None and flag.severity == "crisis" and flag.status == "open"
        assert len((await s.execute(select(Flag).where(Flag.patient_id == pid))).scalars().all()) == 1
    alert = next(m for m in new if "New trigger" in text(m))
    assert f"#{first.flag_id}" in text(alert) and "typed message" in text(alert) and "13:51" in text(alert)
    assert alert.reply_to_message_id == post.message_id
    assert "kill myself" not in text(alert).lower() and "Zed" not in text(alert), text(alert)
    assert [d.split(":")[1] for d in alert.callback_data][:2] == ["claim", "details"]
    # Re-notification starts over from 13:51: re-posted at 13:56, every counselor at 14:01.
    clock.advance(minutes=4)
    await h.tick()
    assert not any("Still unclaimed" in text(m) for m in fake.sent(h.group.id)[before:])
    clock.advance(minutes=1)
    await h.tick()
    assert "Still unclaimed after 5 min" in text(fake.last(h.group.id))
    clock.advance(minutes=5)
    await h.tick()
    assert any("unclaimed for 10 min" in text(m) for m in fake.sent(dana.id))
    # /flags: the flag with the newest trigger first, with the age of that trigger.
    await h.send(dana, "/flags", chat=h.group)
    listing = text(fake.last(h.group.id)).splitlines()
    items = [line for line in listing if line.startswith("#")]
    assert items[0].startswith(f"#{first.flag_id} ") and "P-7001" in items[0] and "last trigger 10 min ago" in items[0]
    assert "P-7002" in items[1] and "last trigger 2 h ago" in items[1]
    fake.assert_no_errors()


async def test_a_new_crisis_on_a_claimed_flag_reaches_the_group_and_the_holder(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u, pid = await _patient(fake, db, clock, code="P-7003")
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    first = await _raise(h, clock, pid, source="checkin")
    post = fake.last(h.group.id)
    await h.press(dana, post, f"fl:claim:{first.flag_id}")
    clock.advance(hours=2)
    before_group, before_dana = len(fake.sent(h.group.id)), len(fake.sent(dana.id))
    await _raise(h, clock, pid)
    assert any("New trigger" in text(m) and "typed message" in text(m) for m in fake.sent(h.group.id)[before_group:])
    assert any("which you hold" in text(m) for m in fake.sent(dana.id)[before_dana:])
    # A second message a minute later is recorded, not posted again.
    clock.advance(minutes=1)
    n = len(fake.sent(h.group.id))
    await _raise(h, clock, pid)
    assert len(fake.sent(h.group.id)) == n
    # Re-notification starts over for the holder too: Dana has not opened it since the trigger.
    clock.advance(minutes=29)
    await h.tick()
    assert "Dana holds this flag and has not opened it since" in text(fake.last(h.group.id))
    # The next trigger: this time Dana opens Details, and nobody is chased.
    clock.advance(minutes=30)
    await _raise(h, clock, pid)
    assert "New trigger" in text(fake.last(h.group.id))
    await h.press(dana, post, f"fl:details:{first.flag_id}")
    n = len(fake.sent(h.group.id))
    clock.advance(minutes=30)
    await h.tick()
    assert len(fake.sent(h.group.id)) == n
    fake.assert_no_errors()


# -- 4. every counselor in the group is messaged; "nobody on call" once a day ----------------


@pytest.mark.usefixtures("stub_detector")
async def test_a_group_member_without_a_role_gets_the_crisis_dm(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u, _ = await _patient(fake, db, clock, code="P-8001")
    lee = fake.add_user(first_name="Lee", started=True)  # joins the group: a chat_member update
    await h.push(fake.join(h.group, lee))
    kim = fake.add_user(first_name="Kim", started=True)  # was in the group before: found by a check
    h.group.members[kim.id] = "member"
    await h.send(kim, "/flags", chat=h.group)
    left = fake.add_user(first_name="Ex", started=True)  # joined, then left
    await h.push(fake.join(h.group, left))
    await h.push(fake.leave(h.group, left))
    from bot.core.models import GroupMember

    async with db.session() as s:
        roster = {m.telegram_id: m.is_member for m in (await s.execute(select(GroupMember))).scalars()}
    assert roster == {lee.id: True, kim.id: True, left.id: False}
    gone = fake.add_user(first_name="Gone", started=True)  # in the roster, then left while the bot was away
    await h.push(fake.join(h.group, gone))
    await h.stop()
    h.group.members[gone.id] = "left"
    await h.start()  # the roster is in the database, not only in memory; it is re-checked at start
    await h.send(u, "I'm going to end it all tonight")
    clock.advance(minutes=5)
    await h.tick()
    assert not any("unclaimed for" in text(m) for m in fake.sent(lee.id))
    clock.advance(minutes=5)
    await h.tick()
    for who in (lee, kim, h.admin):
        (dm,) = [m for m in fake.sent(who.id) if "unclaimed for 10 min" in text(m)]
        assert "P-8001" in text(dm) and "end it all" not in text(dm)
    for who in (left, gone):
        assert not any("unclaimed" in text(m) for m in fake.sent(who.id))
    fake.assert_no_errors()


@pytest.mark.usefixtures("stub_detector")
async def test_nobody_on_call_is_said_once_a_day(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    def reposts() -> list[str]:
        return [t for t in group_texts(h, fake) if "Still unclaimed" in t]

    for n, code in enumerate(("P-9001", "P-9002", "P-9003")):
        u, _ = await _patient(fake, db, clock, code=code)
        if n == 2:
            clock.advance(days=1)  # the next clinic day
        await h.send(u, "I'm going to end it all tonight")
        clock.advance(minutes=5)
        await h.tick()
    said = ["Nobody is on call" in t for t in reposts()]
    assert said == [True, False, True]
    fake.assert_no_errors()


@pytest.mark.usefixtures("stub_detector")
async def test_a_member_who_joins_while_the_bot_is_not_an_admin_is_on_the_roster(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    from bot.core.models import GroupMember

    h.group.bot_status = "member"  # no chat_member updates: only the join and leave service messages
    u, _ = await _patient(fake, db, clock, code="P-8002")
    sam = fake.add_user(first_name="Sam", started=True)
    assert fake.join(h.group, sam) is None
    ex = fake.add_user(first_name="Ex", started=True)
    fake.join(h.group, ex)
    fake.leave(h.group, ex)
    await h.settle()
    async with db.session() as s:
        roster = {m.telegram_id: m.is_member for m in (await s.execute(select(GroupMember))).scalars()}
    assert roster == {sam.id: True, ex.id: False}
    await h.send(u, "I'm going to end it all tonight")
    clock.advance(minutes=10)
    await h.tick()
    assert any("unclaimed for 10 min" in text(m) for m in fake.sent(sam.id))
    assert not any("unclaimed" in text(m) for m in fake.sent(ex.id))
    fake.assert_no_errors()


async def test_a_worse_crisis_minutes_after_the_first_reaches_the_group(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    """A second crisis message a few minutes after the first, on the same unclaimed crisis flag,
    is a new alert (only a burst of lines within the quiet window is one)."""
    u, pid = await _patient(fake, db, clock, code="P-7010")
    await h.send(u, "I took a lot of pills and feel weird")
    async with db.session() as s:
        (flag,) = (await s.execute(select(Flag).where(Flag.patient_id == pid))).scalars().all()
    assert flag.severity == "crisis"
    quiet = load_rules().new_trigger.quiet_minutes
    clock.advance(minutes=quiet + 3)
    before = len(fake.sent(h.group.id))
    await h.send(u, "I took more pills and I can barely breathe")
    new = [text(m) for m in fake.sent(h.group.id)[before:]]
    assert any("New trigger" in t and f"#{flag.id}" in t for t in new), new
    assert not any("barely breathe" in t for t in new)
    fake.assert_no_errors()


async def test_self_harm_with_intent_denied_on_a_card_already_posted_is_announced(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    """An edit notifies nobody: a self-harm flag (moderate, intent denied) added to the patient's
    card for the day comes with a new message in reply to the card."""
    u, pid = await _patient(fake, db, clock, code="P-7011")
    await _raise(h, clock, pid, category="use_disclosure", severity="high", source="checkin")
    (card,) = fake.sent(h.group.id)
    clock.advance(hours=1)
    await h.send(u, "I cut myself last night")
    await h.press_button(u, fake.last(u.id), "No")
    new = fake.sent(h.group.id)[1:]
    assert len(new) == 1, [text(m) for m in new]
    assert new[0].reply_to_message_id == card.message_id
    assert "P-7011" in text(new[0]) and "MODERATE" in text(new[0]) and "cut" not in text(new[0])
    assert "2 flags today" in text(fake.sent_message(h.group.id, card.message_id))
    # A moderate flag outside the acute categories only changes the card.
    rules = load_rules().card
    assert not rules.alerts("moderate", "severe_craving") and rules.alerts("moderate", "suicide_self_harm")
    fake.assert_no_errors()
