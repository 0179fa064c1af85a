"""PHQ-9 item 9 end to end: the real Application over HTTP against the fake Bot API.

Item 9 above zero reaches the counselors at once, stops the questionnaire for a short follow-up
in the style of the Columbia Protocol screener (C-SSRS screen), whose grade sets the flag's
severity and what the patient is told; the rest of the questionnaire is finished later, without
the follow-up again. Every band of the total is tried with item 9 at 0-3, and the GAD-7.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.assessments.models import AssessmentResult
from bot.assessments.rules import FollowupGrade, SuicideFollowup, assessment_content_for
from bot.escalation.models import FlagEvent
from bot.platform.clock import FrozenClock
from bot.platform.content import Content, get_content
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.checkins_support import flags_of, make_patient
from tests.harness import BotHarness

C: Content = get_content()
CLIN = assessment_content_for(C)
PHQ9 = CLIN.phq9()
GAD7 = CLIN.gad7()
PHQ9_RULES = CLIN.rules.for_instrument("phq9")
assert PHQ9_RULES is not None and PHQ9_RULES.suicide_followup is not None
FOLLOWUP: SuicideFollowup = PHQ9_RULES.suicide_followup
ITEM9 = PHQ9.item(FOLLOWUP.item)
ITEM9_VALUES = [int(o.value) for o in ITEM9.options]  # 0-3
SEVERITY_LABEL = {"crisis": "CRISIS", "high": "HIGH", "moderate": "MODERATE", "low": "LOW"}
MONDAY_9AM_NY = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # counselors work until 17:00


def plain(text: str) -> str:
    """What a person reads of a message in content (tags gone, entities read)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def t(key: str, **kw: object) -> str:
    return plain(C.t(key, "en", **kw))


@dataclass(frozen=True)
class Pattern:
    """Answers to the follow-up, the questions the screener's branching asks, the grade."""

    name: str
    answers: dict[str, bool]
    asked: tuple[str, ...]
    severity: str
    said: str  # what counselors read after "C-SSRS: "


# In the screener's order: wish to be dead, thoughts, (how, intent, plan only after thoughts),
# preparation in the last 3 months.
PATTERNS = [
    Pattern("passive_only", {"wish_dead": True}, ("wish_dead", "thoughts", "preparation"), "high", "wish to be dead"),
    Pattern(
        "thoughts_only",
        {"wish_dead": True, "thoughts": True},
        ("wish_dead", "thoughts", "method", "intent", "plan", "preparation"),
        "high",
        "wish to be dead, thoughts",
    ),
    Pattern(
        "method",
        {"wish_dead": True, "thoughts": True, "method": True},
        ("wish_dead", "thoughts", "method", "intent", "plan", "preparation"),
        "crisis",
        "wish to be dead, thoughts, method",
    ),
    Pattern(
        "intent",
        {"thoughts": True, "intent": True},
        ("wish_dead", "thoughts", "method", "intent", "plan", "preparation"),
        "crisis",
        "thoughts, intent",
    ),
    Pattern(
        "plan",
        {"wish_dead": True, "thoughts": True, "method": True, "plan": True},
        ("wish_dead", "thoughts", "method", "intent", "plan", "preparation"),
        "crisis",
        "wish to be dead, thoughts, method, plan",
    ),
    Pattern(
        "preparation",
        {"preparation": True},
        ("wish_dead", "thoughts", "preparation"),
        "crisis",
        "preparation in the last 3 months",
    ),
    Pattern("all_no", {}, ("wish_dead", "thoughts", "preparation"), "high", "all no"),
]
BY_NAME = {p.name: p for p in PATTERNS}


def _grade_of(p: Pattern) -> FollowupGrade:
    return FOLLOWUP.grade({q: p.answers.get(q, False) for q in p.asked})


def test_the_patterns_cover_every_question_and_grade() -> None:
    """Driven from the rules: a new question or grade cannot go untested."""
    assert {q for p in PATTERNS for q in p.answers} == {q.id for q in FOLLOWUP.questions}
    assert {_grade_of(p).id for p in PATTERNS} == {g.id for g in FOLLOWUP.grades}
    assert {p.severity for p in PATTERNS} == {g.severity for g in FOLLOWUP.grades}
    for p in PATTERNS:
        assert _grade_of(p).severity == p.severity, p.name


# -- driving the bot ---------------------------------------------------------------------------


def _text(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.plain_text or ""


async def _press(h: BotHarness, fake: FakeTelegram, user, data: str):  # type: ignore[no-untyped-def]
    """Press a button that the bot's newest message carries."""
    msg = fake.last(user.id)
    assert data in msg.callback_data, (data, msg.callback_data, _text(msg))
    await h.press(user, msg, data)


async def _checkin_to_offer(h: BotHarness, fake: FakeTelegram, user) -> None:  # type: ignore[no-untyped-def]
    await h.send(user, "/checkin")
    for data in ("ci:a:mood:3", "ci:a:craving:1", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:3", "ci:skip:note"):
        await _press(h, fake, user, data)


def _answers(total: int, item9: int, n_items: int = 9) -> dict[str, int]:
    """PHQ-9 answers with this total and item 9 (the rest spread over items 1-8)."""
    rest = total - item9
    assert 0 <= rest <= 3 * (n_items - 1)
    values = {f"q{i}": 0 for i in range(1, n_items)}
    for i in range(1, n_items):
        values[f"q{i}"] = min(3, rest)
        rest -= values[f"q{i}"]
    return values | {"q9": item9}


async def _phq9_up_to_item9(h: BotHarness, fake: FakeTelegram, user, values: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    await _checkin_to_offer(h, fake, user)
    await _press(h, fake, user, "as:start:phq9")
    assert "Pfizer" in _text(fake.last(user.id))
    for item in PHQ9.items:
        if item.id not in values:
            break
        await _press(h, fake, user, f"as:a:phq9:{item.id}:{values[item.id]}")


async def _answer_followup(h: BotHarness, fake: FakeTelegram, user, p: Pattern) -> list[str]:  # type: ignore[no-untyped-def]
    """Answer each question the bot asks, by the pattern; the question ids asked, in order."""
    asked: list[str] = []
    while True:
        msg = fake.last(user.id)
        data = [d for d in msg.callback_data if d.startswith("as:f:phq9:")]
        if not data:
            return asked
        qid = data[0].split(":")[3]
        assert t(f"assessments.followup.questions.{qid}") in _text(msg)
        assert msg.button_texts == [t("assessments.followup.yes_button"), t("assessments.followup.no_button")]
        asked.append(qid)
        await h.press(user, msg, f"as:f:phq9:{qid}:{'y' if p.answers.get(qid) else 'n'}")


def _group_texts(h: BotHarness, fake: FakeTelegram) -> list[str]:
    return [_text(m) for m in fake.sent(h.group.id)]


async def _reasons(db: Database, patient_id: int, category: str) -> list[tuple[str, str]]:
    from bot.escalation.models import Flag

    async with db.session() as s:
        rows = await s.execute(
            select(FlagEvent.severity, FlagEvent.reason)
            .join(Flag, Flag.id == FlagEvent.flag_id)
            .where(Flag.patient_id == patient_id, Flag.category == category, FlagEvent.kind == "trigger")
            .order_by(FlagEvent.id)
        )
        return [(str(a), str(b)) for a, b in rows]


async def _row(db: Database) -> AssessmentResult:
    async with db.session() as s:
        return (
            await s.execute(select(AssessmentResult).where(AssessmentResult.instrument == "phq9"))
        ).scalar_one()


def _band_flags(values: dict[str, int]) -> list[tuple[str, str]]:
    """(category, severity) of the rules on the total (not item 9's), from the rules themselves."""
    from bot.assessments.rules import score_assessment

    score = score_assessment(PHQ9, values)
    return [(f.category, f.severity) for f in score.flags if f.action != "suicide_followup"]


# -- item 9 above zero, every follow-up pattern ------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_9AM_NY)


@pytest.mark.parametrize("item9", [v for v in ITEM9_VALUES if v > 0])
@pytest.mark.parametrize("pattern", [p.name for p in PATTERNS])
async def test_item9_followup_grades_the_flag_and_stops_the_questionnaire(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, item9: int, pattern: str
):
    p = BY_NAME[pattern]
    u = fake.add_user(first_name="Rae", started=True)
    patient = await make_patient(db, clock.now(), telegram_id=u.id, code="P-4242")
    values = _answers(8, item9)
    await _phq9_up_to_item9(h, fake, u, values)

    # The item-9 answer is acknowledged in its own words, and the first follow-up question asked.
    msg = fake.last(u.id)
    assert t("assessments.followup.intro") in _text(msg)
    assert "988" not in _text(msg)  # not the acute crisis script
    # The counselors hear of it at once, before the follow-up is answered.
    assert await flags_of(db, patient.id) == [("suicide_self_harm", "high")]
    assert any("HIGH" in x and "P-4242" in x and "suicide or self-harm" in x for x in _group_texts(h, fake))

    before = len(fake.sent(u.id))
    asked = await _answer_followup(h, fake, u, p)
    assert tuple(asked) == p.asked

    # What the patient reads now: thanks, then the crisis reply or a counselor today and 988,
    # then the questionnaire stops with a button to finish it later.
    texts = [_text(m) for m in fake.sent(u.id)]
    new = texts[before:]
    assert t("assessments.followup.thanks") in texts[before - 1]
    if p.severity == "crisis":
        # The one crisis-reply builder, with the resources for suicide or self-harm.
        from bot.safety import crisis

        assert plain(crisis.head("en", "us", "suicide_self_harm", content=C)) in new[0] and "988" in new[0]
    else:
        assert "988" in new[0] and "911" in new[0]
        # Open now: the same promise as /talk and the crisis reply (as soon as they can, with the
        # end of office hours told in the patient's zone), never a time the clinic cannot keep.
        assert plain(str(C.raw("crisis.reach.now", "en")).split("{until}")[0]) in new[0]
        assert not re.search(r"before \d", new[0])
        assert "America/New_York" in new[0]
        assert t("crisis.intro") not in new[0]
    stop = fake.last(u.id)
    assert t("assessments.followup.stopped") in _text(stop)
    assert stop.callback_data == ["as:resume:phq9"]
    assert not any("10 of 10" in x for x in texts)  # the rest is not asked now

    # One flag, with the grade's severity and a reason without the patient's words.
    assert await flags_of(db, patient.id) == [("suicide_self_harm", p.severity)]
    reasons = await _reasons(db, patient.id, "suicide_self_harm")
    assert reasons[-1] == (p.severity, f"PHQ-9 item 9 = {item9}; C-SSRS: {p.said}")
    group = _group_texts(h, fake)
    assert any(SEVERITY_LABEL[p.severity] in x and "P-4242" in x for x in group)
    assert not any("Rae" in x for x in group)
    row = await _row(db)
    assert row.status == "open" and row.step == "difficulty"
    assert row.answers is not None and row.answers["q9"]["v"] == item9
    assert row.total == 8 and row.band == "mild"  # the score is kept: every scored item answered

    # Later: the button finishes the rest, without the follow-up again and without a new flag.
    await h.press(u, stop, "as:resume:phq9")
    resumed = fake.last(u.id)
    assert "10 of 10" in _text(resumed) and not any(d.startswith("as:f:") for d in resumed.callback_data)
    await _press(h, fake, u, "as:a:phq9:difficulty:1")
    assert PHQ9.closing is not None and plain(PHQ9.closing) in _text(fake.last(u.id))
    assert await flags_of(db, patient.id) == [("suicide_self_harm", p.severity)]
    assert len(await _reasons(db, patient.id, "suicide_self_harm")) == 2
    row = await _row(db)
    assert row.status == "done" and row.total == 8 and row.answers["difficulty"]["v"] == 1  # type: ignore[index]
    # The button once more, when it is finished: said so, and no new questionnaire.
    await h.press(u, stop, "as:resume:phq9")
    assert t("assessments.already_done") in _text(fake.sent_message(u.id, stop.message_id))
    async with db.session() as s:
        assert len((await s.execute(select(AssessmentResult))).scalars().all()) == 1
    fake.assert_no_errors()


async def test_a_stale_followup_button_is_answered_kindly_and_changes_nothing(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u = fake.add_user(first_name="Kai", started=True)
    patient = await make_patient(db, clock.now(), telegram_id=u.id)
    await _phq9_up_to_item9(h, fake, u, _answers(5, 1))
    first = fake.last(u.id)
    await h.press(u, first, "as:f:phq9:wish_dead:n")
    asked = fake.sent_message(u.id, first.message_id).callback_data
    # The same question again (an old message), a question not asked yet: the follow-up goes on
    # at the question it is on. A forged answer, another questionnaire: expired.
    for data, expired in (
        ("as:f:phq9:wish_dead:y", False), ("as:f:phq9:plan:y", False),
        ("as:f:phq9:thoughts:maybe", True), ("as:f:nope:thoughts:y", True),
    ):
        qid = fake.press(u, first, data)
        await h.settle()
        answered = fake.callback_answer(qid)
        assert answered is not None
        assert answered.get("text") == (t("common.button_expired") if expired else None), data
        assert fake.sent_message(u.id, first.message_id).callback_data == asked, data
    assert await flags_of(db, patient.id) == [("suicide_self_harm", "high")]
    row = await _row(db)
    assert row.answers is not None and row.answers["_followup"]["a"] == {"wish_dead": False}
    # The same question shown again is no change to Telegram; nothing else was refused.
    assert all("not modified" in e.description for e in fake.errors)


async def test_stopped_inside_the_followup_it_resumes_there_with_its_words(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    u = fake.add_user(first_name="Lee", started=True)
    patient = await make_patient(db, clock.now(), telegram_id=u.id)
    await _phq9_up_to_item9(h, fake, u, _answers(12, 3))
    await h.press(u, fake.last(u.id), "as:f:phq9:wish_dead:y")
    # The patient walks away; the next day's check-in offers the questionnaire again.
    clock.advance(days=1)
    await _checkin_to_offer(h, fake, u)
    await _press(h, fake, u, "as:start:phq9")
    msg = fake.last(u.id)
    assert t("assessments.followup.intro") in _text(msg)
    assert t("assessments.followup.questions.thoughts") in _text(msg)
    asked = await _answer_followup(h, fake, u, BY_NAME["intent"])
    assert asked == ["thoughts", "method", "intent", "plan", "preparation"]
    assert await flags_of(db, patient.id) == [("suicide_self_harm", "crisis")]
    assert (await _reasons(db, patient.id, "suicide_self_harm"))[-1] == (
        "crisis",
        "PHQ-9 item 9 = 3; C-SSRS: wish to be dead, thoughts, intent",
    )
    fake.assert_no_errors()


async def test_after_hours_the_same_day_reply_is_honest_about_when(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    clock.set(datetime(2026, 3, 6, 23, 0, tzinfo=UTC))  # Friday 18:00 in New York
    u = fake.add_user(first_name="Ari", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await _phq9_up_to_item9(h, fake, u, _answers(3, 1))
    await _answer_followup(h, fake, u, BY_NAME["passive_only"])
    texts = [_text(m) for m in fake.sent(u.id)]
    (same_day,) = [x for x in texts if t("assessments.followup.lifeline") in x]
    # Closed until Monday: said so, in the patient's zone, never "today".
    assert plain(str(C.raw("crisis.reach.later", "en")).split("{when}")[0]) in same_day
    assert "Monday at 9" in same_day.replace("09", "9") and "America/New_York" in same_day
    assert "today" not in same_day
    fake.assert_no_errors()


async def test_unfinished_questionnaire_is_offered_after_the_next_checkin_prompt(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    """The sweeper path: the next day's prompt, the check-in, the offer, the rest of the PHQ-9."""
    u = fake.add_user(first_name="Bo", started=True)
    patient = await make_patient(db, clock.now(), telegram_id=u.id)
    async with h.hub.db.transaction() as s:
        await h.hub.lifecycle.activated(s, patient.id, clock.now())
    values = _answers(21, 2)
    await _phq9_up_to_item9(h, fake, u, values)
    await _answer_followup(h, fake, u, BY_NAME["all_no"])
    assert sorted(await flags_of(db, patient.id)) == sorted([("suicide_self_harm", "high"), *_band_flags(values)])
    clock.set(MONDAY_9AM_NY + timedelta(days=1))
    await h.tick()
    assert "check-in" in _text(fake.last(u.id))
    await _checkin_to_offer(h, fake, u)
    offer = fake.last(u.id)
    assert "PHQ-9" in _text(offer)
    await h.press(u, offer, "as:start:phq9")
    assert "10 of 10" in _text(fake.last(u.id))
    await _press(h, fake, u, "as:a:phq9:difficulty:2")
    row = await _row(db)
    assert row.status == "done" and row.total == 21 and row.band == "severe"
    # Nothing raised twice: the total's flag went when the follow-up ended.
    assert sorted(await flags_of(db, patient.id)) == sorted([("suicide_self_harm", "high"), *_band_flags(values)])
    fake.assert_no_errors()


# -- every band with item 9 at 0-3, and the GAD-7 -----------------------------------------------


def _band_cases() -> list[tuple[str, int, int]]:
    """Each band with each item-9 value, at the band's lower or upper edge in turn."""
    out = []
    for band in PHQ9_RULES.bands:
        for item9 in ITEM9_VALUES:
            highest = min(band.max, 3 * (len(PHQ9.scored_items) - 1) + item9)
            total = max(band.min, item9) if item9 % 2 == 0 else highest
            out.append((band.id, total, item9))
    return out


@pytest.mark.parametrize(("band", "total", "item9"), _band_cases())
async def test_phq9_every_band_with_item9(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, band: str, total: int, item9: int
):
    u = fake.add_user(first_name="Mo", started=True)
    patient = await make_patient(db, clock.now(), telegram_id=u.id, code="P-5151")
    values = _answers(total, item9)
    await _phq9_up_to_item9(h, fake, u, values)
    expected = _band_flags(values)
    if item9 > 0:
        await _answer_followup(h, fake, u, BY_NAME["all_no"])
        expected = [("suicide_self_harm", "high"), *expected]
        assert t("assessments.followup.stopped") in _text(fake.last(u.id))
        await h.press(u, fake.last(u.id), "as:resume:phq9")
    assert "10 of 10" in _text(fake.last(u.id))
    await _press(h, fake, u, "as:a:phq9:difficulty:0")
    assert PHQ9.closing is not None and plain(PHQ9.closing) in _text(fake.last(u.id))
    row = await _row(db)
    assert (row.status, row.total, row.band) == ("done", total, band)
    assert sorted(await flags_of(db, patient.id)) == sorted(expected)
    group = _group_texts(h, fake)
    for category, severity in expected:
        label = C.t(f"flags.category.{category}", "en")
        if severity != "low":
            assert any(SEVERITY_LABEL[severity] in x and label in x and "P-5151" in x for x in group), (category, group)
    if not expected:
        assert not [x for x in group if "P-5151" in x]
    assert not any("went wrong" in _text(m).lower() for m in fake.sent(u.id))
    fake.assert_no_errors()


@pytest.mark.parametrize("total", [15, 18, 21])
async def test_gad7_severe_is_flagged(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, total: int):
    u = fake.add_user(first_name="Jo", started=True)
    patient = await make_patient(db, clock.now(), telegram_id=u.id, code="P-6161")
    from bot.assessments.rules import score_assessment

    values = _answers(total, 0, n_items=len(GAD7.scored_items) + 1)
    values = {f"q{i}": values[f"q{i}"] for i in range(1, len(GAD7.scored_items) + 1)}
    expected = [(f.category, f.severity) for f in score_assessment(GAD7, values).flags]
    assert expected  # GAD-7 of 15 or more is flagged
    await _checkin_to_offer(h, fake, u)
    # The GAD-7 is offered once the PHQ-9 is not due (done today): start it directly.
    await h.press(u, fake.last(u.id), "as:start:gad7")
    for item in GAD7.items:
        value = values.get(item.id, item.options[0].value)
        await _press(h, fake, u, f"as:a:gad7:{item.id}:{value}")
    assert await flags_of(db, patient.id) == expected
    label = C.t(f"flags.category.{expected[0][0]}", "en")
    assert any(label in x and "P-6161" in x for x in _group_texts(h, fake))
    async with db.session() as s:
        row = (await s.execute(select(AssessmentResult).where(AssessmentResult.instrument == "gad7"))).scalar_one()
    assert (row.status, row.total) == ("done", total)
    fake.assert_no_errors()
