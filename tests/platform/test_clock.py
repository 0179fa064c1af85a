from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from bot.platform.clock import FrozenClock, local_date, local_datetime, next_local_due

NY = "America/New_York"


def test_spring_forward_gap_moves_forward_and_happens_once():
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day.
    due = local_datetime(date(2026, 3, 8), time(2, 30), NY)
    assert due == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT
    nxt = next_local_due(time(2, 30), NY, due)
    assert nxt.astimezone(ZoneInfo(NY)).date() == date(2026, 3, 9)


def test_fall_back_ambiguous_time_happens_once_at_first_occurrence():
    # 2026-11-01 01:30 happens twice in New York; we use the first (EDT).
    first = next_local_due(time(1, 30), NY, datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second = next_local_due(time(1, 30), NY, first)
    assert second == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_daily_evening_time_across_both_dst_changes_keeps_local_wall_time():
    t = time(20, 30)
    at = datetime(2026, 3, 6, 0, 0, tzinfo=UTC)
    for _ in range(5):
        at = next_local_due(t, NY, at)
        assert at.astimezone(ZoneInfo(NY)).time() == t


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
    st.times(),
    st.sampled_from([NY, "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC", "America/St_Johns"]),
)
def test_next_local_due_is_after_within_two_days_and_one_per_local_date(naive, t, zone):
    after = naive.replace(tzinfo=UTC)
    due = next_local_due(t, zone, after)
    assert after < due <= after + timedelta(days=2, hours=1)
    again = next_local_due(t, zone, due)
    assert local_date(again, zone) > local_date(due, zone)


def test_frozen_clock_moves_only_when_told():
    c = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert c.now() == datetime(2026, 1, 1, tzinfo=UTC)
    c.advance(minutes=5)
    assert c.now() == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
