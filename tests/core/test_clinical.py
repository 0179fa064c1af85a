from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from bot.areas import content_checks
from bot.assessments.rules import (
    AssessmentContent,
    Cadence,
    load_assessment_content,
    next_assessment_date,
    score_assessment,
)
from bot.checkins.rules import (
    CheckinAnswers,
    CheckinContent,
    DaySummary,
    MilestoneRules,
    checkin_outcome,
    load_checkin_content,
    milestones_reached,
    silent_days_flag,
)
from bot.core.clinical import Instrument
from bot.core.rules_loader import ContentError, Instruments, load_instruments
from bot.recovery.library import Library, Tip, check_library, load_library
from bot.recovery.rules import next_tip
from bot.safety.crisis import load_regions

CONTENT = Path(__file__).resolve().parents[2] / "content"
TODAY = date(2024, 5, 15)
ATTRIBUTION = (
    "Developed by Drs. Robert L. Spitzer, Janet B.W. Williams, Kurt Kroenke and colleagues, "
    "with an educational grant from Pfizer Inc. No permission required to reproduce, "
    "translate, display or distribute."
)


# The clinical content's checks: the instruments (kernel), the check-in and assessment rules, and
# flag rule ids across their files.
CLINICAL_CHECKS = (
    "bot.core.rules_loader",
    "bot.core.rules_loader.rule_ids",
    "bot.checkins.rules",
    "bot.assessments.rules",
)


def check_content(root: Path) -> list[tuple[str, int, str]]:
    checks = content_checks()
    return [problem for name in CLINICAL_CHECKS for problem in checks[name](root)]


@pytest.fixture(scope="module")
def instruments() -> Instruments:
    return load_instruments(CONTENT)


@pytest.fixture(scope="module")
def checkins() -> CheckinContent:
    return load_checkin_content(CONTENT)


@pytest.fixture(scope="module")
def assessments() -> AssessmentContent:
    return load_assessment_content(CONTENT)


@pytest.fixture(scope="module")
def library() -> Library:
    return load_library(CONTENT)


def answers_for_total(
    instrument: Instrument, total: int, last: str | None = None
) -> dict[str, int]:
    """Answers adding up to ``total``, filling ``last`` only when the others are full."""
    items = sorted(instrument.scored_items, key=lambda i: i.id == last)
    answers: dict[str, int] = {}
    remaining = total
    for item in items:
        top = max(o.points for o in item.options if o.points is not None)
        take = min(top, remaining)
        answers[item.id] = item.options[[o.points for o in item.options].index(take)].value
        remaining -= take
    assert remaining == 0
    return answers


# --- PHQ-9 and GAD-7 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "band", "label"),
    [
        (0, "minimal", "Minimal"),
        (4, "minimal", "Minimal"),
        (5, "mild", "Mild"),
        (9, "mild", "Mild"),
        (10, "moderate", "Moderate"),
        (14, "moderate", "Moderate"),
        (15, "moderately_severe", "Moderately severe"),
        (19, "moderately_severe", "Moderately severe"),
        (20, "severe", "Severe"),
        (24, "severe", "Severe"),
    ],
)
def test_phq9_bands(assessments: AssessmentContent, total: int, band: str, label: str) -> None:
    score = score_assessment(assessments.phq9(), answers_for_total(assessments.phq9(), total, "q9"))
    assert (score.total, score.band, score.band_label) == (total, band, label)
    assert not score.crisis


def test_phq9_maximum_is_severe_and_asks_the_suicide_followup(assessments: AssessmentContent) -> None:
    score = score_assessment(assessments.phq9(), {f"q{i}": 3 for i in range(1, 10)})
    assert (score.total, score.band) == (27, "severe")
    assert any(f.action == "suicide_followup" for f in score.triggered)


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (0, []),
        (14, []),
        (15, [("phq9_moderately_severe", "moderate", "depression")]),
        (19, [("phq9_moderately_severe", "moderate", "depression")]),
        (20, [("phq9_severe", "high", "depression")]),
        (24, [("phq9_severe", "high", "depression")]),
    ],
)
def test_phq9_total_flags(
    assessments: AssessmentContent, total: int, expected: list[tuple[str, str, str]]
) -> None:
    score = score_assessment(assessments.phq9(), answers_for_total(assessments.phq9(), total, "q9"))
    assert [(f.rule_id, f.severity, f.category) for f in score.triggered] == expected


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_phq9_item9_asks_the_suicide_followup(assessments: AssessmentContent, item9: int) -> None:
    # Item 9 above zero reaches the counselors at once (high); the follow-up grades it.
    answers = {f"q{i}": 0 for i in range(1, 9)} | {"q9": item9}
    score = score_assessment(assessments.phq9(), answers)
    assert not score.crisis
    assert score.band == "minimal"
    first = score.triggered[0]
    assert (first.rule_id, first.severity, first.category, first.action) == (
        "phq9_item9_positive",
        "high",
        "suicide_self_harm",
        "suicide_followup",
    )


def test_phq9_item9_zero_is_not_crisis(assessments: AssessmentContent) -> None:
    score = score_assessment(assessments.phq9(), {f"q{i}": 0 for i in range(1, 10)})
    assert not score.crisis and score.triggered == ()


def test_phq9_item9_is_known_before_the_last_answer(assessments: AssessmentContent) -> None:
    partial = score_assessment(assessments.phq9(), {"q1": 1, "q9": 1}, partial=True)
    assert [f.action for f in partial.triggered] == ["suicide_followup"]
    assert not partial.complete and partial.band is None
    quiet = score_assessment(assessments.phq9(), {"q1": 3, "q2": 3}, partial=True)
    assert not quiet.crisis and quiet.triggered == ()


def test_phq9_severe_with_item9_reports_both_categories(assessments: AssessmentContent) -> None:
    score = score_assessment(assessments.phq9(), {f"q{i}": 3 for i in range(1, 10)})
    assert [(f.rule_id, f.category) for f in score.flags] == [
        ("phq9_item9_positive", "suicide_self_harm"),
        ("phq9_severe", "depression"),
    ]


def test_phq9_difficulty_question_is_not_scored(assessments: AssessmentContent) -> None:
    answers = {f"q{i}": 1 for i in range(1, 10)}
    with_difficulty = score_assessment(assessments.phq9(), answers | {"difficulty": 3})
    assert with_difficulty.total == score_assessment(assessments.phq9(), answers).total == 9


@pytest.mark.parametrize(
    ("total", "band", "flagged"),
    [
        (0, "minimal", False),
        (4, "minimal", False),
        (5, "mild", False),
        (9, "mild", False),
        (10, "moderate", False),
        (14, "moderate", False),
        (15, "severe", True),
        (21, "severe", True),
    ],
)
def test_gad7_bands_and_flag(assessments: AssessmentContent, total: int, band: str, flagged: bool) -> None:
    score = score_assessment(assessments.gad7(), answers_for_total(assessments.gad7(), total))
    assert (score.total, score.band) == (total, band)
    expected = [("gad7_severe", "moderate", "anxiety")] if flagged else []
    assert [(f.rule_id, f.severity, f.category) for f in score.triggered] == expected


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ({"q1": 1}, "missing answers"),
        ({"nope": 1}, "not an item"),
        ({"q1": 4}, "not an option"),
    ],
)
def test_score_rejects_bad_answers(assessments: AssessmentContent, answers: dict[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        score_assessment(assessments.gad7(), answers)


def test_standard_wording(assessments: AssessmentContent) -> None:
    for instrument, count in ((assessments.phq9(), 9), (assessments.gad7(), 7)):
        assert instrument.attribution == ATTRIBUTION
        assert len(instrument.scored_items) == count
        for item in instrument.scored_items:
            assert [o.label for o in item.options] == [
                "Not at all",
                "Several days",
                "More than half the days",
                "Nearly every day",
            ]
            assert [o.points for o in item.options] == [0, 1, 2, 3]
    assert assessments.phq9().stem == (
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    )
    assert assessments.phq9().item("q9").prompt == (
        "Thoughts that you would be better off dead or of hurting yourself in some way"
    )


# --- weekly check ------------------------------------------------------------------------


def weekly_answers(assessments: AssessmentContent, **overrides: int) -> dict[str, int]:
    base = {item.id: item.options[0].value for item in assessments.weekly().scored_items}
    protective = {"confidence": 4, "support_meetings": 4, "meaning": 4, "structure": 4}
    return base | protective | overrides


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, set()),
        ({"alcohol_days": 1}, {"weekly_use_any"}),
        ({"drug_days": 2}, {"weekly_use_any"}),
        ({"alcohol_days": 3}, {"weekly_use_any", "weekly_use_frequent"}),
        ({"drug_days": 7}, {"weekly_use_any", "weekly_use_frequent"}),
        ({"heavy_days": 1}, set()),
        ({"heavy_days": 2}, {"weekly_use_frequent"}),
        (
            {"health": 4, "sleep_trouble": 4, "distress": 3, "cravings": 3},
            {"weekly_risk_high"},
        ),
        ({"health": 4, "sleep_trouble": 4, "distress": 3, "cravings": 2}, set()),
        (
            {"confidence": 0, "support_meetings": 0, "meaning": 3, "structure": 3},
            {"weekly_protection_low"},
        ),
        ({"confidence": 0, "support_meetings": 0, "meaning": 4, "structure": 3}, set()),
    ],
)
def test_weekly_rules(assessments: AssessmentContent, overrides: dict[str, int], expected: set[str]) -> None:
    score = score_assessment(assessments.weekly(), weekly_answers(assessments, **overrides))
    assert {f.rule_id for f in score.triggered} == expected
    assert score.band is None


def test_weekly_domains_and_one_flag_per_category(assessments: AssessmentContent) -> None:
    answers = weekly_answers(assessments, alcohol_days=4, drug_days=1, cravings=3, basic_needs=1)
    score = score_assessment(assessments.weekly(), answers)
    assert score.domains == {"use": 5, "risk": 3, "protective": 18}
    assert [(f.rule_id, f.severity) for f in score.flags] == [("weekly_use_frequent", "high")]


# --- daily check-in ----------------------------------------------------------------------


def day(offset: int, **values: object) -> DaySummary:
    return DaySummary(TODAY - timedelta(days=offset), values)


@pytest.mark.parametrize(
    ("values", "reply", "urge_tools", "notes", "flags"),
    [
        ({"craving": 0, "use": "no_use"}, "default", False, (), []),
        ({"craving": 6, "use": "no_use"}, "default", False, (), []),
        ({"craving": 7, "use": "no_use"}, "high_craving", True, (), []),
        ({"craving": 10}, "high_craving", True, (), []),
        ({"craving": 2, "use": "used"}, "lapse", False, (), ["checkin_use_disclosed"]),
        ({"craving": 9, "use": "used"}, "lapse", True, (), ["checkin_use_disclosed"]),
        ({"craving": 3, "use": "prefer_not"}, "default", False, ("prefer_not_to_say",), []),
        ({"craving": 8, "use": "prefer_not"}, "high_craving", True, ("prefer_not_to_say",), []),
        ({}, "default", False, (), []),
        ({"craving": None, "use": None}, "default", False, (), []),
    ],
)
def test_checkin_today(
    checkins: CheckinContent,
    values: dict[str, object],
    reply: str,
    urge_tools: bool,
    notes: tuple[str, ...],
    flags: list[str],
) -> None:
    outcome = checkin_outcome(checkins.rules, CheckinAnswers(TODAY, values), [])
    assert outcome.reply == reply
    assert outcome.offer_urge_tools is urge_tools
    assert outcome.high_craving is urge_tools
    assert outcome.notes == notes
    assert [f.rule_id for f in outcome.flags] == flags


def test_use_disclosed_flag_details(checkins: CheckinContent) -> None:
    outcome = checkin_outcome(checkins.rules, CheckinAnswers(TODAY, {"use": "used"}))
    [flag] = outcome.flags
    assert (flag.severity, flag.category, flag.crisis) == ("high", "use_disclosure", False)
    assert flag.reason


@pytest.mark.parametrize(
    ("today_craving", "recent", "flagged"),
    [
        (7, [day(1, craving=7)], True),
        (7, [day(2, craving=9)], True),
        (6, [day(1, craving=8), day(2, craving=10)], True),
        (7, [day(3, craving=9)], False),
        (7, [day(1, craving=6), day(2, craving=6)], False),
        (6, [day(1, craving=7)], False),
        (7, [], False),
        (7, [day(0, craving=8)], False),
        (3, [day(0, craving=8), day(1, craving=9)], True),
        (7, [day(1, mood=2), day(2, use="no_use")], False),
    ],
)
def test_high_craving_on_two_of_three_days(
    checkins: CheckinContent, today_craving: int, recent: list[DaySummary], flagged: bool
) -> None:
    today = CheckinAnswers(TODAY, {"craving": today_craving, "use": "no_use"})
    outcome = checkin_outcome(checkins.rules, today, recent)
    assert ("checkin_craving_repeated" in {f.rule_id for f in outcome.flags}) is flagged
    if flagged:
        flag = next(f for f in outcome.flags if f.rule_id == "checkin_craving_repeated")
        assert (flag.severity, flag.category) == ("moderate", "severe_craving")


def test_today_counted_once_when_also_in_recent(checkins: CheckinContent) -> None:
    today = CheckinAnswers(TODAY, {"craving": 8})
    outcome = checkin_outcome(checkins.rules, today, [today, day(5, craving=9)])
    assert outcome.flags == ()


@pytest.mark.parametrize(
    ("today", "recent", "flagged"),
    [
        ("not_taken", [day(1, medication="not_taken")], True),
        ("not_taken", [day(1, medication="taken")], False),
        ("not_yet", [day(1, medication="not_taken")], False),
        ("taken", [day(1, medication="not_taken"), day(2, medication="not_taken")], True),
    ],
)
def test_medication_missed(
    checkins: CheckinContent, today: str, recent: list[DaySummary], flagged: bool
) -> None:
    outcome = checkin_outcome(
        checkins.rules, CheckinAnswers(TODAY, {"medication": today}), recent
    )
    flags = {f.rule_id: f for f in outcome.flags}
    assert ("checkin_medication_missed" in flags) is flagged


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (0, None),
        (2, None),
        (3, ("checkin_silent", "low")),
        (6, ("checkin_silent", "low")),
        (7, ("checkin_silent_week", "moderate")),
        (40, ("checkin_silent_week", "moderate")),
    ],
)
def test_silent_days(checkins: CheckinContent, days: int, expected: tuple[str, str] | None) -> None:
    flag = silent_days_flag(checkins.rules, days)
    assert (None if flag is None else (flag.rule_id, flag.severity)) == expected
    if flag is not None:
        assert flag.category == "missed_checkins" and flag.details == {"days": days}


def test_checkin_settings(instruments: Instruments, checkins: CheckinContent) -> None:
    rules = checkins.rules
    assert rules.high_craving_threshold == 7
    assert rules.reminder_delay == timedelta(hours=3)
    checkin = instruments.checkin()
    ids = [i.id for i in checkin.items]
    assert ids == ["mood", "craving", "use", "halt", "sleep", "medication", "note"]
    assert "medication" not in [i.id for i in checkin.visible_items()]
    assert "medication" in [i.id for i in checkin.visible_items({"mat"})]
    assert checkin.item("note").optional
    assert {o.value for o in checkin.item("halt").options if o.exclusive} == {"none"}
    assert set(checkin.replies) >= {"default", "high_craving", "lapse"}
    assert "a lapse is not a relapse" in checkin.replies["lapse"].lower()


# --- milestones --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (0, 0, []),
        (0, 1, [1]),
        (1, 2, []),
        (2, 3, [3]),
        (6, 7, [7]),
        (7, 8, []),
        (364, 365, [365]),
        (365, 366, []),
        (729, 730, [730]),
        (730, 731, []),
        (1094, 1095, [1095]),
        (0, 400, [1, 3, 7, 14, 30, 60, 90, 180, 270, 365]),
        (100, 1100, [180, 270, 365, 730, 1095]),
        (1000, 1100, [1095]),
        (3650, 3651, []),
        (3649, 3650, [3650]),
        (500, 10, []),
        (5, 5, []),
        (-3, 1, [1]),
    ],
)
def test_milestones_reached(
    checkins: CheckinContent, previous: int, current: int, expected: list[int]
) -> None:
    assert milestones_reached(checkins.milestones, previous, current) == expected


def test_milestones_day_by_day_never_repeat(checkins: CheckinContent) -> None:
    seen: list[int] = []
    for current in range(1, 2000):
        seen += milestones_reached(checkins.milestones, current - 1, current)
    assert seen == [1, 3, 7, 14, 30, 60, 90, 180, 270, 365, 730, 1095, 1460, 1825]


def test_milestones_without_repeat_rule() -> None:
    rules = MilestoneRules(days=[1, 10])
    assert milestones_reached(rules, 0, 1000) == [1, 10]


def test_milestone_texts(checkins: CheckinContent) -> None:
    assert "One week" in checkins.milestone_text(7)
    assert "2 years" in checkins.milestone_text(730)
    assert "730" in checkins.milestone_text(730)
    assert "10 years" in checkins.milestone_text(3650)
    assert "{" not in checkins.milestone_text(42)
    for days in checkins.milestones.days:
        assert checkins.milestone_text(days)


# --- tips --------------------------------------------------------------------------------


def test_tip_library(library: Library) -> None:
    tips = library.tips()
    assert len(tips) >= 70
    assert all(len(t.text) < 400 for t in tips)
    tags = {tag for t in tips for tag in t.tags}
    for needed in ("halt:hungry", "halt:angry", "halt:lonely", "halt:tired", "craving", "sleep"):
        assert needed in tags


@pytest.mark.parametrize("preferred", [[], ["halt:tired"], ["craving", "sleep"]])
def test_tip_rotation_no_repeat_within_30_days(library: Library, preferred: list[str]) -> None:
    tips = library.tips()
    history: list[str] = []
    for n in range(60):
        recent = history[-30:]
        tip = next_tip(tips, recent, preferred, rng_seed=f"P-4821:{n}")
        assert tip.id not in recent
        history.append(tip.id)
    assert len(set(history[:30])) == 30


def test_tip_prefers_tags(library: Library) -> None:
    tips = library.tips()
    for n in range(20):
        assert "halt:lonely" in next_tip(tips, [], ["halt:lonely"], rng_seed=n).tags


def test_tip_falls_back_to_other_tags_then_oldest() -> None:
    tips = [
        Tip(id="a", text="A.", tags=["sleep"]),
        Tip(id="b", text="B.", tags=["general"]),
        Tip(id="c", text="C.", tags=["general"]),
    ]
    assert next_tip(tips, ["a"], ["sleep"], rng_seed=1).id in {"b", "c"}
    assert next_tip(tips, ["b", "a", "c"], ["sleep"], rng_seed=1).id == "b"
    assert next_tip(tips, ["c", "b", "a"], [], rng_seed=7).id == "c"


def test_tip_is_deterministic_for_a_seed(library: Library) -> None:
    tips = library.tips()
    assert next_tip(tips, [], [], rng_seed="x") == next_tip(tips, [], [], rng_seed="x")
    with pytest.raises(ValueError):
        next_tip([], [], [], rng_seed=1)


# --- cadence, exercises, resources, languages ----------------------------------------


@pytest.mark.parametrize(
    ("cadence", "last", "expected"),
    [
        (Cadence(weekday="sunday"), None, date(2024, 5, 19)),
        (Cadence(weekday="wednesday"), None, date(2024, 5, 15)),
        (Cadence(weekday="sunday"), date(2024, 5, 12), date(2024, 5, 19)),
        (Cadence(weekday="sunday"), date(2024, 5, 14), date(2024, 5, 19)),
        (Cadence(weekday="sunday"), date(2024, 5, 11), date(2024, 5, 12)),
        (Cadence(every_days=14), None, TODAY),
        (Cadence(every_days=14), date(2024, 5, 1), date(2024, 5, 15)),
    ],
)
def test_next_assessment_date(cadence: Cadence, last: date | None, expected: date) -> None:
    assert next_assessment_date(cadence, last, TODAY) == expected


def test_cadence_rules(assessments: AssessmentContent) -> None:
    rules = assessments.rules.instruments
    assert rules["weekly"].cadence.weekday == "sunday"
    assert rules["phq9"].cadence.every_days == rules["gad7"].cadence.every_days == 14
    assert assessments.phq9().rules == rules["phq9"]


def test_exercises(library: Library) -> None:
    exercises = library.exercises()
    assert [e.id for e in exercises.exercises][:4] == [
        "ride_the_wave",
        "grounding_54321",
        "halt_check",
        "tape_forward",
    ]
    wave = exercises.get("ride_the_wave")
    assert wave is not None
    assert [s.ask.key for s in wave.steps if s.ask] == ["before", "after"]
    halt = exercises.get("halt_check")
    assert halt is not None and halt.steps[0].choices is not None
    assert {c.id for c in halt.steps[0].choices} == {"hungry", "angry", "lonely", "tired"}


def test_resources() -> None:
    regions = load_regions(CONTENT)
    us = {r.id: r for r in regions.resources("us")}
    assert us["lifeline_988"].phone == "988" and us["lifeline_988"].sms == "988"
    assert us["emergency"].phone == "911"
    assert us["crisis_text_line"].sms == "741741" and "HOME" in us["crisis_text_line"].how
    assert us["samhsa_helpline"].phone == "+1 800 662 4357"
    assert us["never_use_alone"].phone == "+1 800 484 3731"
    fallback = regions.resources("zz")
    assert any(r.url == "findahelpline.com" for r in fallback)
    assert regions.resources(None) == fallback


def test_language_fallback(instruments: Instruments, assessments: AssessmentContent, library: Library) -> None:
    assert instruments.checkin("es") is instruments.checkin("en")
    assert assessments.phq9("en-US") is assessments.phq9()
    assert library.exercises("fr") is library.exercises()


def test_load_is_cached(instruments: Instruments, checkins: CheckinContent, assessments: AssessmentContent, library: Library) -> None:
    assert load_instruments(CONTENT) is instruments
    assert load_checkin_content(CONTENT) is checkins
    assert load_assessment_content(CONTENT) is assessments
    assert load_library(CONTENT) is library


# --- check_content -----------------------------------------------------------------------


def test_real_content_has_no_problems() -> None:
    assert check_content(CONTENT) == []
    assert check_library(CONTENT) == []


@pytest.fixture
def content(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


def edit(root: Path, rel: str, change: Callable[[str], str]) -> str:
    path = root / rel
    text = change(path.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")
    return text


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    found = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return found[occurrence - 1]


def problems_in(root: Path, rel: str) -> list[tuple[int, str]]:
    return [(line, message) for f, line, message in [*check_content(root), *check_library(root)] if f == rel]


def test_yaml_syntax_error_line(content: Path) -> None:
    rel = "rules/checkin.yaml"
    text = edit(
        content, rel, lambda t: t.replace("reminder_delay_hours: 3", "reminder_delay_hours: 3: 4")
    )
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "reminder_delay_hours: 3: 4")
    assert "YAML syntax error" in message


def test_missing_field_line(content: Path) -> None:
    rel = "rules/assessments.yaml"
    text = edit(
        content,
        rel,
        lambda t: t.replace(
            "        severity: high\n        category: suicide_self_harm\n",
            "        category: suicide_self_harm\n",
            1,
        ),
    )
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "- id: phq9_item9_positive")
    assert "severity" in message and "missing" in message


def test_tip_over_400_characters(content: Path) -> None:
    rel = "en/tips.yaml"
    long_text = "Take a slow breath. " * 21
    text = edit(
        content,
        rel,
        lambda t: t.replace(
            'text: "Name the urge out loud:', f'text: "{long_text}Name the urge out loud:'
        ),
    )
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, long_text)
    assert "400" in message


def test_duplicate_tip_id(content: Path) -> None:
    rel = "en/tips.yaml"
    text = edit(
        content, rel, lambda t: t.replace("- id: craving_name_it", "- id: craving_delay_15")
    )
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "- id: craving_delay_15", occurrence=2)
    assert "duplicate" in message and "craving_delay_15" in message


def test_duplicate_rule_id_across_files(content: Path) -> None:
    rel = "rules/checkin.yaml"
    text = edit(content, rel, lambda t: t.replace("- id: checkin_silent_week", "- id: gad7_severe"))
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "- id: gad7_severe")
    assert "duplicate rule id" in message


def test_threshold_out_of_range(content: Path) -> None:
    rel = "rules/assessments.yaml"
    text = edit(content, rel, lambda t: t.replace("at_least: 20}", "at_least: 30}"))
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "at_least: 30}")
    assert "outside the possible range 0–27" in message


def test_craving_threshold_out_of_range(content: Path) -> None:
    rel = "rules/checkin.yaml"
    text = edit(
        content, rel, lambda t: t.replace("high_craving_threshold: 7", "high_craving_threshold: 11")
    )
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "high_craving_threshold: 11")


def test_unknown_option_in_rule(content: Path) -> None:
    rel = "rules/checkin.yaml"
    text = edit(content, rel, lambda t: t.replace("equals: prefer_not}", "equals: yes}"))
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, "equals: yes}")
    assert "not an option" in message


def test_button_label_too_long(content: Path) -> None:
    rel = "en/instruments/checkin.yaml"
    label = "I would really rather not say anything"
    text = edit(content, rel, lambda t: t.replace('"I\'d rather not say"', f'"{label}"'))
    [(line, message)] = problems_in(content, rel)
    assert line == line_of(text, label)
    assert "30" in message


def test_unknown_key_and_bad_html(content: Path) -> None:
    rel = "en/exercises.yaml"
    text = edit(
        content,
        rel,
        lambda t: t.replace('    closing: "You are here', '    closng: "You are here').replace(
            "<b>5 things you can see</b>", "<u>5 things you can see</u>"
        ),
    )
    problems = problems_in(content, rel)
    lines = {line for line, _ in problems}
    assert line_of(text, "closng:") in lines
    assert line_of(text, "<u>5 things") in lines
    assert any("missing" in m for _, m in problems)


def test_band_gap_and_duplicate_yaml_key(content: Path) -> None:
    rel = "rules/assessments.yaml"
    text = edit(
        content,
        rel,
        lambda t: t.replace("{id: mild, min: 5, max: 9}", "{id: mild, min: 6, max: 9}").replace(
            "      every_days: 14\n", "      every_days: 14\n      every_days: 7\n", 1
        ),
    )
    problems = problems_in(content, rel)
    assert (line_of(text, "{id: mild, min: 6"),) in {(line,) for line, _ in problems}
    assert any(
        "duplicate key" in m and line == line_of(text, "every_days: 7") for line, m in problems
    )


def test_missing_file(content: Path) -> None:
    (content / "en" / "instruments" / "gad7.yaml").unlink()
    problems = check_content(content)
    assert ("en/instruments/gad7.yaml", 0, "file is missing") in problems


def test_second_language_must_match_structure(content: Path) -> None:
    source = content / "en" / "instruments" / "checkin.yaml"
    target = content / "es" / "instruments" / "checkin.yaml"
    target.parent.mkdir(parents=True)
    text = source.read_text(encoding="utf-8").replace("value: prefer_not", "value: no_digo")
    target.write_text(text, encoding="utf-8")
    [(line, message)] = problems_in(content, "es/instruments/checkin.yaml")
    assert line == line_of(text, "- id: use")
    assert "same kind, options and scores" in message


def test_loading_raises_on_broken_content(content: Path) -> None:
    edit(
        content,
        "en/tips.yaml",
        lambda t: t.replace("- id: craving_name_it", "- id: craving_delay_15"),
    )
    with pytest.raises(ContentError) as info:
        load_library(content)
    assert info.value.problems[0][0] == "en/tips.yaml"


# --- the suicide follow-up after PHQ-9 item 9 ---------------------------------------------


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        # A skip that goes backwards (or nowhere) would loop or lose a question.
        (("if_no_skip_to: preparation}", "if_no_skip_to: wish_dead}"), "if_no_skip_to: wish_dead", "not a later question"),
        (("if_no_skip_to: preparation}", "if_no_skip_to: nowhere}"), "if_no_skip_to: nowhere", "not a later question"),
        # Only the last grade is the default.
        (("          severity: crisis\n          reply: crisis\n", "          severity: crisis\n          reply: crisis\n        - id: extra\n          severity: high\n          reply: same_day\n"), "- id: extra", "only the last grade"),
        # A question without wording for the patient.
        (("- {id: plan, label: \"plan\"}", "- {id: plans, label: \"plan\"}"), "id: plans", "no wording for 'plans'"),
        # A grade on a question that does not exist.
        (("{field: followup.plan, equals: true}", "{field: followup.plans, equals: true}"), "followup.plans", "unknown field"),
        # The rule asks for a follow-up that is not there.
        (("category: anxiety\n", "category: anxiety\n        action: suicide_followup\n"), "category: anxiety", "needs `suicide_followup`"),
    ],
)
def test_suicide_followup_rules_are_checked(
    content: Path, change: tuple[str, str], needle: str, message: str
) -> None:
    rel = "rules/assessments.yaml"
    text = edit(content, rel, lambda t: t.replace(*change, 1))
    assert needle in text
    problems = problems_in(content, rel)
    assert problems, "a broken follow-up must not load"
    assert any(message in m for _, m in problems), problems


def test_suicide_followup_branching_and_grades(assessments: AssessmentContent) -> None:
    rules = assessments.rules.for_instrument("phq9")
    assert rules is not None and rules.suicide_followup is not None
    f = rules.suicide_followup
    order = [q.id for q in f.questions]
    assert order == ["wish_dead", "thoughts", "method", "intent", "plan", "preparation"]
    # "No" to thoughts of killing oneself skips to preparation, as in the screener.
    assert f.next_question({"wish_dead": True, "thoughts": False}).id == "preparation"  # type: ignore[union-attr]
    assert f.next_question({"wish_dead": False, "thoughts": True}).id == "method"  # type: ignore[union-attr]
    assert f.next_question(dict.fromkeys(order, False)) is None
    assert f.grade({"wish_dead": True, "thoughts": False, "preparation": False}).severity == "high"
    assert f.grade(dict.fromkeys(order, False)).severity == "high"
    for q in ("method", "intent", "plan", "preparation"):
        assert f.grade({q: True}).severity == "crisis", q
    assert f.describe(2, {"thoughts": True, "method": True}) == "PHQ-9 item 9 = 2; C-SSRS: thoughts, method"
    assert f.describe(1, {}) == "PHQ-9 item 9 = 1; C-SSRS: all no"
