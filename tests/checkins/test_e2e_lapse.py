"""The lapse flow end to end (issue 11, items 7, 8 and 12): the real Application over HTTP
against the fake Bot API, with the real risk detector reading what the patient types.

- A lapse typed in the patient's own words restarts the sober-day counter exactly as the
  check-in's "Yes, I used" does, and the patient is told so gently.
- The reply reflects what the patient said about themselves (the abstinence-violation effect),
  gives the opioid safety lines when an opioid is named (never for alcohol), and asks a patient
  in medication-assisted treatment who missed or took extra doses to keep taking it as
  prescribed and to talk to their prescriber.
- No "your assessment is due" right after a lapse.
- The medication item follows the patient's schedule (asked in onboarding and /settings).
- The check-in's closing reflects the answers, one line each, at most two.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from bot.checkins.models import CheckinEntry
from bot.checkins.rules import checkin_content_for
from bot.core.models import Patient
from bot.core.rules_loader import instruments_for
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.checkins_support import flags_of, make_patient
from tests.harness import BotHarness
from tests.onboarding_support import make_invite

C = get_content()
INST = instruments_for(C).checkin("en")
RULES = checkin_content_for(C).rules


def text(msg: Any) -> str:
    return msg.plain_text or ""


def plain(key: str, **kw: Any) -> str:
    """A message from content as the patient reads it (tags removed)."""
    return re.sub(r"<[^>]+>", "", C.t(key, "en", **kw))


TOLERANCE = plain("lapse.opioid_tolerance")
NALOXONE = plain("lapse.opioid_naloxone")
MAT_MISSED = plain("lapse.mat_missed_dose")
MAT_EXTRA = plain("lapse.mat_extra_dose")
NOT_A_RELAPSE = "A lapse is not a relapse"


async def press(h: BotHarness, fake: FakeTelegram, user: Any, data: str) -> str:
    msg = fake.last(user.id)
    assert data in msg.callback_data, (data, msg.callback_data, text(msg))
    return await h.press(user, msg, data)


async def checkin(
    h: BotHarness, fake: FakeTelegram, user: Any, *, mood: int = 4, craving: int = 1, use: str = "no_use",
    halt: tuple[str, ...] = (), sleep: int = 4, medication: str | None = None, note: str | None = None,
) -> list[Any]:
    """A whole check-in by buttons; returns the messages sent after it started."""
    before = len(fake.sent(user.id))
    await h.send(user, "/checkin")
    await press(h, fake, user, f"ci:a:mood:{mood}")
    await press(h, fake, user, f"ci:a:craving:{craving}")
    await press(h, fake, user, f"ci:a:use:{use}")
    for value in halt:
        await press(h, fake, user, f"ci:t:halt:{value}")
    await press(h, fake, user, "ci:d:halt")
    await press(h, fake, user, f"ci:a:sleep:{sleep}")
    if medication is not None:
        await press(h, fake, user, f"ci:a:medication:{medication}")
    else:
        assert not any(d.startswith("ci:a:medication:") for d in fake.last(user.id).callback_data)
    if note:
        await h.send(user, note)
    else:
        await press(h, fake, user, "ci:skip:note")
    return fake.sent(user.id)[before:]


def lapse_reply(messages: list[Any]) -> str:
    found = [text(m) for m in messages if NOT_A_RELAPSE in text(m)]
    assert len(found) == 1, [text(m) for m in messages]
    return found[0]


async def typed_lapse(h: BotHarness, fake: FakeTelegram, user: Any, words: str) -> str:
    before = len(fake.sent(user.id))
    await h.send(user, words)
    return lapse_reply(fake.sent(user.id)[before:])


async def days(h: BotHarness, fake: FakeTelegram, user: Any) -> str:
    """The /days counter (a milestone congratulation may follow it)."""
    before = len(fake.sent(user.id))
    await h.send(user, "/days")
    shown = [text(m) for m in fake.sent(user.id)[before:] if "Current streak" in text(m) or "sobriety date" in text(m)]
    assert len(shown) == 1, [text(m) for m in fake.sent(user.id)[before:]]
    return shown[0]


# ---------------------------------------------------------------------------------------------
# Item 12: one counter for both paths
# ---------------------------------------------------------------------------------------------


async def test_typed_lapse_resets_days_like_the_checkin(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    typed = fake.add_user(first_name="Ari", started=True)
    by_checkin = fake.add_user(first_name="Bo", started=True)
    pt = await make_patient(db, clock.now(), telegram_id=typed.id, sobriety_date=date(2026, 1, 1))
    pc = await make_patient(db, clock.now(), telegram_id=by_checkin.id, sobriety_date=date(2026, 1, 1))
    assert "Current streak: 60" in await days(h, fake, typed)

    reply = await typed_lapse(h, fake, typed, "I drank last night")
    told = plain("lapse.day_count", total=60)
    assert told in reply
    assert ("use_disclosure", "high") in await flags_of(db, pt.id)

    closing = lapse_reply(await checkin(h, fake, by_checkin, use="used"))
    assert told in closing

    after_typed, after_checkin = await days(h, fake, typed), await days(h, fake, by_checkin)
    for shown in (after_typed, after_checkin):
        assert "Current streak: 0" in shown and "Total sober days: 60" in shown and "Lapses recorded: 1" in shown
    assert after_typed == after_checkin
    assert ("use_disclosure", "high") in await flags_of(db, pc.id)

    # Told again the same day (in words, then in the check-in): still one lapse, same counter.
    clock.advance(hours=2)
    again = await typed_lapse(h, fake, typed, "I used again")
    assert plain("lapse.day_count", total=60) in again
    lapse_reply(await checkin(h, fake, typed, use="used"))
    assert await days(h, fake, typed) == after_typed

    # Days later the new streak counts from the day of the lapse, the total goes on.
    clock.advance(days=3, hours=1)
    later = await days(h, fake, typed)
    assert "Current streak: 3" in later and "Total sober days: 63" in later
    fake.assert_no_errors()


async def test_lapse_without_sobriety_date_has_no_count_line(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Cy", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, sobriety_date=None)
    reply = await typed_lapse(h, fake, u, "I drank last night")
    assert "day count" not in reply
    assert "haven't set a sobriety date" in await days(h, fake, u)
    fake.assert_no_errors()


# ---------------------------------------------------------------------------------------------
# Item 7: what the reply says
# ---------------------------------------------------------------------------------------------

SELF_BLAME = [
    ("I drank last night, I'm such a failure", "I'm such a failure"),
    ("I relapsed, I ruined everything", "I ruined everything"),
    ("I used again and I feel worthless", "I feel worthless"),
    ("I drank last night, I threw it all away", "I threw it all away"),
    ("I relapsed. I hate myself", "I hate myself"),
]


@pytest.mark.parametrize(("words", "quoted"), SELF_BLAME)
async def test_what_they_said_about_themselves_is_reflected(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, words: str, quoted: str
):
    u = fake.add_user(first_name="Dee", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, sobriety_date=date(2026, 2, 1))
    reply = await typed_lapse(h, fake, u, words)
    assert plain("lapse.self_blame", words=quoted) in reply
    assert reply.count("You said") == 1  # one warm line
    fake.assert_no_errors()


async def test_every_self_blame_pattern_is_exercised():
    """Each pattern of the list is matched by at least one phrase here or in SELF_BLAME."""
    extra = [
        "I'm a complete failure", "I'm useless", "I failed again", "I threw my sobriety away",
        "it was all for nothing", "back to square one", "I'll never get better", "I'm so ashamed",
        "I let everyone down", "I messed up", "I'm so ashamed of myself",
    ]
    phrases = [w for w, _ in SELF_BLAME] + extra
    from bot.checkins.lapse import words_for

    for pattern in words_for(C, "en").self_blame:
        assert any(pattern.search(p.replace("’", "'")) for p in phrases), pattern.pattern


async def test_a_lapse_without_self_blame_gets_no_reflection(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Eli", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    reply = await typed_lapse(h, fake, u, "I had a few beers")
    assert "You said" not in reply
    fake.assert_no_errors()


OPIOID = ["I used heroin last night", "I relapsed on fentanyl", "I took some oxy last night", "I used pills last night"]
NOT_OPIOID = ["I drank last night", "I had a few beers", "I smoked weed last night"]


@pytest.mark.parametrize("words", OPIOID + NOT_OPIOID)
async def test_opioid_safety_lines_only_for_opioids(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, words: str
):
    u = fake.add_user(first_name="Fay", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    reply = await typed_lapse(h, fake, u, words)
    opioid = words in OPIOID
    assert (TOLERANCE in reply) is opioid
    assert (NALOXONE in reply) is opioid
    assert ("Never Use Alone" in reply) is opioid
    assert "800 484 3731" in reply if opioid else "800 484 3731" not in reply
    if opioid:  # most important first: the safety lines come before the rest of the flow
        assert reply.index(TOLERANCE) < reply.index(NOT_A_RELAPSE)
    fake.assert_no_errors()


async def test_opioid_named_in_the_checkin_note(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Gil", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    reply = lapse_reply(await checkin(h, fake, u, use="used", note="it was heroin, I ruined everything"))
    assert TOLERANCE in reply and NALOXONE in reply
    assert plain("lapse.self_blame", words="I ruined everything") in reply
    fake.assert_no_errors()


@pytest.mark.parametrize(
    ("mat", "words", "line"),
    [
        (True, "I missed my methadone and used heroin", MAT_MISSED),
        (True, "I took extra suboxone and used", MAT_EXTRA),
        (False, "I missed my methadone and used heroin", None),
        (True, "I drank last night", None),
    ],
)
async def test_mat_patient_who_missed_or_took_extra_doses(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, mat: bool, words: str, line: str | None
):
    u = fake.add_user(first_name="Hal", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, mat=mat)
    reply = await typed_lapse(h, fake, u, words)
    for candidate in (MAT_MISSED, MAT_EXTRA):
        assert (candidate in reply) is (candidate == line)
    assert "prescriber" in reply if line else "prescriber" not in reply
    fake.assert_no_errors()


async def test_mat_missed_dose_in_the_checkin(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Ivy", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, mat=True, checkin_time=None)
    reply = lapse_reply(await checkin(h, fake, u, use="used", medication="not_taken"))
    assert MAT_MISSED in reply
    clock.advance(days=1)
    taken = lapse_reply(await checkin(h, fake, u, use="used", medication="taken"))
    assert MAT_MISSED not in taken
    fake.assert_no_errors()


async def test_no_assessment_nudge_right_after_a_lapse(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    lapsed = fake.add_user(first_name="Jay", started=True)
    steady = fake.add_user(first_name="Kim", started=True)
    await make_patient(db, clock.now(), telegram_id=lapsed.id)
    await make_patient(db, clock.now(), telegram_id=steady.id)
    # The PHQ-9 and GAD-7 are due on the first day: offered after an ordinary check-in ...
    assert any(d.startswith("as:start:") for m in await checkin(h, fake, steady) for d in m.callback_data)
    # ... but not in the closing of a check-in that disclosed use.
    after = await checkin(h, fake, lapsed, use="used")
    lapse_reply(after)
    assert not any(d.startswith("as:start:") for m in after for d in m.callback_data)
    assert not any("assessment" in text(m).lower() or "questionnaire" in text(m).lower() for m in after)
    fake.assert_no_errors()


# ---------------------------------------------------------------------------------------------
# Item 7: the medication item follows the patient's schedule
# ---------------------------------------------------------------------------------------------


async def _patient_row(db: Database, telegram_id: int) -> Patient:
    async with db.session() as s:
        return (await s.execute(select(Patient).where(Patient.telegram_id == telegram_id))).scalar_one()


@pytest.mark.parametrize(("code", "schedule"), [("d", "daily"), ("w", "weekly"), ("m", "monthly")])
async def test_medication_schedule_asked_in_onboarding(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, code: str, schedule: str
):
    from tests.harness import ADMIN_ID

    h.group.members[ADMIN_ID] = "creator"
    invite = await make_invite(h, fake)
    u = fake.add_user(first_name="Lee", started=True)
    await h.send(u, f"/start {invite}")
    for data in ("ob:age:y", "ob:con:y", "ob:tz:1", "ob:tm:2000", "ob:sob:skip"):
        await h.press(u, fake.last(u.id), data)
    await h.press(u, fake.last(u.id), "ob:mat:y")
    asked = fake.last(u.id)
    assert "How often do you take your medication" in text(asked)
    assert asked.callback_data == ["ob:med:d", "ob:med:w", "ob:med:m"]
    assert (await _patient_row(db, u.id)).status == "onboarding"
    await h.press(u, asked, f"ob:med:{code}")
    assert "all set" in text(fake.last(u.id))
    row = await _patient_row(db, u.id)
    assert row.status == "active" and row.mat is True and row.medication_schedule == schedule
    fake.assert_no_errors()


async def test_no_mat_is_not_asked_the_schedule(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    from tests.harness import ADMIN_ID

    h.group.members[ADMIN_ID] = "creator"
    invite = await make_invite(h, fake)
    u = fake.add_user(first_name="Max", started=True)
    await h.send(u, f"/start {invite}")
    for data in ("ob:age:y", "ob:con:y", "ob:tz:1", "ob:tm:2000", "ob:sob:skip", "ob:mat:n"):
        await h.press(u, fake.last(u.id), data)
    assert "all set" in text(fake.last(u.id))
    row = await _patient_row(db, u.id)
    assert row.mat is False and row.medication_schedule is None
    fake.assert_no_errors()


async def test_medication_schedule_changed_in_settings(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Ned", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/settings")
    await press(h, fake, u, "st:mat")
    await press(h, fake, u, "st:mat:y")
    assert "How often do you take your medication" in text(fake.last(u.id))
    await press(h, fake, u, "st:med:m")
    row = await _patient_row(db, u.id)
    assert row.mat is True and row.medication_schedule == "monthly"
    assert "Medication-assisted treatment: Yes (monthly injection)" in text(fake.last(u.id))
    await press(h, fake, u, "st:mat")
    await press(h, fake, u, "st:mat:n")
    assert "Medication-assisted treatment: No" in text(fake.last(u.id))
    for forged in ("st:med:x", "st:med:dd", "ob:med:w"):
        qid = await h.press(u, fake.last(u.id), forged)
        assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    assert (await _patient_row(db, u.id)).medication_schedule == "monthly"
    fake.assert_no_errors()


async def _set_schedule(db: Database, telegram_id: int, schedule: str | None) -> None:
    async with db.transaction() as s:
        row = (await s.execute(select(Patient).where(Patient.telegram_id == telegram_id))).scalar_one()
        row.medication_schedule = schedule


async def _asked_medication(h: BotHarness, fake: FakeTelegram, user: Any) -> str | None:
    """Run a check-in; the medication question's text if it was asked (answered "taken")."""
    await h.send(user, "/checkin")
    for data in ("ci:a:mood:4", "ci:a:craving:1", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:4"):
        await press(h, fake, user, data)
    last = fake.last(user.id)
    asked = text(last) if "ci:a:medication:taken" in last.callback_data else None
    return asked


async def _finish(h: BotHarness, fake: FakeTelegram, user: Any, asked: str | None, answer: str = "taken") -> None:
    if asked is not None:
        await press(h, fake, user, f"ci:a:medication:{answer}")
    await press(h, fake, user, "ci:skip:note")


async def test_weekly_patients_are_not_asked_daily(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    weekly = fake.add_user(first_name="Oz", started=True)
    daily = fake.add_user(first_name="Pat", started=True)
    # No daily prompt: the prompt would arrive between the test's taps (it is due at 09:00).
    await make_patient(db, clock.now(), telegram_id=weekly.id, mat=True, checkin_time=None)
    await make_patient(db, clock.now(), telegram_id=daily.id, mat=True, checkin_time=None)
    await _set_schedule(db, weekly.id, "weekly")
    await _set_schedule(db, daily.id, "daily")
    assert clock.now().date().weekday() == 0  # Monday, 2026-03-02
    # Monday: the weekly patient is asked about this week's dose, says "not yet".
    asked = await _asked_medication(h, fake, weekly)
    assert asked is not None and INST.texts["medication_weekly"] in asked
    await _finish(h, fake, weekly, asked, "not_yet")
    seen = []
    for _weekday in range(1, 7):  # Tuesday to Sunday
        clock.advance(days=1)
        asked = await _asked_medication(h, fake, weekly)
        seen.append(asked is not None)
        await _finish(h, fake, weekly, asked, "taken")
        daily_asked = await _asked_medication(h, fake, daily)
        assert daily_asked is not None and "today" in daily_asked  # daily: every day, daily wording
        await _finish(h, fake, daily, daily_asked)
    # "Not yet" on Monday: asked again Tuesday; answered, then not again that week.
    assert seen == [True, False, False, False, False, False]
    clock.advance(days=1)  # the next Monday: a new week
    assert await _asked_medication(h, fake, weekly) is not None
    async with db.session() as s:
        rows = (
            await s.execute(
                select(CheckinEntry.medication)
                .join(Patient)
                .where(Patient.telegram_id == weekly.id)
                .order_by(CheckinEntry.local_date)
            )
        ).scalars()
        assert list(rows)[:3] == ["not_yet", "taken", None]
    fake.assert_no_errors()


async def test_monthly_injection_asked_once_a_month(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Quin", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, mat=True, checkin_time=None)
    await _set_schedule(db, u.id, "monthly")
    asked = await _asked_medication(h, fake, u)
    assert asked is not None and INST.texts["medication_monthly"] in asked
    await _finish(h, fake, u, asked, "taken")
    clock.advance(days=1)
    asked = await _asked_medication(h, fake, u)
    assert asked is None
    await _finish(h, fake, u, asked)
    clock.advance(days=29)  # April 1st
    assert await _asked_medication(h, fake, u) is not None
    fake.assert_no_errors()


# ---------------------------------------------------------------------------------------------
# Item 8 (part): the closing reflects the answers
# ---------------------------------------------------------------------------------------------

# Answers that trigger exactly one reflection, for each reflection of content/rules/checkin.yaml.
TRIGGERS: dict[str, dict[str, Any]] = {
    "low_mood": {"mood": 2},
    "lonely": {"halt": ("lonely",)},
    "poor_sleep": {"sleep": 1},
    "medication_missed": {"medication": "not_taken"},
    "note_written": {"note": "a long day at work but fine"},
}


def test_every_reflection_has_a_trigger_here():
    assert [r.id for r in RULES.reflections] == list(TRIGGERS)
    assert RULES.reflections_max == 2


def note_text(note_id: str) -> str:
    return re.sub(r"<[^>]+>", "", INST.notes[note_id])


@pytest.mark.parametrize("reflection", list(TRIGGERS))
async def test_closing_line_per_answer(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, reflection: str
):
    u = fake.add_user(first_name="Rae", started=True)
    answers = dict(TRIGGERS[reflection])
    mat = "medication" in answers
    await make_patient(db, clock.now(), telegram_id=u.id, mat=mat)
    if mat:
        answers.setdefault("medication", "taken")
    sent = await checkin(h, fake, u, **answers)
    closing = text(sent[-1]) if "Thanks for checking in" in text(sent[-1]) else next(
        text(m) for m in sent if "Thanks for checking in" in text(m)
    )
    assert note_text(reflection) in closing
    for other in TRIGGERS:
        if other != reflection:
            assert note_text(other) not in closing
    assert INST.replies["default"] not in closing  # not the single default line
    fake.assert_no_errors()


async def test_closing_without_anything_notable_is_the_default(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Sid", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    sent = await checkin(h, fake, u)
    closing = next(text(m) for m in sent if INST.replies["default"] in text(m))
    assert not any(note_text(r) in closing for r in TRIGGERS)
    fake.assert_no_errors()


async def test_closing_has_at_most_two_lines_in_priority_order(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Tam", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    sent = await checkin(h, fake, u, mood=1, halt=("lonely", "tired"), sleep=1, note="rough one")
    closing = next(text(m) for m in sent if "Thanks for checking in" in text(m))
    assert note_text("low_mood") in closing and note_text("lonely") in closing
    assert note_text("poor_sleep") not in closing and note_text("note_written") not in closing
    fake.assert_no_errors()


async def test_high_craving_reply_counts_as_one_of_the_two(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Uma", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    sent = await checkin(h, fake, u, mood=2, craving=9, sleep=1)
    closing = next(text(m) for m in sent if "sos:open" in m.callback_data)
    assert re.sub(r"<[^>]+>", "", INST.replies["high_craving"]) in closing
    assert note_text("low_mood") in closing and note_text("poor_sleep") not in closing
    fake.assert_no_errors()


# Phrases a patient may type, for every pattern of each of the other word lists.
WORD_EXAMPLES = {
    "opioids": [
        "heroin", "fentanyl", "oxy", "OCs", "roxies", "percs", "vicodin", "dilaudid", "opana", "tramadol",
        "opiates", "dope", "m30s", "pills", "carfentanil", "kratom",
    ],
    "mat_extra_dose": [
        "took an extra dose", "took extra suboxone", "doubled up on my subs", "more than prescribed", "ran out early",
    ],
    "mat_missed_dose": ["missed my methadone", "skipped a dosing day", "ran out of my subs"],
}


@pytest.mark.parametrize("name", list(WORD_EXAMPLES))
def test_every_word_pattern_is_exercised(name: str):
    from bot.checkins.lapse import words_for

    for pattern in getattr(words_for(C, "en"), name):
        assert any(pattern.search(p) for p in WORD_EXAMPLES[name]), (name, pattern.pattern)


def test_content_check_rejects_broken_word_lists(tmp_path):
    from bot.checkins.lapse import WORD_LISTS, check_content

    (tmp_path / "en").mkdir()
    assert any("missing" in p[2] for p in check_content(tmp_path))
    lists = {name: ['"ok"'] for name in WORD_LISTS}
    lists["opioids"] = ['"(unclosed"', '"x?"']
    lists["extra"] = ['"y"']
    (tmp_path / "en" / "lapse.yaml").write_text(
        "\n".join(f"{k}: [{', '.join(v)}]" for k, v in lists.items()), encoding="utf-8"
    )
    problems = [p[2] for p in check_content(tmp_path)]
    assert any("bad pattern" in p for p in problems)
    assert any("matches empty text" in p for p in problems)
    assert any("unknown list 'extra'" in p for p in problems)
    assert check_content(C.root) == []
