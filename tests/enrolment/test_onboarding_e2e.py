"""Onboarding end to end through the fake Bot API: the happy path, every refusal, resuming."""

from __future__ import annotations

from datetime import date, time, timedelta

from sqlalchemy import func, select

from bot.core.models import ChatState, Patient
from bot.enrolment.models import Invite
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests.onboarding_support import ADMIN, enrol, make_invite, running_bot, text_of


async def _patients(db: Database) -> list[Patient]:
    async with db.session() as s:
        return list((await s.execute(select(Patient))).scalars())


async def _states(db: Database, user_id: int) -> int:
    async with db.session() as s:
        q = select(func.count()).select_from(ChatState).where(ChatState.user_id == user_id)
        return int((await s.execute(q)).scalar_one())


async def test_full_onboarding_with_typed_answers(db: Database, clock: FrozenClock):
    activated: list[int] = []

    async def hook(session, patient_id, now):  # type: ignore[no-untyped-def]
        activated.append(patient_id)

    async with running_bot(db, clock) as (h, fake, _group):
        h.hub.lifecycle.on_activated(hook)
        code = await make_invite(h, fake)
        photo = fake.last(ADMIN)
        assert photo.kind == "photo" and photo.file_bytes and photo.file_bytes.startswith(b"\x89PNG")
        u = fake.add_user(first_name="Zebulon")
        await h.send(u, f"/start {code}")
        first = fake.last(u.id)
        assert "Welcome" in text_of(first) and "18" in text_of(first)
        async with db.session() as s:
            row = (await s.execute(select(Patient))).scalar_one()
            assert row.first_name is None and row.status == "onboarding"
        await h.press(u, first, "ob:age:y")
        consent = fake.last(u.id)
        assert "not end-to-end encrypted" in text_of(consent) and "988" in text_of(consent)
        await h.press(u, consent, "ob:con:y")
        assert "P-" in text_of(fake.last(u.id))
        await h.send(u, "Narnia/Cair_Paravel")
        assert "don't know that time zone" in text_of(fake.last(u.id))
        await h.send(u, "chicago")
        await h.send(u, "half past something")
        assert "couldn't read that time" in text_of(fake.last(u.id))
        await h.send(u, "8:30 pm")
        await h.send(u, "next tuesday or so")
        assert "couldn't read that date" in text_of(fake.last(u.id))
        await h.send(u, "2030-01-01")
        assert "future" in text_of(fake.last(u.id))
        await h.send(u, "Jan 15 2026")
        assert "Jan 15, 2026" in text_of(fake.last(u.id))  # read back to be confirmed
        await h.press(u, fake.last(u.id), "ob:sob:d20260115")
        await h.send(u, "yes")  # a button-only step
        assert "buttons" in text_of(fake.last(u.id))
        await h.press(u, fake.last(u.id), "ob:mat:y")
        assert "How often do you take your medication" in text_of(fake.last(u.id))
        await h.press(u, fake.last(u.id), "ob:med:d")
        done = text_of(fake.last(u.id))
        assert "all set" in done and "/checkin" in done and "/sos" in done
        fake.assert_no_errors()
    [p] = await _patients(db)
    assert p.status == "active" and p.onboarding_step is None
    assert p.timezone == "America/Chicago" and p.checkin_time == time(20, 30)
    assert p.sobriety_date == date(2026, 1, 15) and p.mat is True
    assert p.first_name == "Zebulon" and p.consent_version == "2026-12-1"
    assert p.code.startswith("P-") and len(p.code) == 6
    assert activated == [p.id]
    assert await _states(db, p.telegram_id) == 0
    async with db.session() as s:
        inv = (await s.execute(select(Invite))).scalar_one()
    assert inv.uses == 1


async def test_declining_consent_leaves_nothing(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Quinn")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:n")
        assert "haven't stored anything" in text_of(fake.last(u.id))
        # The consent buttons are gone; pressing them again is a stale button.
        qid = await h.press(u, fake.sent(u.id)[-2], "ob:con:y")
        assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
        fake.assert_no_errors()
    assert await _patients(db) == []
    assert await _states(db, u.id) == 0


async def test_under_18_leaves_nothing(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Kid")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:n")
        assert "only for adults" in text_of(fake.last(u.id))
        fake.assert_no_errors()
    assert await _patients(db) == []
    assert await _states(db, u.id) == 0


async def test_bad_invites_get_clear_answers(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        u = fake.add_user(first_name="Pat")
        await h.send(u, "/start nosuchcode")
        assert "don't recognise" in text_of(fake.last(u.id))
        await h.send(u, "/start <b>&amp;")
        assert "don't recognise" in text_of(fake.last(u.id))
        await h.send(u, "/start")
        assert "invite link" in text_of(fake.last(u.id))
        # Used: single-use code taken by someone else.
        code = await make_invite(h, fake)
        first = fake.add_user(first_name="First")
        await enrol(h, fake, first, code)
        await h.send(u, f"/start {code}")
        assert "already been used" in text_of(fake.last(u.id))
        # Expired.
        old = await make_invite(h, fake)
        clock.advance(timedelta(days=15))
        await h.send(u, f"/start {old}")
        assert "expired" in text_of(fake.last(u.id))
        # Revoked.
        revoked = await make_invite(h, fake)
        await h.send(ADMIN, "/invites")
        listing = fake.last(ADMIN)
        rev = [d for d in listing.callback_data if d.startswith("inv:rev:")]
        for data in rev:
            await h.press(ADMIN, fake.last(ADMIN), data)
        await h.send(u, f"/start {revoked}")
        assert "no longer valid" in text_of(fake.last(u.id))
        fake.assert_no_errors()
    assert len(await _patients(db)) == 1


async def test_reusable_cohort_code(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        await h.send(ADMIN, "/cohort new Tuesday evening")
        assert "created" in text_of(fake.last(ADMIN))
        code = await make_invite(h, fake, "Tuesday evening reusable")
        a, b = fake.add_user(first_name="A"), fake.add_user(first_name="B")
        await enrol(h, fake, a, code)
        await enrol(h, fake, b, code)
        fake.assert_no_errors()
    ps = await _patients(db)
    assert len(ps) == 2 and len({p.code for p in ps}) == 2
    assert all(p.cohort_id is not None for p in ps)


async def test_onboarding_resumes_after_restart(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Robin")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:y")
        tz_question = fake.last(u.id)
        await h.restart()
        await h.send(u, "/start")
        assert "Welcome back" in text_of(fake.last(u.id))
        assert "time zone" in text_of(fake.last(u.id))
        await h.press(u, tz_question, "ob:tz:0")  # the old message's buttons still work
        await h.restart()
        await h.send(u, "7am")
        await h.press(u, fake.last(u.id), "ob:sob:skip")
        await h.press(u, fake.last(u.id), "ob:mat:n")
        assert "all set" in text_of(fake.last(u.id))
        await h.send(u, "/start")
        assert "already set up" in text_of(fake.last(u.id))
        fake.assert_no_errors()
    [p] = await _patients(db)
    assert p.status == "active" and p.timezone == "America/New_York" and p.checkin_time == time(7, 0)


async def test_shared_location_sets_the_zone(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Lou")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:y")
        await h.press(u, fake.last(u.id), "ob:tz:other")
        assert "share your location" in text_of(fake.last(u.id))
        await h.push(fake.send_location(u, 39.74, -104.99))  # Denver
        assert "ask_checkin" not in text_of(fake.last(u.id))
        assert "check-in" in text_of(fake.last(u.id))
        fake.assert_no_errors()
    [p] = await _patients(db)
    assert p.timezone == "America/Denver"


async def test_forged_onboarding_buttons(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Fay")
        await h.send(u, f"/start {code}")
        msg = fake.last(u.id)
        for data in ("ob:age:maybe", "ob:x", "ob:con:y:z", "st:tz:0", "pv:del:2"):
            qid = await h.press(u, msg, data)
            assert "expired" in ((fake.callback_answer(qid) or {}).get("text") or ""), data
        # A button of another question than the one onboarding is on: that one is asked again.
        for data in ("ob:mat:y", "ob:tz:99", "ob:tm:9999"):
            qid = await h.press(u, msg, data)
            assert not (fake.callback_answer(qid) or {}).get("text"), data
            again = fake.last(u.id)
            assert "Welcome back" in text_of(again) and "ob:age:y" in again.callback_data, data
        fake.assert_no_errors()
    [p] = await _patients(db)
    assert p.onboarding_step == "age"


async def test_patient_commands_during_onboarding(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Ari")
        await h.send(u, f"/start {code}")
        await h.send(u, "/settings")
        assert "finish setting up first" in text_of(fake.last(u.id))
        await h.send(u, "/delete")  # before consent: stopping is immediate
        assert "haven't stored anything" in text_of(fake.last(u.id))
        assert await _patients(db) == [] and await _states(db, u.id) == 0

        code = await make_invite(h, fake)
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:y")
        await h.send(u, "/delete")  # after consent: two steps
        await h.press(u, fake.last(u.id), "pv:keep")
        assert "time zone" in text_of(fake.last(u.id))
        await h.send(u, "denver")  # typed answers still reach onboarding
        assert "check-in" in text_of(fake.last(u.id))
        await h.send(u, "/delete")
        await h.press(u, fake.last(u.id), "pv:del:1")
        await h.press(u, fake.last(u.id), "pv:del:2")
        assert "erased" in text_of(fake.last(u.id))
        fake.assert_no_errors()
    assert await _patients(db) == [] and await _states(db, u.id) == 0


async def test_location_keyboard_is_removed_after_a_zone_button(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Kai")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:y")
        question = fake.last(u.id)
        await h.press(u, question, "ob:tz:other")
        assert (fake.last(u.id).reply_markup or {}).get("keyboard")
        await h.press(u, question, "ob:tz:3")
        removed = [m for m in fake.sent(u.id) if (m.reply_markup or {}).get("remove_keyboard")]
        assert removed and "America/Phoenix" in text_of(removed[-1])
        assert "check-in" in text_of(fake.last(u.id))
        fake.assert_no_errors()
