"""My plan: validation, phone numbers, limits, storage and rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.recovery import plans
from bot.recovery.plans import PlanError, format_phone, validate_entry
from bot.recovery.rules import load_sos_rules
from tests.conftest import CONTENT_DIR
from tests.sos_helpers import make_patient

content = get_content(CONTENT_DIR)
PLAN = load_sos_rules(CONTENT_DIR).plan


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("555 123 4567", "+1 555 123 4567"),
        ("(555) 123-4567", "+1 555 123 4567"),
        ("555.123.4567", "+1 555 123 4567"),
        ("+1 555 123 4567", "+1 555 123 4567"),
        ("1-800-273-8255", "+1 800 273 8255"),
        ("+44 20 7946 0958", "+44 20 7946 0958"),
        ("555-1234", None),
        ("12", None),
        ("call me", None),
    ],
)
def test_format_phone(raw: str, expected: str | None) -> None:
    assert format_phone(raw, "US") == expected


@pytest.mark.parametrize(
    ("raw", "name", "phone"),
    [
        ("Maria 555 123 4567", "Maria", "+1 555 123 4567"),
        ("Mom: (555) 123-4567", "Mom", "+1 555 123 4567"),
        ("Sponsor Joe +44 20 7946 0958 evenings", "Sponsor Joe evenings", "+44 20 7946 0958"),
        ("555-123-4567 — Dad", "Dad", "+1 555 123 4567"),
    ],
)
def test_people_entries_split_name_and_number(raw: str, name: str, phone: str) -> None:
    assert validate_entry("people", raw, PLAN) == (name, phone)


@pytest.mark.parametrize(
    ("section", "raw", "code"),
    [
        ("coping", "", "empty"),
        ("coping", "   \n\t ", "empty"),
        ("coping", None, "empty"),
        ("coping", " . - ", "empty"),
        ("reasons", "x" * 2000, "too_long"),
        ("people", "Maria", "no_number"),
        ("people", "Maria 555-12", "bad_number"),
        ("people", "555 123 4567", "no_name"),
        ("people", "Maria 12345", "bad_number"),
        ("nowhere", "text", "unknown_section"),
    ],
)
def test_bad_entries_are_refused_with_a_reason(section: str, raw: str | None, code: str) -> None:
    with pytest.raises(PlanError) as info:
        validate_entry(section, raw, PLAN)
    assert info.value.code == code
    # Every refusal has a sentence a person can read.
    assert content.t(f"plan.error.{code}", "en", **info.value.kwargs)


def test_too_long_says_how_long() -> None:
    with pytest.raises(PlanError) as info:
        validate_entry("reasons", "y" * 2000, PLAN)
    text = content.t("plan.error.too_long", "en", **info.value.kwargs)
    assert "2000" in text and "500" in text


def test_professional_number_is_optional() -> None:
    assert validate_entry("professionals", "Dr. Lee at the clinic", PLAN) == ("Dr. Lee at the clinic", None)
    assert validate_entry("professionals", "Dr. Lee 555 222 3333", PLAN) == ("Dr. Lee", "+1 555 222 3333")


@given(st.text(max_size=600))
def test_validation_never_crashes(raw: str) -> None:
    for section in plans.SECTIONS:
        try:
            text, phone = validate_entry(section, raw, PLAN)
        except PlanError:
            continue
        assert text.strip() and len(text) <= 500
        assert phone is None or phone.startswith("+")


async def test_add_edit_remove_and_limits(db: Database, clock: FrozenClock) -> None:
    now = clock.now()
    pid = await make_patient(db, now)
    other = await make_patient(db, now, telegram_id=5002, code="P-2222")
    async with db.transaction() as s:
        e1 = await plans.add_entry(s, PLAN, pid, "reasons", "  My kids  ", now)
        await plans.add_entry(s, PLAN, pid, "people", "Maria 555 123 4567", now)
    assert e1.text == "My kids"
    async with db.transaction() as s:
        e1 = await plans.edit_entry(s, PLAN, pid, e1.id, "My daughter", now)
        with pytest.raises(PlanError) as info:
            await plans.edit_entry(s, PLAN, other, e1.id, "not mine", now)
        assert info.value.code == "not_found"
    async with db.session() as s:
        plan = await plans.get_plan(s, pid)
    assert [e.text for e in plan.section("reasons")] == ["My daughter"]
    assert plan.people[0].phone == "+1 555 123 4567"

    limit = PLAN.max_entries_per_section
    async with db.transaction() as s:
        for i in range(limit - 1):
            await plans.add_entry(s, PLAN, pid, "reasons", f"reason {i}", now)
        with pytest.raises(PlanError) as info:
            await plans.add_entry(s, PLAN, pid, "reasons", "one too many", now)
        assert info.value.code == "full"
    async with db.transaction() as s:
        assert not await plans.remove_entry(s, other, e1.id)
        assert await plans.remove_entry(s, pid, e1.id)
        assert not await plans.remove_entry(s, pid, e1.id)
        assert await plans.count(s, pid, "reasons") == limit - 1


async def test_plan_text_is_encrypted_at_rest(db: Database, clock: FrozenClock) -> None:
    from cryptography.fernet import Fernet
    from sqlalchemy import text

    from bot.platform import crypto

    crypto.configure(Fernet.generate_key().decode())
    try:
        pid = await make_patient(db, clock.now())
        async with db.transaction() as s:
            await plans.add_entry(s, PLAN, pid, "reasons", "secret reason", clock.now())
        async with db.session() as s:
            raw = (await s.execute(text("SELECT text FROM plan_entries"))).scalar_one()
            assert "secret" not in raw
            assert (await plans.get_plan(s, pid)).section("reasons")[0].text == "secret reason"
    finally:
        crypto.configure(None)


def _plan(**sections: list[plans.Entry]) -> plans.Plan:
    return plans.Plan({s: sections.get(s, []) for s in plans.SECTIONS})


def test_render_escapes_and_always_lists_988() -> None:
    plan = _plan(
        reasons=[plans.Entry(1, "reasons", "<b>me</b> & my kids", None)],
        people=[plans.Entry(2, "people", "Maria", "+1 555 123 4567")],
    )
    (text,) = plans.render_plan(content, "en", plan)
    assert "&lt;b&gt;me&lt;/b&gt; &amp; my kids" in text
    assert "Maria — +1 555 123 4567" in text
    assert "988" in text
    empty = plans.render_plan(content, "en", _plan())
    assert len(empty) == 1 and "988" in empty[0]
    people = plans.render_people(content, "en", plan)
    assert "+1 555 123 4567" in people and "988" in people


def test_long_plan_splits_under_the_limit() -> None:
    entries = {
        s: [plans.Entry(i, s, f"{s} {i} " + "w" * 480, None) for i in range(10)]
        for s in plans.SECTIONS
        if s not in plans.PHONE_SECTIONS
    }
    parts = plans.render_plan(content, "en", _plan(**entries))
    assert len(parts) > 1
    assert all(len(p) < 4096 for p in parts)
    joined = "\n".join(parts)
    for es in entries.values():
        for e in es:
            assert e.text in joined
