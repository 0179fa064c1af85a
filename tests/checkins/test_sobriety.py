"""The sobriety counter: streaks, totals that survive a lapse, milestones once each, sharing."""

from __future__ import annotations

from datetime import date

import pytest

from bot.checkins import sobriety
from bot.checkins.rules import load_checkin_content, milestones_reached
from bot.core.models import Patient
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests.checkins_support import content, make_patient

RULES = load_checkin_content(content().root).milestones


async def test_counter_from_the_sobriety_date(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 1))
    async with db.transaction() as s:
        n = await sobriety.numbers(s, p.id, date(2026, 3, 2), clock.now())
    assert n is not None
    assert (n.current_days, n.longest_days, n.total_days, n.lapses) == (29, 29, 29, 0)


async def test_no_sobriety_date_means_no_counter(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now())
    async with db.transaction() as s:
        assert await sobriety.numbers(s, p.id, date(2026, 3, 2), clock.now()) is None
        assert await sobriety.record_lapse(s, p.id, date(2026, 3, 2), clock.now()) is None


async def test_a_lapse_restarts_the_streak_and_keeps_the_total(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 1, 1))
    async with db.transaction() as s:
        n = await sobriety.record_lapse(s, p.id, date(2026, 1, 31), clock.now())
        assert n is not None and (n.current_days, n.longest_days, n.total_days) == (0, 30, 30)
        again = await sobriety.record_lapse(s, p.id, date(2026, 1, 31), clock.now())  # same day: once
        assert again is not None and again.lapses == 1
    async with db.transaction() as s:
        n = await sobriety.numbers(s, p.id, date(2026, 2, 10), clock.now())
    assert n is not None
    assert (n.current_days, n.longest_days, n.total_days, n.lapses) == (10, 30, 40, 1)
    assert n.last_lapse == date(2026, 1, 31)
    async with db.transaction() as s:
        await sobriety.record_lapse(s, p.id, date(2026, 2, 15), clock.now())
        n = await sobriety.numbers(s, p.id, date(2026, 4, 1), clock.now())
    assert n is not None
    # 30 + 15 sober days before, then 45 since February 15.
    assert (n.current_days, n.longest_days, n.total_days, n.lapses) == (45, 45, 90, 2)
    async with db.session() as s:
        assert await sobriety.lapse_dates(s, p.id) == [date(2026, 1, 31), date(2026, 2, 15)]


async def test_a_new_sobriety_date_restarts_the_streak(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 1))
    async with db.transaction() as s:
        await sobriety.numbers(s, p.id, date(2026, 3, 2), clock.now())
        row = await s.get(Patient, p.id)
        assert row is not None
        row.sobriety_date = date(2026, 3, 1)
    async with db.transaction() as s:
        n = await sobriety.numbers(s, p.id, date(2026, 3, 2), clock.now())
    assert n is not None and n.current_days == 1 and n.total_days >= 1


@pytest.mark.parametrize(
    ("prev", "cur", "reached"),
    [(0, 1, [1]), (1, 2, []), (2, 3, [3]), (6, 7, [7]), (0, 30, [1, 3, 7, 14, 30]), (364, 365, [365]),
     (365, 729, []), (729, 730, [730]), (1094, 1095, [1095]), (5, 4, [])],
)
def test_milestone_days_are_data(prev: int, cur: int, reached: list[int]):
    assert milestones_reached(RULES, prev, cur) == reached


async def test_milestones_once_each(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 23))  # 7 days on March 2
    got = []
    for day in (date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 9)):
        async with db.transaction() as s:
            got.append(await sobriety.due_milestone(s, p.id, RULES, day, clock.now()))
    assert got == [7, None, None, 14]
    # After a lapse, the new streak's milestones are congratulated again.
    async with db.transaction() as s:
        await sobriety.record_lapse(s, p.id, date(2026, 3, 10), clock.now())
        assert await sobriety.due_milestone(s, p.id, RULES, date(2026, 3, 11), clock.now()) == 1
        assert await sobriety.due_milestone(s, p.id, RULES, date(2026, 3, 11), clock.now()) is None


async def test_share_choice_is_stored(db: Database, clock: FrozenClock):
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 23))
    async with db.transaction() as s:
        assert await sobriety.set_share(s, p.id, 7, True, clock.now())
        assert await sobriety.set_share(s, p.id, 14, False, clock.now())
    async with db.session() as s:
        assert await sobriety.shared_milestones(s, p.id) == {7: True, 14: False}
