"""/settings end to end: every onboarding answer can be changed later, plus tips and language."""

from __future__ import annotations

from datetime import date, time

from sqlalchemy import select

from bot.core.models import Patient
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests.onboarding_support import enrol, make_invite, running_bot, text_of


async def _patient(db: Database) -> Patient:
    async with db.session() as s:
        return (await s.execute(select(Patient))).scalar_one()


def _expired(fake, qid: str) -> bool:  # type: ignore[no-untyped-def]
    return "expired" in (fake.callback_answer(qid) or {}).get("text", "")


async def test_settings_change_every_answer(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        u = fake.add_user(first_name="Sky")
        await enrol(h, fake, u, await make_invite(h, fake))
        await h.send(u, "/settings")
        menu = fake.last(u.id)
        assert "Central (Chicago)" in text_of(menu) and "8:00 pm" in text_of(menu)

        await h.press(u, menu, "st:tz")
        await h.press(u, fake.last(u.id), "st:tz:4")
        assert (await _patient(db)).timezone == "America/Los_Angeles"
        assert "Saved" in text_of(fake.last(u.id))

        await h.press(u, fake.last(u.id), "st:tm")
        await h.send(u, "quarter to nine")
        assert "couldn't read that time" in text_of(fake.last(u.id))
        await h.send(u, "7:15am")
        assert (await _patient(db)).checkin_time == time(7, 15)

        await h.press(u, fake.last(u.id), "st:sob")
        await h.send(u, "31/31/2020")
        assert "couldn't read that date" in text_of(fake.last(u.id))
        await h.send(u, "2026-02-01")
        await h.press(u, fake.last(u.id), "st:sob:d20260201")
        assert (await _patient(db)).sobriety_date == date(2026, 2, 1)
        await h.press(u, fake.last(u.id), "st:sob")
        await h.press(u, fake.last(u.id), "st:sob:clear")
        assert (await _patient(db)).sobriety_date is None

        await h.press(u, fake.last(u.id), "st:mat")
        await h.press(u, fake.last(u.id), "st:mat:y")
        assert (await _patient(db)).mat is True
        await h.press(u, fake.last(u.id), "st:tips:0")
        assert (await _patient(db)).tips_enabled is False
        await h.press(u, fake.last(u.id), "st:lang")
        await h.press(u, fake.last(u.id), "st:lang:en")
        assert (await _patient(db)).language == "en"

        await h.press(u, fake.last(u.id), "st:tz")
        await h.press(u, fake.last(u.id), "st:tz:other")
        await h.push(fake.send_location(u, 52.52, 13.40))
        assert (await _patient(db)).timezone == "Europe/Berlin"

        for forged in ("st:lang:xx", "st:tz:99", "st:tm:2561", "st:tips:2", "st:zz", "st:mat:y:1", "ob:age:y"):
            assert _expired(fake, await h.press(u, fake.last(u.id), forged)), forged
        fake.assert_no_errors()


async def test_settings_need_an_enrolled_patient(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        u = fake.add_user(first_name="Nobody")
        for cmd in ("/settings", "/privacy", "/mydata", "/delete"):
            await h.send(u, cmd)
            assert "invite link" in text_of(fake.last(u.id))
        await h.push(fake.send_location(u, 1.0, 1.0))
        assert "only read text" in text_of(fake.last(u.id))
        assert _expired(fake, await h.press(u, fake.last(u.id), "st:tz:1"))
        fake.assert_no_errors()


async def test_blocking_marks_the_patient_inactive(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        u = fake.add_user(first_name="Bo")
        await enrol(h, fake, u, await make_invite(h, fake))
        await h.push(fake.block(u))
        assert (await _patient(db)).status == "inactive"
        await h.push(fake.unblock(u))
        assert (await _patient(db)).status == "active"
        fake.assert_no_errors()


async def test_counselors_group_ignores_chatter_and_patient_commands(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, group):
        member = fake.add_user(first_name="Mo", started=True)
        group.members[member.id] = "member"
        n = len(fake.sent(group.id))
        await h.send(member, "hello everyone", chat=group)
        await h.send(member, "/start", chat=group)
        await h.send(member, "/settings", chat=group)
        assert len(fake.sent(group.id)) == n  # chatter and patient commands are ignored there
        fake.assert_no_errors()
