"""Cohorts and invite codes as services, on the database."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from bot.core.audit import entries
from bot.enrolment import invites
from bot.enrolment.invites import CohortError
from bot.enrolment.models import Invite
from bot.platform.clock import FrozenClock
from bot.platform.db import Database

ACTOR = 42


async def test_codes_are_unguessable_and_fit_a_deep_link():
    codes = {invites.new_code() for _ in range(200)}
    assert len(codes) == 200
    for c in codes:
        assert re.fullmatch(r"[A-Za-z0-9_-]{20,64}", c)
        assert invites.looks_like_code(c)
    for bad in ("", "a b", "x" * 65, "<b>", "../x", "ü"):
        assert not invites.looks_like_code(bad)


async def test_qr_is_a_png_of_the_link():
    link = invites.invite_link("iop_test_bot", "abc_DEF-123")
    assert link == "https://t.me/iop_test_bot?start=abc_DEF-123"
    png = invites.qr_png(link)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 200


async def _cohort(db: Database, now: datetime) -> int:
    async with db.transaction() as s:
        return (await invites.create_cohort(s, "Test cohort", actor_id=ACTOR, now=now)).id


async def test_an_invite_needs_an_open_cohort(db: Database, clock: FrozenClock):
    now = clock.now()
    cid = await _cohort(db, now)
    async with db.transaction() as s:
        for kw, reason in (({"cohort_id": None}, "needs_cohort"), ({"cohort_id": 9999}, "unknown")):
            with pytest.raises(CohortError) as err:
                await invites.create_invite(s, created_by=ACTOR, now=now, **kw)
            assert err.value.reason == reason
        await invites.archive_cohort(s, cid, actor_id=ACTOR, now=now)
        with pytest.raises(CohortError) as err:
            await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=cid)
        assert err.value.reason == "archived"


async def test_single_use_invite_life_cycle(db: Database, clock: FrozenClock):
    now = clock.now()
    cid = await _cohort(db, now)
    async with db.transaction() as s:
        inv = await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=cid)
    assert inv.expires_at - now == timedelta(days=14) and not inv.reusable
    async with db.transaction() as s:
        check = await invites.check_invite(s, inv.code, now)
        assert check.ok and check.invite_id == inv.id
        assert (await invites.consume_invite(s, inv.id, now)).ok
    async with db.transaction() as s:
        assert (await invites.check_invite(s, inv.code, now)).status == "used"
        assert (await invites.consume_invite(s, inv.id, now)).status == "used"
        assert (await invites.check_invite(s, "nope", now)).status == "unknown"
        assert await invites.list_invites(s, now) == []


async def test_expiry_and_revocation(db: Database, clock: FrozenClock):
    now = clock.now()
    cid = await _cohort(db, now)
    async with db.transaction() as s:
        a = await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=cid)
        b = await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=cid)
        assert {i.id for i in await invites.list_invites(s, now)} == {a.id, b.id}
        assert await invites.revoke_invite(s, b.id, actor_id=ACTOR, now=now)
        assert not await invites.revoke_invite(s, b.id, actor_id=ACTOR, now=now)
        assert not await invites.revoke_invite(s, 9999, actor_id=ACTOR, now=now)
    later = now + timedelta(days=14, seconds=1)
    async with db.transaction() as s:
        assert (await invites.check_invite(s, a.code, later)).status == "expired"
        assert (await invites.check_invite(s, b.code, now)).status == "revoked"
        # Opened in time, consented a little later: still accepted.
        assert (await invites.consume_invite(s, a.id, later)).ok
        assert await invites.list_invites(s, later) == []
    async with db.session() as s:
        actions = [e.action for e in await entries(s)]
    assert actions.count("invite.create") == 2 and actions.count("invite.revoke") == 1


async def test_reusable_cohort_invites(db: Database, clock: FrozenClock):
    now = clock.now()
    async with db.transaction() as s:
        with pytest.raises(CohortError):
            await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=None, reusable=True)
        cohort = await invites.create_cohort(s, "  Monday   mornings ", actor_id=ACTOR, now=now)
        assert cohort.name == "Monday mornings"
        inv = await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=cohort.id, reusable=True)
        for _ in range(3):
            assert (await invites.consume_invite(s, inv.id, now)).cohort_id == cohort.id
        assert [i.uses for i in await invites.list_invites(s, now)] == [3]


async def test_cohorts(db: Database, clock: FrozenClock):
    now = clock.now()
    async with db.transaction() as s:
        a = await invites.create_cohort(s, "Alpha", actor_id=ACTOR, now=now)
        with pytest.raises(CohortError) as e:
            await invites.create_cohort(s, "alpha", actor_id=ACTOR, now=now)
        assert e.value.reason == "exists"
        for bad in ("", "   ", "x" * 81):
            with pytest.raises(CohortError):
                await invites.create_cohort(s, bad, actor_id=ACTOR, now=now)
        b = await invites.create_cohort(s, "Beta", actor_id=ACTOR, now=now)
        with pytest.raises(CohortError):
            await invites.rename_cohort(s, b.id, "ALPHA", actor_id=ACTOR, now=now)
        assert (await invites.rename_cohort(s, b.id, "Gamma", actor_id=ACTOR, now=now)).name == "Gamma"
        assert (await invites.find_cohort(s, "gamma")).id == b.id  # type: ignore[union-attr]
        assert (await invites.find_cohort(s, f"#{a.id}")).name == "Alpha"  # type: ignore[union-attr]
        assert await invites.find_cohort(s, "99999999999999") is None
        inv = await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=a.id)
        await invites.archive_cohort(s, a.id, actor_id=ACTOR, now=now)
        with pytest.raises(CohortError) as e:
            await invites.create_invite(s, created_by=ACTOR, now=now, cohort_id=a.id)
        assert e.value.reason == "archived"
        listed = await invites.list_cohorts(s)
        assert [(c.name, c.archived) for c in listed] == [("Alpha", True), ("Gamma", False)]
        row = (await s.execute(select(Invite).where(Invite.id == inv.id))).scalar_one()
        assert row.revoked_at is not None
        with pytest.raises(CohortError):
            await invites.archive_cohort(s, 12345, actor_id=ACTOR, now=now)
