"""Assessments: cadence, bands and flag rules from content/, item-by-item storage, the crisis path."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot.assessments import service as assessments
from bot.assessments.models import AssessmentResult
from bot.assessments.rules import load_assessment_content, next_assessment_date
from bot.core.clinical import flag_category
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests import escalation_support as sup
from tests.checkins_support import content, flags_of, make_patient

C = content()
WF = sup.workflow()  # flags go to the counselors' group, as in the bot
CLIN = load_assessment_content(C.root)


def _answers(instrument: str, values: dict[str, int], default: int = 0) -> dict[str, int]:
    inst = CLIN.instrument(instrument)
    return {i.id: values.get(i.id, default) for i in inst.items}


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
     (15, "moderately_severe"), (19, "moderately_severe"), (20, "severe"), (27, "severe")],
)
def test_phq9_bands(total: int, band: str):
    items = [f"q{i}" for i in range(1, 10)]
    values = {}
    left = total
    for it in items:
        values[it] = min(3, left)
        left -= values[it]
    score = assessments.score(C, "phq9", _answers("phq9", values))
    assert score.total == total and score.band == band


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"), (15, "severe"), (21, "severe")],
)
def test_gad7_bands(total: int, band: str):
    values = {}
    left = total
    for i in range(1, 8):
        values[f"q{i}"] = min(3, left)
        left -= values[f"q{i}"]
    score = assessments.score(C, "gad7", _answers("gad7", values))
    assert score.total == total and score.band == band


@pytest.mark.parametrize(
    ("values", "categories"),
    [
        ({}, set()),
        ({"q9": 1}, {"suicide_risk"}),
        ({"q1": 3, "q2": 3, "q3": 3, "q4": 3, "q5": 3}, {"depression"}),
        ({"q1": 3, "q2": 3, "q3": 3, "q4": 3, "q5": 3, "q9": 2}, {"depression", "suicide_risk"}),
    ],
)
def test_phq9_flag_rules(values: dict[str, int], categories: set[str]):
    score = assessments.score(C, "phq9", _answers("phq9", values))
    assert {flag_category(f.category) for f in score.flags} == {flag_category(c) for c in categories}


@pytest.mark.parametrize(
    ("values", "flags"),
    [
        ({"confidence": 4, "support_meetings": 4, "meaning": 4, "structure": 4, "basic_needs": 2, "sober_support": 4}, set()),
        ({"alcohol_days": 1, "confidence": 4, "support_meetings": 4, "meaning": 4, "structure": 4, "basic_needs": 2,
          "sober_support": 4}, {("substance_use", "moderate")}),
        ({"drug_days": 3, "confidence": 4, "support_meetings": 4, "meaning": 4, "structure": 4, "basic_needs": 2,
          "sober_support": 4}, {("substance_use", "high")}),
        ({}, {("recovery_support", "low")}),
    ],
)
def test_weekly_flag_rules(values: dict[str, int], flags: set[tuple[str, str]]):
    score = assessments.score(C, "weekly", _answers("weekly", values))
    assert {(flag_category(f.category), f.severity) for f in score.flags} == {(flag_category(c), v) for c, v in flags}


@pytest.mark.parametrize(
    ("instrument", "last", "today", "due"),
    [
        ("phq9", None, date(2026, 3, 2), True),
        ("phq9", date(2026, 3, 1), date(2026, 3, 14), False),
        ("phq9", date(2026, 3, 1), date(2026, 3, 15), True),
        ("gad7", date(2026, 3, 1), date(2026, 3, 15), True),
        ("weekly", None, date(2026, 3, 7), False),  # a Saturday; the weekly check is on Sunday
        ("weekly", None, date(2026, 3, 8), True),
        ("weekly", date(2026, 3, 8), date(2026, 3, 14), False),
        ("weekly", date(2026, 3, 8), date(2026, 3, 15), True),
    ],
)
def test_cadence_is_data(instrument: str, last: date | None, today: date, due: bool):
    rules = CLIN.rules.for_instrument(instrument)
    assert rules is not None
    assert (next_assessment_date(rules.cadence, last, today) <= today) is due


async def _run(db: Database, clock: FrozenClock, p, instrument: str, values: dict[str, int]):  # type: ignore[no-untyped-def]
    screens = []
    async with db.transaction() as s:
        await assessments.start(s, C, p, instrument, clock.now())
    inst = CLIN.instrument(instrument)
    for item in inst.items:
        async with db.transaction() as s:
            r = await assessments.answer(s, WF, C, p, instrument, item.id, str(values.get(item.id, 0)), clock.now())
        assert r is not None
        screens.append(r)
    return screens


async def test_phq9_item9_stops_for_the_followup_then_resumes(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    async with db.transaction() as s:
        r = await assessments.start(s, C, p, "phq9", clock.now())
    assert r is not None and "Pfizer" in r.screens[0].text
    for i in range(1, 9):
        async with db.transaction() as s:
            await assessments.answer(s, WF, C, p, "phq9", f"q{i}", "0", clock.now())
    async with db.transaction() as s:
        r = await assessments.answer(s, WF, C, p, "phq9", "q9", "1", clock.now())
    assert r is not None and not r.finished
    assert [d for row in r.screens[0].rows for _, d in row] == ["as:f:phq9:wish_dead:y", "as:f:phq9:wish_dead:n"]
    assert await flags_of(db, p.id) == [("suicide_self_harm", "high")]  # at once, before the follow-up
    async with db.transaction() as s:
        assert await assessments.answer(s, WF, C, p, "phq9", "difficulty", "1", clock.now()) is None  # stopped
        assert await assessments.back(s, C, p, "phq9", clock.now()) is None  # no way back inside it
    for q, yes in (("wish_dead", "y"), ("thoughts", "n"), ("preparation", "n")):
        async with db.transaction() as s:
            r = await assessments.followup_answer(s, WF, C, p, "phq9", q, yes, clock.now())
        assert r is not None
    assert "988" in r.screens[1].text and r.screens[-1].rows == [[("📝 Finish the questionnaire", "as:resume:phq9")]]
    assert await flags_of(db, p.id) == [("suicide_self_harm", "high")]
    async with db.transaction() as s:
        r = await assessments.resume(s, C, p, "phq9", clock.now())
    assert r is not None and "10 of 10" in r.screens[0].text  # the follow-up is not asked again
    async with db.transaction() as s:
        r = await assessments.answer(s, WF, C, p, "phq9", "difficulty", "1", clock.now())
    assert r is not None and r.finished
    assert await flags_of(db, p.id) == [("suicide_self_harm", "high")]  # not raised twice
    async with db.session() as s:
        row = (await s.execute(select(AssessmentResult))).scalar_one()
    assert row.status == "done" and row.total == 1 and row.band == "minimal" and row.crisis_at is not None
    assert row.answers is not None and row.answers["q9"]["v"] == 1 and "at" in row.answers["q9"]
    assert row.answers["_followup"]["a"] == {"wish_dead": True, "thoughts": False, "preparation": False}


async def test_weekly_check_is_stored_item_by_item_and_flags_use(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    screens = await _run(db, clock, p, "weekly", {"alcohol_days": 2, "confidence": 4, "support_meetings": 3,
                                                  "meaning": 3, "structure": 3, "basic_needs": 2, "sober_support": 3})
    assert screens[-1].finished
    assert await flags_of(db, p.id) == [("use_disclosure", "moderate")]
    async with db.session() as s:
        row = (await s.execute(select(AssessmentResult))).scalar_one()
    assert row.domains is not None and row.domains["use"] == 2
    assert len(row.answers or {}) == len(CLIN.weekly().items)
    async with db.session() as s:
        latest = await assessments.latest_scores(s, C, p.id)
    assert [(x.instrument, x.total) for x in latest] == [("weekly", row.total)]


async def test_due_offers_and_resume(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())  # Monday March 2, 2026
    async with db.session() as s:
        due = await assessments.due(s, C, p.id, date(2026, 3, 2))
    assert due == ["phq9", "gad7"]
    async with db.transaction() as s:
        await assessments.start(s, C, p, "gad7", clock.now())
        await assessments.answer(s, WF, C, p, "gad7", "q1", "2", clock.now())
        assert await assessments.answer(s, WF, C, p, "gad7", "q1", "2", clock.now()) is None  # stale
        r = await assessments.cancel(s, C, p, "gad7", clock.now())
    assert r is not None
    async with db.transaction() as s:
        r = await assessments.start(s, C, p, "gad7", clock.now())
    assert r is not None and "2 of 7" in r.screens[0].text
