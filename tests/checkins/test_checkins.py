"""The daily check-in service: item-by-item answers, resume, update, back/cancel, rules and flags."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from bot.checkins import service as checkins
from bot.checkins.models import CheckinEntry
from bot.checkins.rules import checkin_content_for
from bot.core.clinical import flag_category
from bot.core.conversation import Result
from bot.core.models import ChatState
from bot.core.people import PatientInfo
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.safety.service import Detection
from tests import escalation_support as sup
from tests.checkins_support import content, flags_of, make_patient

C = content()
WF = sup.workflow()  # flags go to the counselors' group, as in the bot
DETECTION = Detection()  # the project's risk detector


async def _do(db: Database, fn, *args) -> Result | None:  # type: ignore[no-untyped-def]
    """One check-in step in its own transaction, with what that step needs."""
    async with db.transaction() as s:
        if fn is checkins.note:
            return await fn(s, WF, DETECTION, C, *args)  # type: ignore[no-any-return]
        if fn in (checkins.answer, checkins.multi_done, checkins.skip):
            return await fn(s, WF, C, *args)  # type: ignore[no-any-return]
        return await fn(s, C, *args)  # type: ignore[no-any-return]


async def full_checkin(
    db: Database, clock: FrozenClock, p: PatientInfo, *, mood: int = 4, craving: int = 2, use: str = "no_use",
    halt: tuple[str, ...] = ("none",), sleep: int = 4, medication: str | None = None, note: str | None = None,
) -> Result:
    now = clock.now()
    await _do(db, checkins.start, p, now)
    await _do(db, checkins.answer, p, "mood", str(mood), now)
    await _do(db, checkins.answer, p, "craving", str(craving), now)
    await _do(db, checkins.answer, p, "use", use, now)
    for h in halt:
        await _do(db, checkins.toggle, p, "halt", h, now)
    await _do(db, checkins.multi_done, p, "halt", now)
    await _do(db, checkins.answer, p, "sleep", str(sleep), now)
    if p.mat:
        await _do(db, checkins.answer, p, "medication", medication or "taken", now)
    if note is None:
        r = await _do(db, checkins.skip, p, "note", now)
    else:
        r = await _do(db, checkins.note, p, note, now)
    assert r is not None and r.finished
    return r


async def _entries(db: Database, patient_id: int) -> list[CheckinEntry]:
    async with db.session() as s:
        q = select(CheckinEntry).where(CheckinEntry.patient_id == patient_id).order_by(CheckinEntry.local_date)
        return list((await s.execute(q)).scalars())


async def test_full_checkin_stores_every_answer_with_its_time(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 20))
    r = await _do(db, checkins.start, p, clock.now())
    assert r is not None and "1 of 6" in r.screens[0].text
    assert [d for _, d in r.screens[0].rows[0]][:2] == ["ci:a:mood:1", "ci:a:mood:2"]
    res = await full_checkin(db, clock, p, mood=3, craving=1, halt=("tired", "lonely"), note="long day <b>")
    assert "Thanks for checking in" in res.screens[0].text
    assert "Day 10" in res.screens[0].text  # streak since Feb 20
    [e] = await _entries(db, p.id)
    assert (e.mood, e.craving, e.use, e.sleep, e.halt) == (3, 1, "no_use", 4, ["lonely", "tired"])
    assert e.answers is not None and e.answers["note"]["v"] == "long day <b>"
    assert set(e.answers) == {"mood", "craving", "use", "halt", "sleep", "note"}
    assert all(v["at"].startswith("2026-03-02T14:00") for v in e.answers.values())
    assert e.local_date == date(2026, 3, 2) and e.completed_at == clock.now()
    assert await flags_of(db, p.id) == []


async def test_resume_where_it_stopped_after_a_restart(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    await _do(db, checkins.start, p, clock.now())
    await _do(db, checkins.answer, p, "mood", "2", clock.now())
    await _do(db, checkins.answer, p, "craving", "5", clock.now())
    # A new process: nothing in memory, everything in the database.
    clock.advance(minutes=40)
    fresh = Database(db.url)
    try:
        async with fresh.transaction() as s:
            r = await checkins.start(s, C, p, clock.now())
    finally:
        await fresh.dispose()
    text = r.screens[0].text
    assert "pick up your check-in" in text and "3 of 6" in text and "did you drink or use" in text


async def test_second_checkin_same_day_updates_the_entry(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    await full_checkin(db, clock, p, mood=2)
    clock.advance(hours=3)
    r = await _do(db, checkins.start, p, clock.now())
    assert r is not None and "update today's entry" in r.screens[0].text
    await full_checkin(db, clock, p, mood=5)
    entries = await _entries(db, p.id)
    assert len(entries) == 1 and entries[0].mood == 5
    clock.advance(days=1)
    await full_checkin(db, clock, p, mood=1)
    assert [e.mood for e in await _entries(db, p.id)] == [5, 1]


async def test_back_and_cancel(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    now = clock.now()
    await _do(db, checkins.start, p, now)
    await _do(db, checkins.answer, p, "mood", "4", now)
    r = await _do(db, checkins.back, p, now)
    assert r is not None and "1 of 6" in r.screens[0].text
    # A stale button (the craving question is no longer current) is refused, not an error.
    assert await _do(db, checkins.answer, p, "craving", "3", now) is None
    assert await _do(db, checkins.answer, p, "mood", "99", now) is None
    # A forged button of another kind for the current question changes nothing.
    assert await _do(db, checkins.toggle, p, "mood", "4", now) is None
    assert await _do(db, checkins.multi_done, p, "mood", now) is None
    await _do(db, checkins.answer, p, "mood", "1", now)
    r = await _do(db, checkins.cancel_checkin, p, now)
    assert r is not None and "cancelled" in r.screens[0].text
    assert await _entries(db, p.id) == []
    # Cancelling an update keeps the finished answers of today.
    await full_checkin(db, clock, p, mood=3)
    await _do(db, checkins.start, p, now)
    await _do(db, checkins.answer, p, "mood", "1", now)
    await _do(db, checkins.cancel_checkin, p, now)
    [e] = await _entries(db, p.id)
    assert e.mood == 3 and e.step is None and e.completed_at is not None


async def test_halt_none_is_exclusive(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    now = clock.now()
    await _do(db, checkins.start, p, now)
    for item, v in (("mood", "3"), ("craving", "0"), ("use", "no_use")):
        await _do(db, checkins.answer, p, item, v, now)
    await _do(db, checkins.toggle, p, "halt", "hungry", now)
    await _do(db, checkins.toggle, p, "halt", "angry", now)
    r = await _do(db, checkins.toggle, p, "halt", "none", now)
    assert r is not None
    labels = [label for row in r.screens[0].rows for label, _ in row]
    assert "✅ None of these" in labels and "🍽 Hungry" in labels
    r = await _do(db, checkins.toggle, p, "halt", "tired", now)
    assert r is not None
    labels = [label for row in r.screens[0].rows for label, _ in row]
    assert "✅ 😴 Tired" in labels and "None of these" in labels


async def test_medication_is_asked_only_for_mat_patients(db: Database, clock: FrozenClock):
    plain = await make_patient(db, clock.now())
    mat = await make_patient(db, clock.now(), mat=True)
    r1 = await _do(db, checkins.start, plain, clock.now())
    r2 = await _do(db, checkins.start, mat, clock.now())
    assert r1 is not None and "of 6" in r1.screens[0].text
    assert r2 is not None and "of 7" in r2.screens[0].text
    await full_checkin(db, clock, mat, medication="not_taken")
    [e] = await _entries(db, mat.id)
    assert e.medication == "not_taken"


async def test_use_disclosed_starts_the_lapse_flow_and_raises_a_flag(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 1))
    r = await full_checkin(db, clock, p, use="used")
    text = r.screens[0].text
    assert "A lapse is not a relapse" in text
    datas = [d for row in r.screens[0].rows for _, d in row]
    assert "sos:talk" in datas and "sos:call" in datas and "sos:open" not in datas
    assert await flags_of(db, p.id) == [("use_disclosure", "high")]
    async with db.transaction() as s:
        screen = await checkins.talk_request(s, WF, C, p, True, clock.now())
    assert "reach out" in screen.text
    assert await flags_of(db, p.id) == [("use_disclosure", "high"), ("talk_request", "moderate")]


async def test_prefer_not_to_say_raises_no_flag(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    r = await full_checkin(db, clock, p, use="prefer_not")
    assert "not to judge" in r.screens[0].text
    assert await flags_of(db, p.id) == []


async def test_high_craving_offers_urge_tools_and_flags_on_two_of_three_days(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    r = await full_checkin(db, clock, p, craving=8)
    assert [d for row in r.screens[0].rows for _, d in row] == ["sos:open"]
    assert "ride this one out" in r.screens[0].text
    assert await flags_of(db, p.id) == []
    clock.advance(days=1)
    await full_checkin(db, clock, p, craving=2)
    assert await flags_of(db, p.id) == []
    clock.advance(days=1)
    await full_checkin(db, clock, p, craving=7)
    assert await flags_of(db, p.id) == [("severe_craving", "moderate")]


async def test_high_craving_three_days_apart_raises_nothing(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    await full_checkin(db, clock, p, craving=9)
    clock.advance(days=3)
    await full_checkin(db, clock, p, craving=9)
    assert await flags_of(db, p.id) == []


async def test_note_state_is_set_and_cleared(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    now = clock.now()
    await _do(db, checkins.start, p, now)
    for item, v in (("mood", "3"), ("craving", "0"), ("use", "no_use")):
        await _do(db, checkins.answer, p, item, v, now)
    await _do(db, checkins.multi_done, p, "halt", now)
    r = await _do(db, checkins.answer, p, "sleep", "3", now)
    assert r is not None and [d for _, d in r.screens[0].rows[0]] == ["ci:skip:note"]
    async with db.session() as s:
        st = await s.get(ChatState, p.telegram_id)
        assert st is not None and st.kind == checkins.NOTE_STATE
    await _do(db, checkins.note, p, "ok", now)
    async with db.session() as s:
        assert await s.get(ChatState, p.telegram_id) is None
        n = (await s.execute(select(func.count()).select_from(CheckinEntry))).scalar_one()
    assert n == 1


def test_flag_categories_map_to_the_flag_service():
    from bot.core.vocabulary import Category

    for cat in ("substance_use", "craving", "disengagement", "suicide_risk", "medication", "depression", "anxiety"):
        assert Category.known(flag_category(cat))
    assert flag_category("talk_request") == "talk_request"
    assert flag_category("suicide_risk") == "suicide_self_harm"
    assert flag_category("substance_use") == "use_disclosure"


RULES = checkin_content_for(C).rules
D = date(2026, 3, 10)


@pytest.mark.parametrize(
    ("today", "recent", "reply", "urge", "flags"),
    [
        ({"use": "no_use", "craving": 0}, [], "default", False, set()),
        ({"use": "no_use", "craving": RULES.high_craving_threshold - 1}, [], "default", False, set()),
        ({"use": "no_use", "craving": RULES.high_craving_threshold}, [], "high_craving", True, set()),
        ({"use": "used", "craving": 2}, [], "lapse", False, {"use_disclosure"}),
        ({"use": "used", "craving": 9}, [], "lapse", True, {"use_disclosure"}),
        ({"use": "prefer_not", "craving": 1}, [], "default", False, set()),
        ({"use": "no_use", "craving": 8}, [(1, {"craving": 9})], "high_craving", True, {"severe_craving"}),
        ({"use": "no_use", "craving": 8}, [(2, {"craving": 9})], "high_craving", True, {"severe_craving"}),
        ({"use": "no_use", "craving": 8}, [(3, {"craving": 9})], "high_craving", True, set()),
        ({"use": "no_use", "craving": 1}, [(1, {"craving": 9}), (2, {"craving": 9})], "default", False, {"severe_craving"}),
        ({"use": "no_use", "medication": "not_taken"}, [(1, {"medication": "not_taken"})], "default", False, {"medication"}),
        ({"use": "no_use", "medication": "not_yet"}, [(1, {"medication": "not_taken"})], "default", False, set()),
    ],
)
def test_checkin_rules_table(today, recent, reply, urge, flags):  # type: ignore[no-untyped-def]
    from bot.checkins.rules import CheckinAnswers, checkin_outcome

    past = [CheckinAnswers(D - timedelta(days=ago), values) for ago, values in recent]
    out = checkin_outcome(RULES, CheckinAnswers(D, today), past)
    assert out.reply == reply and out.offer_urge_tools is urge
    assert {flag_category(f.category) for f in out.flags} == flags
