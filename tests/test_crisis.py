"""The crisis reply: built from content alone, honest about office hours, valid Telegram HTML."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot import crisis
from bot.config import OfficeHours
from fakeapi.entities import parse_html

HOURS = OfficeHours("Mon-Fri 09:00-17:00")
ZONE = "America/New_York"
# Tuesday 3 March 2026, 10:00 in New York; Saturday 7 March 2026, 03:00 in New York.
WEEKDAY_MORNING = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
SATURDAY_3AM = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)


def test_every_us_resource_is_in_the_reply():
    text = crisis.crisis_message("en", "us", None, HOURS, WEEKDAY_MORNING, zone=ZONE)
    for needle in ("988", "911", "741741", "SAMHSA", "Never Use Alone", "+1 800 662 4357", "+1 800 484 3731"):
        assert needle in text
    parse_html(text)  # the fake Bot API (as strict as Telegram) accepts it


def test_inside_office_hours_says_today():
    text = crisis.crisis_message("en", "us", None, HOURS, WEEKDAY_MORNING, zone=ZONE)
    assert "17:00" in text and "today" in text


def test_at_3am_on_saturday_it_says_monday():
    text = crisis.crisis_message("en", "us", None, HOURS, SATURDAY_3AM, zone=ZONE)
    assert "not working" in text
    assert "Monday at 09:00" in text


def test_late_evening_says_tomorrow():
    tue_22h = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)  # Tuesday 22:00 in New York
    text = crisis.crisis_message("en", "us", None, HOURS, tue_22h, zone=ZONE)
    assert "tomorrow at 09:00" in text


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


def test_it_still_works_when_the_clinical_loader_fails(monkeypatch: pytest.MonkeyPatch):
    import bot.clinical

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("broken content elsewhere")

    monkeypatch.setattr(bot.clinical, "load_clinical", broken)
    text = crisis.crisis_message("en", "us", None, HOURS, SATURDAY_3AM, zone=ZONE)
    assert "988" in text and "Never Use Alone" in text


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
