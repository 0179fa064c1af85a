"""Unit tests for the patient-facing polish: plan entries with a name in brackets, the progress
chart's figure (axes and legend, not pixels), the clock-time formatter."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.checkins.charts import ChartDay, ChartLabels, figure
from bot.recovery.plans import validate_entry
from bot.recovery.rules import load_sos_rules
from tests.conftest import CONTENT_DIR

PLAN = load_sos_rules(CONTENT_DIR).plan

# -- plan entries -----------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
NAME_WORDS = st.lists(WORD, min_size=1, max_size=3).map(" ".join)
# A name, maybe with a role in brackets: "Sam", "Sam (sponsor)", "Aunt May [church]".
NAME = st.tuples(NAME_WORDS, st.sampled_from(["", "()", "[]"]), NAME_WORDS).map(
    lambda t: t[0] if not t[1] else f"{t[0]} {t[1][0]}{t[2]}{t[1][1]}"
)
PHONES = {
    "617 555 0134": "+1 617 555 0134",
    "(617) 555-0134": "+1 617 555 0134",
    "+1 617-555-0134": "+1 617 555 0134",
    "6175550134": "+1 617 555 0134",
    "+44 7946 095800": "+44 7946 095800",
}
LAYOUT = st.sampled_from(["{n} {p}", "{n}: {p}", "{n} - {p}", "{n} — {p}", "{p} {n}", "{n}, {p}", "{n} ({p})"])


@settings(max_examples=300, deadline=None)
@given(name=NAME, phone=st.sampled_from(sorted(PHONES)), layout=LAYOUT)
@example(name="A (X)", phone="(617) 555-0134", layout="{n} {p}")  # a one-letter bracket before the number
def test_plan_entry_keeps_the_name_whole_and_finds_the_number(name: str, phone: str, layout: str) -> None:
    text, number = validate_entry("people", layout.format(n=name, p=phone), PLAN)
    assert text == name
    assert number == PHONES[phone]


@pytest.mark.parametrize(
    "raw, name",
    [
        ("Sam (sponsor) 617 555 0134", "Sam (sponsor)"),
        ("Sam (sponsor, 617 555 0134)", "Sam (sponsor)"),
        ("Sam (sponsor — 617 555 0134)", "Sam (sponsor)"),
        ("Dr. Lee (therapist): 617 555 0134", "Dr. Lee (therapist)"),
        ("(sponsor) Sam 617 555 0134", "(sponsor) Sam"),
        ("Sam (617 555 0134)", "Sam"),
        ("Sam ((617) 555-0134)", "Sam"),
    ],
)
def test_plan_entry_brackets_around_the_number(raw: str, name: str) -> None:
    assert validate_entry("people", raw, PLAN) == (name, "+1 617 555 0134")


# -- the progress chart -----------------------------------------------------------------------


def _days(*, lapse_on: int | None = None, checkins: bool = True) -> list[ChartDay]:
    start = date(2026, 2, 1)
    return [
        ChartDay(start + timedelta(i), mood=(i % 5) + 1, craving=(i * 3) % 11, checked_in=checkins and i % 3 != 0, lapse=i == lapse_on)
        for i in range(30)
    ]


def _legend_texts(fig) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_chart_craving_axis_holds_only_craving_and_checkins_sit_on_their_own_strip() -> None:
    labels = ChartLabels()
    days = _days()
    fig = figure(days, labels)
    ax_mood, ax_crav, ax_days = fig.axes
    lo, hi = ax_crav.get_ylim()
    assert lo >= -0.5 and hi <= 10.5
    for line in ax_crav.get_lines():
        ys = [float(y) for y in line.get_ydata()]
        assert ys and all(0 <= y <= 10 for y in ys)
    assert [float(y) for y in ax_crav.get_lines()[0].get_ydata()] == [float(d.craving) for d in days if d.craving is not None]
    # Check-in markers: one per day with a check-in, on the strip below, with no scale of its own.
    (marks,) = ax_days.get_lines()
    assert len(marks.get_xdata()) == sum(d.checked_in for d in days)
    assert list(ax_days.get_yticks()) == []
    assert _legend_texts(fig) == [labels.checkin]


def test_chart_names_a_lapse_only_when_there_was_one() -> None:
    labels = ChartLabels()
    assert labels.lapse not in _legend_texts(figure(_days(), labels))
    with_lapse = figure(_days(lapse_on=10), labels)
    assert _legend_texts(with_lapse) == [labels.checkin, labels.lapse]
    # A lapse band on each panel, over that day only.
    for ax in with_lapse.axes:
        assert len(ax.patches) == 1
    # No check-ins and no lapse: no legend at all.
    assert _legend_texts(figure(_days(checkins=False), labels)) == []


# -- free text: the rules and their words ------------------------------------------------------


def test_free_text_content_check_wants_a_line_for_every_group_and_flow(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import yaml

    from bot.safety import free_text

    assert free_text.check_content(CONTENT_DIR) == []
    root = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, root)
    f = root / "en" / free_text.MESSAGES_FILE
    doc = yaml.safe_load(f.read_text(encoding="utf-8"))
    group = next(iter(doc["free_text"]["distress"]))
    del doc["free_text"]["distress"][group]
    del doc["free_text"]["in_flow"]["checkin"]
    f.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    problems = [p[2] for p in free_text.check_content(root)]
    assert f"free_text.distress.{group} is missing" in problems
    assert "free_text.in_flow.checkin is missing" in problems
    (root / free_text.RULES_FILE).write_text("distress: {x: ['(']}\n", encoding="utf-8")
    assert free_text.check_content(root)


@pytest.mark.parametrize(
    "text, kind",
    [
        ("hello", "other"),
        ("yes", "other"),
        ("leave me alone", "other"),
        ("I'm down for the group tomorrow", "other"),
        ("tyrant", "other"),
        ("thanks, but honestly I feel awful", "distress"),
        ("I’m so tired of everything", "distress"),  # a typographic apostrophe
        ("thank you for the reminder about the meeting tomorrow, I will try to be there early", "other"),
    ],
)
def test_free_text_reading(text: str, kind: str) -> None:
    from bot.safety import free_text

    assert free_text.read(text, CONTENT_DIR).kind == kind
