"""Check-ins end to end: the real Application over HTTP against the fake Bot API."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time

import matplotlib.image as mpimg
from sqlalchemy import select

from bot.checkins import sobriety
from bot.checkins.models import CheckinEntry
from bot.core.models import AuditEntry
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.checkins_support import flags_of, make_patient
from tests.harness import ADMIN_ID, BotHarness


def text(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.plain_text or ""


async def press(h: BotHarness, fake: FakeTelegram, user, data: str):  # type: ignore[no-untyped-def]
    msg = fake.last(user.id)
    assert data in msg.callback_data, (data, msg.callback_data, text(msg))
    qid = await h.press(user, msg, data)
    return qid


async def test_full_checkin_by_buttons(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Sam", started=True)
    p = await make_patient(db, clock.now(), telegram_id=u.id, sobriety_date=date(2026, 2, 20))
    await h.send(u, "/checkin")
    assert "How is your mood" in text(fake.last(u.id))
    await press(h, fake, u, "ci:a:mood:4")
    assert "cravings" in text(fake.last(u.id))
    await press(h, fake, u, "ci:a:craving:2")
    await press(h, fake, u, "ci:a:use:no_use")
    await press(h, fake, u, "ci:t:halt:tired")
    assert "✅ 😴 Tired" in fake.last(u.id).button_texts
    await press(h, fake, u, "ci:d:halt")
    await press(h, fake, u, "ci:a:sleep:3")
    assert "Skip" in fake.last(u.id).button_texts
    await h.send(u, "a calm day")
    closing = [m for m in fake.sent(u.id) if "Thanks for checking in" in text(m)]
    assert closing and "Day 10" in text(closing[-1])
    # The PHQ-9 and GAD-7 are due on the first day: offered after the closing reply.
    assert any("as:start:phq9" in m.callback_data for m in fake.sent(u.id))
    async with db.session() as s:
        e = (await s.execute(select(CheckinEntry))).scalar_one()
    assert (e.mood, e.craving, e.use, e.halt, e.sleep) == (4, 2, "no_use", ["tired"], 3)
    assert await flags_of(db, p.id) == []
    # Ten days sober: the highest milestone reached (one week) is congratulated, sharing is opt-in.
    week = [m for m in fake.sent(u.id) if "One week" in text(m)]
    assert len(week) == 1 and "ci:ms:7:y" in week[0].callback_data
    await h.press(u, week[0], "ci:ms:7:y")
    assert "share it with your group" in text(fake.last(u.id))
    async with db.session() as s:
        assert await sobriety.shared_milestones(s, p.id) == {7: True}
    await h.send(u, "/days")
    assert "Current streak: 10" in text(fake.last(u.id))
    assert len([m for m in fake.sent(u.id) if "One week" in text(m)]) == 1
    fake.assert_no_errors()


async def test_resume_after_restart_and_lapse_flow(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Ash", started=True)
    p = await make_patient(db, clock.now(), telegram_id=u.id, sobriety_date=date(2026, 1, 1))
    await h.send(u, "/checkin")
    await press(h, fake, u, "ci:a:mood:2")
    await press(h, fake, u, "ci:a:craving:8")
    await h.restart()
    clock.advance(minutes=30)
    await h.send(u, "/checkin")
    assert "pick up your check-in" in text(fake.last(u.id)) and "did you drink or use" in text(fake.last(u.id))
    await press(h, fake, u, "ci:back")
    assert "cravings" in text(fake.last(u.id))
    await press(h, fake, u, "ci:a:craving:8")
    await press(h, fake, u, "ci:a:use:used")
    await press(h, fake, u, "ci:t:halt:none")
    await press(h, fake, u, "ci:d:halt")
    await press(h, fake, u, "ci:a:sleep:2")
    await press(h, fake, u, "ci:skip:note")
    closing = next(m for m in reversed(fake.sent(u.id)) if "lapse is not a relapse" in text(m))
    # The lapse flow's own tools: talk to my counselor, call someone, what helped, tools.
    assert {"sos:talk", "sos:call", "sos:helped", "sos:menu"} <= set(closing.callback_data)
    qid = await h.press(u, closing, "sos:talk")
    assert fake.callback_answer(qid) is not None
    flags = await flags_of(db, p.id)
    assert sorted(flags) == [("talk_request", "moderate"), ("use_disclosure", "high")]
    await h.send(u, "/days")
    days = text(fake.last(u.id))
    assert "Current streak: 0" in days and "Total sober days: 60" in days and "Lapses recorded: 1" in days
    fake.assert_no_errors()


async def test_stale_buttons_get_a_friendly_answer(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Kai", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/checkin")
    msg = fake.last(u.id)
    for data in ("ci:zz", "ci:ms:x:y", "as:a:phq9:q9:3", "as:start:nope"):
        qid = await h.press(u, msg, data)
        assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    # A button of another question than the one the check-in is on (or a value it does not
    # have): the check-in goes on at its question.
    for data, then, question in (("ci:a:mood:77", None, "How is your mood"), ("ci:a:sleep:4", "ci:a:mood:3", "cravings")):
        if then is not None:
            await h.press(u, msg, then)
        qid = await h.press(u, msg, data)
        assert not (fake.callback_answer(qid) or {}).get("text")
        shown = text(fake.sent_message(u.id, msg.message_id))
        assert "pick up your check-in" in shown and question in shown
    stranger = fake.add_user(first_name="Nobody", started=True)
    await h.send(stranger, "/checkin")
    assert "invite link" in text(fake.last(stranger.id))
    fake.assert_no_errors()


async def test_progress_and_counselor_view(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Jo", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, code="P-7731", sobriety_date=date(2026, 2, 1))
    await h.send(u, "/checkin")
    for data in ("ci:a:mood:3", "ci:a:craving:9", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:4", "ci:skip:note"):
        await press(h, fake, u, data)
    await h.send(u, "/progress")
    photo = next(m for m in reversed(fake.sent(u.id)) if m.kind == "photo")
    assert photo.file_bytes is not None and photo.file_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(photo.file_bytes), format="png")
    assert img.shape[0] >= 800 and img.shape[1] >= 800
    summary = text(fake.last(u.id))
    assert len(summary.split("\n")) == 2 and "1 of 30" in summary
    # A patient cannot use the counselor view; a counselor (admin) can, in DM, audited.
    await h.send(u, "/patient P-7731")
    assert "only for the care team" in text(fake.last(u.id))
    await h.send(ADMIN_ID, "/patient p-7731")
    sent = fake.sent(ADMIN_ID)
    assert any("Patient P-7731" in text(m) for m in sent)
    assert sent[-1].kind == "photo"
    await h.send(ADMIN_ID, "/progress P-7731")
    assert fake.last(ADMIN_ID).kind == "photo"
    await h.send(ADMIN_ID, "/patient")
    assert "Usage" in text(fake.last(ADMIN_ID))
    async with db.session() as s:
        rows = list((await s.execute(select(AuditEntry).where(AuditEntry.action == "patient.view"))).scalars())
    assert [(r.actor_id, r.subject) for r in rows] == [(ADMIN_ID, "P-7731"), (ADMIN_ID, "P-7731")]
    fake.assert_no_errors()


async def test_prompts_across_days_zones_and_dst_with_restarts(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    ny = fake.add_user(first_name="Ny", started=True)
    tokyo = fake.add_user(first_name="Tk", started=True)
    p_ny = await make_patient(db, clock.now(), telegram_id=ny.id, tz="America/New_York", checkin_time=time(9, 0))
    p_tk = await make_patient(db, clock.now(), telegram_id=tokyo.id, tz="Asia/Tokyo", checkin_time=time(21, 0))
    async with h.hub.db.transaction() as s:
        await h.hub.lifecycle.activated(s, p_ny.id, clock.now())
        await h.hub.lifecycle.activated(s, p_tk.id, clock.now())
    end = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
    seen: dict[int, int] = {ny.id: 0, tokyo.id: 0}
    arrivals: dict[tuple[int, str], list[datetime]] = {}

    def collect() -> None:
        for user in (ny, tokyo):
            msgs = fake.sent(user.id)
            for m in msgs[seen[user.id]:]:
                body = text(m)
                kind = "prompt" if "Time for your daily check-in" in body else (
                    "reminder" if body.startswith("Time for your check-in") else "other")
                arrivals.setdefault((user.id, kind), []).append(clock.now())
            seen[user.id] = len(msgs)

    n = 0
    while clock.now() < end:
        clock.advance(minutes=30)
        await h.tick()
        collect()
        n += 1
        if n % 40 == 0:
            await h.restart()
        if clock.now() == datetime(2026, 3, 8, 13, 30, tzinfo=UTC):
            # NY answers the Sunday prompt (after DST began) by its button.
            prompt = fake.last(ny.id)
            await h.press(ny, prompt, "ci:start")
            for data in ("ci:a:mood:4", "ci:a:craving:1", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:4", "ci:skip:note"):
                await press(h, fake, ny, data)
            collect()

    def at(user, kind: str) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
        return [(t.day, t.hour) for t in arrivals.get((user.id, kind), [])]

    # 09:00 in New York: 14:00 UTC (EST) until March 8, 13:00 UTC (EDT) from March 8.
    assert at(ny, "prompt") == [(6, 14), (7, 14), (8, 13), (9, 13)]
    # One reminder three hours later, except on the day the check-in was done.
    assert at(ny, "reminder") == [(6, 17), (7, 17), (9, 16)]
    # 21:00 in Tokyo is 12:00 UTC; enrolled exactly then, so the first prompt is the next day's.
    assert at(tokyo, "prompt") == [(7, 12), (8, 12), (9, 12)]
    # Its reminder would fall after local midnight: it comes at 23:30 JST instead.
    assert at(tokyo, "reminder") == [(7, 14), (8, 14), (9, 14)]
    fake.assert_no_errors()


async def test_phq9_by_buttons_with_item9_asks_the_followup_then_the_crisis_path(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
):
    # Every item-9 value and follow-up pattern: tests/assessments/test_e2e_phq9_item9.py.
    u = fake.add_user(first_name="Rae", started=True)
    p = await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/checkin")
    for data in ("ci:a:mood:2", "ci:a:craving:1", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:2", "ci:skip:note"):
        await press(h, fake, u, data)
    offer = fake.last(u.id)
    assert "PHQ-9" in text(offer)
    await h.press(u, offer, "as:start:phq9")
    assert "Pfizer" in text(fake.last(u.id))
    for i in range(1, 9):
        await press(h, fake, u, f"as:a:phq9:q{i}:1")
    await press(h, fake, u, "as:a:phq9:q9:2")
    assert ("suicide_self_harm", "high") in await flags_of(db, p.id)
    for data in ("wish_dead:y", "thoughts:y", "method:y", "intent:n", "plan:n", "preparation:n"):
        await press(h, fake, u, f"as:f:phq9:{data}")
    assert any("988" in text(m) for m in fake.sent(u.id)[-3:])
    assert ("suicide_self_harm", "crisis") in await flags_of(db, p.id)
    await press(h, fake, u, "as:resume:phq9")
    await press(h, fake, u, "as:a:phq9:difficulty:1")
    assert [c for c, _ in await flags_of(db, p.id)].count("suicide_self_harm") == 1
    fake.assert_no_errors()


async def test_fall_back_hour_with_a_restart_inside_it(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    clock.set(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    u = fake.add_user(first_name="Fb", started=True)
    p = await make_patient(db, clock.now(), telegram_id=u.id, tz="America/New_York", checkin_time=time(1, 30))
    async with h.hub.db.transaction() as s:
        await h.hub.lifecycle.activated(s, p.id, clock.now())
    arrivals: list[datetime] = []
    seen = 0
    while clock.now() < datetime(2026, 11, 2, 12, 0, tzinfo=UTC):
        clock.advance(minutes=30)
        await h.tick()
        msgs = fake.sent(u.id)
        arrivals += [clock.now() for m in msgs[seen:] if "Time for your daily check-in" in text(m)]
        seen = len(msgs)
        if clock.now() == datetime(2026, 11, 1, 6, 0, tzinfo=UTC):
            await h.restart()  # between the first 01:30 (EDT) and the second (EST)
    # 01:30 EDT on November 1 is 05:30 UTC; the repeated 01:30 EST (06:30 UTC) sends nothing.
    assert arrivals == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]
    fake.assert_no_errors()
