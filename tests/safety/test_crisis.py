"""The crisis reply: built from content alone, honest about office hours, valid Telegram HTML."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.platform.config import OfficeHours
from bot.safety import crisis
from fakeapi.entities import parse_html

HOURS = OfficeHours("Mon-Fri 09:00-17:00")
ZONE = "America/New_York"
# Tuesday 3 March 2026, 10:00 in New York; Saturday 7 March 2026, 03:00 in New York.
WEEKDAY_MORNING = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
SATURDAY_3AM = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)


def test_without_a_category_the_default_resources_lead_with_988():
    text = crisis.crisis_message("en", "us", None, HOURS, WEEKDAY_MORNING, zone=ZONE)
    assert "988" in text.splitlines()[0]
    for needle in ("911", "SAMHSA", "+1 800 662 4357"):
        assert needle in text
    assert "Never Use Alone" not in text
    parse_html(text)  # the fake Bot API (as strict as Telegram) accepts it


def test_inside_office_hours_says_today():
    text = crisis.crisis_message("en", "us", None, HOURS, WEEKDAY_MORNING, zone=ZONE)
    assert "5:00 pm" in text and "today" in text


def test_at_3am_on_saturday_it_says_monday():
    text = crisis.crisis_message("en", "us", None, HOURS, SATURDAY_3AM, zone=ZONE)
    assert "not working" in text
    assert "Monday at 9:00 am" in text


def test_late_evening_says_tomorrow():
    tue_22h = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)  # Tuesday 22:00 in New York
    text = crisis.crisis_message("en", "us", None, HOURS, tue_22h, zone=ZONE)
    assert "tomorrow at 9:00 am" in text


def test_without_office_hours_it_promises_nothing_precise():
    text = crisis.crisis_message("en", "us", None, None, WEEKDAY_MORNING, zone=ZONE)
    assert "as soon as they can" in text


def test_the_patients_plan_is_included_and_escaped():
    lines = ["Call my sister — +1 555 0100", "Walk to <the> park & breathe"]
    text = crisis.crisis_message("en", "us", lines, HOURS, WEEKDAY_MORNING, zone=ZONE)
    assert "Your plan" in text
    assert "&lt;the&gt; park &amp; breathe" in text
    parse_html(text)


def test_unknown_region_falls_back_to_international():
    text = crisis.crisis_message("en", "xx", None, HOURS, WEEKDAY_MORNING, zone=ZONE)
    assert "findahelpline.com" in text


def test_it_still_works_when_the_resource_loader_fails(monkeypatch: pytest.MonkeyPatch):
    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("broken content elsewhere")

    monkeypatch.setattr(crisis, "load_regions", broken)
    for category, needle in (("suicide_self_harm", "Crisis Text Line"), ("overdose_medical", "Never Use Alone")):
        text = crisis.crisis_message("en", "us", None, HOURS, SATURDAY_3AM, zone=ZONE, category=category)
        assert "911" in text and needle in text


@pytest.mark.parametrize(
    ("now", "open_now"),
    [
        (datetime(2026, 3, 2, 13, 59, tzinfo=UTC), False),  # Monday 08:59
        (datetime(2026, 3, 2, 14, 0, tzinfo=UTC), True),  # Monday 09:00
        (datetime(2026, 3, 2, 21, 59, tzinfo=UTC), True),  # Monday 16:59
        (datetime(2026, 3, 2, 22, 0, tzinfo=UTC), False),  # Monday 17:00
        (datetime(2026, 3, 8, 15, 0, tzinfo=UTC), False),  # Sunday (DST day)
    ],
)
def test_availability_edges(now: datetime, open_now: bool):
    assert crisis.availability(HOURS, now, ZONE).open_now is open_now


def test_next_opening_after_dst_change_is_local_nine():
    a = crisis.availability(HOURS, datetime(2026, 3, 8, 15, 0, tzinfo=UTC), ZONE)
    assert a.next_open == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 09:00 EDT


# -- resources per kind of crisis, driven by the code's own list of categories -----------------

from bot.core.vocabulary import Category  # noqa: E402

OVERDOSE_OR_USE = {"overdose_medical", "use_disclosure"}
# What each kind of crisis must show; every other category gets the default list (988 first).
MUST: dict[str, tuple[str, list[str]]] = {
    "suicide_self_harm": ("988", ["911", "988lifeline.org", "text 988"]),
    "overdose_medical": ("911", ["Naloxone", "Signs of an overdose", "Never Use Alone", "+1 800 484 3731"]),
    "use_disclosure": ("911", ["Naloxone", "Signs of an overdose", "Never Use Alone"]),
    "abuse_violence": ("911", ["National Domestic Violence Hotline", "1-800-799-7233", "START to 88788"]),
    "harm_to_others": ("911", ["988"]),
}
REGIONS = sorted(p.stem for p in (crisis.DEFAULT_CONTENT_DIR / "resources").glob("*.yaml"))


def test_every_category_named_in_the_table_is_a_real_category():
    assert set(MUST) <= set(Category)


@pytest.mark.parametrize("category", list(Category))
def test_each_category_gets_its_resources_first_and_fits_one_screen(category: str):
    first, needles = MUST.get(category, ("988", ["911"]))
    text = crisis.crisis_message("en", "us", ["Call Ana — +1 555 0100"], HOURS, SATURDAY_3AM, zone=ZONE, category=category)
    plain = parse_html(text).text
    head = plain[: plain.index("Your plan")]
    assert len(head) <= crisis.HEAD_MAX
    assert first in head.splitlines()[0]  # the most important line first
    for needle in needles:
        assert needle in head
    if category in OVERDOSE_OR_USE:
        assert "Never Use Alone" in head
    else:
        assert "Never Use Alone" not in plain  # never in a suicide reply, nor any other but use
    direct = parse_html(crisis.crisis_message("en", "us", None, category=category, care_team=False)).text
    assert len(direct) <= crisis.HEAD_MAX and direct.startswith("📞")


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("category", (None, *Category))
def test_every_region_has_resources_for_every_category(region: str, category: str | None):
    found = crisis.resources(region, "en", category=category)
    assert found
    head = parse_html(crisis.head("en", region, category)).text
    assert len(head) <= crisis.HEAD_MAX
    if category in ("suicide_self_harm", "depression"):
        assert all(r.id != "never_use_alone" for r in found)


COMBINED = ["suicide_self_harm+overdose_medical"]


@pytest.mark.parametrize("category", COMBINED)
def test_an_overdose_with_words_of_suicide_leads_with_911_and_never_says_before_you_use(category: str):
    text = parse_html(crisis.crisis_message("en", "us", None, category=category, care_team=False)).text
    assert "911" in text.splitlines()[0] and "988" in text and "Never Use Alone" not in text
    assert len(text) <= crisis.HEAD_MAX
    # A pair without a list of its own gets its first kind's.
    assert crisis.resources("us", "en", category="abuse_violence+harm_to_others") == crisis.resources("us", "en", category="abuse_violence")


def test_the_signal_names_both_kinds_for_the_resources():
    from bot.safety.service import Signal

    assert Signal("crisis", "suicide_self_harm", (), False, ("overdose_medical",)).resource_category == "suicide_self_harm+overdose_medical"
    assert Signal("crisis", "overdose_medical", (), False, ("suicide_self_harm",)).resource_category == "suicide_self_harm+overdose_medical"
    assert Signal("crisis", "overdose_medical", (), False).resource_category == "overdose_medical"


def test_content_check_catches_a_reply_too_long_and_an_unknown_category(tmp_path):
    import shutil

    from bot.core.rules_loader import check_content as check_clinical

    def check(root):  # type: ignore[no-untyped-def]
        return [f"{f}:{line}: {m}" for f, line, m in crisis.check_content(root) + list(check_clinical(root))]

    root = tmp_path / "content"
    shutil.copytree(crisis.DEFAULT_CONTENT_DIR, root)
    us = root / "resources" / "us.yaml"
    text = us.read_text(encoding="utf-8")
    text = text.replace('description: "Free, confidential, any hour."', 'description: "' + "Free. " * 80 + '"', 1)
    text = text.replace("  harm_to_others:", "  not_a_category: [emergency]\n  harm_to_others:", 1)
    text = text.replace("  harm_to_others:", "  suicide_self_harm+nope: [emergency]\n  harm_to_others:", 1)
    us.write_text(text, encoding="utf-8")
    problems = check(root)
    assert any("suicide_self_harm" in p and "before the plan" in p for p in problems)
    assert any("unknown category 'not_a_category'" in p for p in problems)
    assert any("unknown category 'nope'" in p for p in problems)
    text = text.replace("  not_a_category: [emergency]\n", "  depression: [no_such_resource]\n", 1)
    us.write_text(text, encoding="utf-8")
    assert any("no resource 'no_such_resource'" in p for p in check(root))


# -- the counselors' hours in the patient's own zone ---------------------------------------------


def test_the_counselor_line_is_in_the_patients_zone_with_the_zone_named():
    line = crisis.counselor_line("en", HOURS, SATURDAY_3AM, zone=ZONE, patient_zone="Asia/Tokyo")
    # Monday 09:00 in New York (EDT from 8 March) is Monday 22:00 in Tokyo.
    assert "Monday at 10:00 pm" in line and "Asia/Tokyo" in line and "9:00 am" not in line
    same = crisis.counselor_line("en", HOURS, SATURDAY_3AM, zone=ZONE)
    assert "Monday at 9:00 am" in same and ZONE in same
    open_now = crisis.counselor_line("en", HOURS, WEEKDAY_MORNING, zone=ZONE, patient_zone="Europe/London")
    assert "10:00 pm" in open_now and "Europe/London" in open_now  # 17:00 in New York


def test_late_evening_in_the_clinic_is_tomorrow_for_the_clinic_but_said_in_the_patients_day():
    tue_22h = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)  # Tuesday 22:00 in New York, Wednesday 04:00 in Berlin
    line = crisis.counselor_line("en", HOURS, tue_22h, zone=ZONE, patient_zone="Europe/Berlin")
    assert "today at 3:00 pm" in line  # Wednesday 09:00 in New York is 15:00 the same day in Berlin


def test_a_live_conversation_replaces_office_hours():
    line = crisis.counselor_line("en", HOURS, SATURDAY_3AM, zone=ZONE, live=True)
    assert "talking with you" in line and "Monday" not in line and "earliest" not in line
