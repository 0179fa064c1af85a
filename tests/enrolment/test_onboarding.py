"""Onboarding as services (no Telegram): steps, erasure, codes, parsers, settings, staff."""

from __future__ import annotations

from datetime import date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.core import staff, state
from bot.core.audit import entries
from bot.core.lifecycle import Lifecycle
from bot.core.models import ChatState, Patient, StaffRole
from bot.enrolment import invites, onboarding
from bot.enrolment import settings as settings_service
from bot.enrolment.onboarding import DateProblem, parse_past_date, parse_time
from bot.enrolment.settings import SettingError
from bot.enrolment.timezones import is_valid_zone, parse_zone, zone_at
from bot.platform.clock import FrozenClock
from bot.platform.db import Database

TG = 5550001
TODAY = date(2026, 3, 2)


# Parsers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("20:30", time(20, 30)),
        ("8pm", time(20, 0)),
        ("8:30 pm", time(20, 30)),
        ("8:30 P.M.", time(20, 30)),
        ("7 am", time(7, 0)),
        ("12am", time(0, 0)),
        ("12pm", time(12, 0)),
        ("0830", time(8, 30)),
        ("8.30", time(8, 30)),
        ("21h15", time(21, 15)),
        ("noon", time(12, 0)),
        ("9", time(9, 0)),
    ],
)
def test_parse_time_accepts(text: str, expected: time):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["", "25:00", "8:75", "13pm", "0am", "abc", "8:3", "tomorrow", "12345", "-1", "8pmx"])
def test_parse_time_refuses(text: str):
    assert parse_time(text) is None


@given(st.integers(0, 23), st.integers(0, 59))
def test_parse_time_round_trips(h: int, m: int):
    assert parse_time(f"{h:02d}:{m:02d}") == time(h, m)
    h12 = h % 12 or 12
    assert parse_time(f"{h12}:{m:02d} {'am' if h < 12 else 'pm'}") == time(h, m)


@given(st.text(max_size=60))
def test_parse_time_never_crashes(text: str):
    parse_time(text)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-01-15", date(2026, 1, 15)),
        ("1/15/2026", date(2026, 1, 15)),
        ("15.01.2026", date(2026, 1, 15)),
        ("Jan 15 2026", date(2026, 1, 15)),
        ("15 January 2026", date(2026, 1, 15)),
        ("March 2025", date(2025, 3, 1)),
        ("today", TODAY),
        ("Yesterday", date(2026, 3, 1)),
    ],
)
def test_parse_past_date_accepts(text: str, expected: date):
    assert parse_past_date(text, TODAY) == expected


@pytest.mark.parametrize(
    "text,reason",
    [
        ("banana", "garbage"),
        ("", "garbage"),
        ("2025", "garbage"),
        ("13/13/2020", "garbage"),
        ("2030-01-01", "future"),
        ("2026-03-03", "future"),
        ("1/1/1900", "too_old"),
        ("9" * 40, "garbage"),
    ],
)
def test_parse_past_date_refuses(text: str, reason: str):
    with pytest.raises(DateProblem) as e:
        parse_past_date(text, TODAY)
    assert e.value.reason == reason


@given(st.text(max_size=50))
def test_parse_past_date_only_returns_past_dates(text: str):
    try:
        d = parse_past_date(text, TODAY)
    except DateProblem:
        return
    assert onboarding.EARLIEST_SOBRIETY <= d <= TODAY


def test_time_zones():
    assert parse_zone("America/Chicago") == "America/Chicago"
    assert parse_zone("america/chicago") == "America/Chicago"
    assert parse_zone("  new   york ") == "America/New_York"
    assert parse_zone("PST") == "America/Los_Angeles"
    for bad in ("", "Narnia", "../../etc/passwd", "/etc/localtime", "x" * 200, "America/"):
        assert parse_zone(bad) is None
        assert not is_valid_zone(bad)
    assert zone_at(40.71, -74.0) == "America/New_York"
    assert zone_at(52.52, 13.40) == "Europe/Berlin"
    assert zone_at(91, 0) is None and zone_at(0, 181) is None


# Patient codes ---------------------------------------------------------------------------------


async def test_patient_codes_are_random_and_grow_when_crowded(db: Database, clock: FrozenClock, monkeypatch):
    async with db.transaction() as s:
        seen = set()
        for i in range(30):
            code = await onboarding.new_patient_code(s)
            assert code not in seen and len(code) == 6
            seen.add(code)
            s.add(Patient(telegram_id=i + 1, code=code, created_at=clock.now()))
            await s.flush()
    # Every pick collides: the code grows to five digits rather than looping forever.
    monkeypatch.setattr(onboarding.secrets, "randbelow", lambda n: 0)
    async with db.transaction() as s:
        s.add(Patient(telegram_id=999, code="P-1000", created_at=clock.now()))
        await s.flush()
        assert await onboarding.new_patient_code(s) == "P-10000"


# Steps -----------------------------------------------------------------------------------------


async def _invite(db: Database, clock: FrozenClock) -> str:
    async with db.transaction() as s:
        cohort = await invites.find_cohort(s, "Test cohort") or await invites.create_cohort(s, "Test cohort", actor_id=1, now=clock.now())
        return (await invites.create_invite(s, created_by=1, now=clock.now(), cohort_id=cohort.id)).code


async def _nothing_stored(db: Database) -> None:
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Patient))).scalar_one() == 0
        assert (await s.execute(select(func.count()).select_from(ChatState))).scalar_one() == 0


async def test_steps_in_order(db: Database, clock: FrozenClock):
    code = await _invite(db, clock)
    now = clock.now()
    ran: list[int] = []

    async def hook(session, patient_id, at):  # type: ignore[no-untyped-def]
        ran.append(patient_id)

    lifecycle = Lifecycle()
    lifecycle.on_activated(hook)
    lifecycle.on_activated(hook)  # twice is once
    async with db.transaction() as s:
        p = await onboarding.start(s, TG, code, now)
        assert p.kind == "step" and p.step == onboarding.AGE
        row = (await s.execute(select(Patient))).scalar_one()
        assert row.first_name is None and row.consent_version is None
        # Out of order: stale, nothing changes.
        assert (await onboarding.answer_mat(s, TG, True, now, lifecycle=lifecycle)).kind == "stale"
        assert (await onboarding.answer_age(s, TG, True, now)).step == onboarding.CONSENT
        p = await onboarding.answer_consent(s, TG, True, version="v1", first_name="Sam", now=now)
        assert p.step == onboarding.TIMEZONE
        with pytest.raises(ValueError):
            await onboarding.answer_timezone(s, TG, "Mars/Olympus", now)
        await onboarding.answer_timezone(s, TG, "Europe/London", now)
        await onboarding.answer_checkin_time(s, TG, time(9, 15, 33), now)
        await onboarding.answer_sobriety(s, TG, date(2025, 12, 1), now)
        done = await onboarding.answer_mat(s, TG, False, now, lifecycle=lifecycle)
    assert done.kind == "done" and done.patient is not None
    assert done.patient.checkin_time == time(9, 15) and done.patient.status == "active"
    assert ran == [done.patient.id]
    async with db.transaction() as s:
        assert (await onboarding.start(s, TG, None, now)).kind == "active"
        assert await state.get(s, TG) is None
        actions = [e.action for e in await entries(s, subject=done.patient.code)]
    assert actions == ["patient.consent", "patient.enrolled"]


@pytest.mark.parametrize("where", ["age", "consent"])
async def test_refusals_erase_everything(db: Database, clock: FrozenClock, where: str):
    code = await _invite(db, clock)
    now = clock.now()
    async with db.transaction() as s:
        await onboarding.start(s, TG, code, now)
        if where == "age":
            assert (await onboarding.answer_age(s, TG, False, now)).kind == "erased"
        else:
            await onboarding.answer_age(s, TG, True, now)
            r = await onboarding.answer_consent(s, TG, False, version="v1", first_name="Sam", now=now)
            assert r.kind == "erased"
    await _nothing_stored(db)
    async with db.session() as s:
        assert {e.action for e in await entries(s)} == {"cohort.create", "invite.create"}


async def test_single_use_code_taken_meanwhile(db: Database, clock: FrozenClock):
    code = await _invite(db, clock)
    now = clock.now()
    async with db.transaction() as s:
        await onboarding.start(s, TG, code, now)
        await onboarding.start(s, TG + 1, code, now)
        for who in (TG, TG + 1):
            await onboarding.answer_age(s, who, True, now)
        ok = await onboarding.answer_consent(s, TG, True, version="v1", first_name="A", now=now)
        late = await onboarding.answer_consent(s, TG + 1, True, version="v1", first_name="B", now=now)
    assert ok.kind == "step" and late.kind == "invite" and late.invite_status == "used"
    async with db.session() as s:
        assert [p.telegram_id for p in (await s.execute(select(Patient))).scalars()] == [TG]


# Settings and staff ----------------------------------------------------------------------------


async def _active(db: Database, clock: FrozenClock) -> int:
    code = await _invite(db, clock)
    now = clock.now()
    async with db.transaction() as s:
        await onboarding.start(s, TG, code, now)
        await onboarding.answer_age(s, TG, True, now)
        await onboarding.answer_consent(s, TG, True, version="v1", first_name="Sam", now=now)
        await onboarding.answer_timezone(s, TG, "America/Denver", now)
        await onboarding.answer_checkin_time(s, TG, time(20, 0), now)
        await onboarding.answer_sobriety(s, TG, None, now)
        done = await onboarding.answer_mat(s, TG, False, now, lifecycle=Lifecycle())
    assert done.patient is not None
    return done.patient.id


async def test_settings_changes_run_hooks_and_audit_without_values(db: Database, clock: FrozenClock):
    pid = await _active(db, clock)
    changed: list[int] = []

    async def hook(session, patient_id, at):  # type: ignore[no-untyped-def]
        changed.append(patient_id)

    lifecycle = Lifecycle()
    lifecycle.on_settings_changed(hook)
    async with db.transaction() as s:
        now = clock.now()
        p = await settings_service.change(s, TG, "timezone", "Asia/Tokyo", now=now, lifecycle=lifecycle)
        assert p is not None and p.timezone == "Asia/Tokyo"
        await settings_service.change(s, TG, "sobriety_date", date(2026, 1, 1), now=now, lifecycle=lifecycle)
        await settings_service.change(s, TG, "mat", True, now=now, lifecycle=lifecycle)
        await settings_service.change(s, TG, "tips_enabled", False, now=now, lifecycle=lifecycle)
        await settings_service.change(s, TG, "checkin_time", time(8, 0), now=now, lifecycle=lifecycle)
        await settings_service.change(s, TG, "checkin_time", time(8, 0), now=now, lifecycle=lifecycle)  # no change
        await settings_service.change(s, TG, "language", "en", now=now, lifecycle=lifecycle, languages=["en"])
        for field, bad in [("timezone", "Nowhere/Land"), ("language", "xx"), ("mat", "yes"), ("colour", 1)]:
            with pytest.raises(SettingError):
                await settings_service.change(s, TG, field, bad, now=now, lifecycle=lifecycle, languages=["en"])
        assert await settings_service.change(s, 1234, "mat", True, now=now, lifecycle=lifecycle) is None
        audits = await entries(s, action="settings.change")
    assert changed == [pid, pid, pid]
    assert [a.detail for a in audits] == [
        {"field": "timezone"}, {"field": "sobriety_date"}, {"field": "mat"}, {"field": "tips_enabled"}, {"field": "checkin_time"},
    ]
    assert "2026" not in str([a.detail for a in audits])


async def test_staff_roles(db: Database, clock: FrozenClock):
    now = clock.now()
    async with db.transaction() as s:
        assert await staff.grant(s, actor_id=1, telegram_id=77, role="counselor", now=now)
        assert not await staff.grant(s, actor_id=1, telegram_id=77, role="counselor", now=now)
        assert await staff.grant(s, actor_id=1, telegram_id=77, role="facilitator", now=now)
        with pytest.raises(staff.StaffError):
            await staff.grant(s, actor_id=1, telegram_id=77, role="admin", now=now)
        members = await staff.list_staff(s, [1])
        assert [(m.telegram_id, m.roles) for m in members] == [(1, ("admin",)), (77, ("counselor", "facilitator"))]
        assert await staff.revoke(s, actor_id=1, telegram_id=77, role="counselor", now=now)
        assert not await staff.revoke(s, actor_id=1, telegram_id=77, role="counselor", now=now)
        assert await staff.roles_in_db(s, 77) == {"facilitator"}
        assert (await s.execute(select(func.count()).select_from(StaffRole))).scalar_one() == 1
        actions = [(e.action, e.subject, e.detail) for e in await entries(s)]
    assert actions == [
        ("staff.grant", "user:77", {"role": "counselor"}),
        ("staff.grant", "user:77", {"role": "facilitator"}),
        ("staff.revoke", "user:77", {"role": "counselor"}),
    ]
    assert staff.parse_role(" Counselor ") == "counselor" and staff.parse_role("admin") is None


# Consent content -------------------------------------------------------------------------------


def test_consent_says_what_the_issue_requires():
    from bot.platform.content import get_content
    from handlers.enrolment import consent_text
    from tests.conftest import CONTENT_DIR

    text, version = consent_text(get_content(CONTENT_DIR), "en")
    assert version == "2026-12-1"
    for needle in ("What is kept", "patient code, not your name", "not end-to-end encrypted", "emergency", "/mydata", "/delete", "not a crisis service", "988"):
        assert needle in text, needle
    assert onboarding.check_content(CONTENT_DIR) == []


def test_consent_checker_reports_problems(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "consent.yaml").write_text("version: ''\ntitle: T\nsections: [{heading: H}]\n", encoding="utf-8")
    (tmp_path / "es").mkdir()
    (tmp_path / "es" / "consent.yaml").write_text("- just a list\n", encoding="utf-8")
    problems = [p[2] for p in onboarding.check_content(tmp_path)]
    assert any("version" in p for p in problems)
    assert any("question" in p for p in problems)
    assert any("section 1" in p for p in problems)
    assert any("mapping" in p for p in problems)
