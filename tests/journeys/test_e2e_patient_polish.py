"""End to end: what a patient meets outside the clinical flows (issue 11, items 8, 11, 14, 15).

The plan keeps a name in brackets whole and is one message edited in place; /tip gives the next
tip of the rotation; /settings and the rest of a patient's view write times one way; typed text
that is not a risk gets the right short answer; consent and /privacy say only what is true.
"""

from __future__ import annotations

import re
from datetime import date, time

from sqlalchemy import select, update

from bot.assessments.models import AssessmentResult
from bot.core import timefmt
from bot.core.models import Patient
from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.recovery import tips
from bot.recovery.library import load_library
from bot.recovery.models import TipShown
from bot.recovery.rules import load_sos_rules
from bot.safety import free_text
from bot.safety.models import SafetyCheck
from fakeapi import FakeTelegram
from handlers import PATIENT_COMMANDS
from tests.conftest import CONTENT_DIR
from tests.harness import BotHarness
from tests.onboarding_support import make_invite, running_bot
from tests.sos_helpers import make_patient


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, **kw):  # type: ignore[no-untyped-def]
    user = fake.add_user(first_name="Sam", started=True)
    await make_patient(db, clock.now(), telegram_id=user.id, code=f"P-{user.id % 10000:04d}", **kw)
    return user


def _text(msg) -> str:  # type: ignore[no-untyped-def]
    return msg.plain_text or ""


# -- item 15: the plan ------------------------------------------------------------------------


async def test_plan_keeps_a_name_in_brackets_and_is_one_message_edited_in_place(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/plan")
    plan_msg = fake.last(u.id)
    before = len(fake.sent(u.id))

    # Every tap on the plan's own screens edits that one message.
    for data, expect in (
        ("pl:s:people", "pl:add:people"),
        ("pl:menu", "pl:show"),
        ("pl:s:people", "pl:add:people"),
        ("pl:add:people", "pl:cancel"),
    ):
        await h.press(u, fake.sent_message(u.id, plan_msg.message_id), data)
        assert len(fake.sent(u.id)) == before, f"{data} sent a new message"
        assert expect in fake.sent_message(u.id, plan_msg.message_id).callback_data

    # The typed entry: the answer follows the patient's message (a new one), name intact.
    await h.send(u, "Sam (sponsor) 617 555 0134")
    saved = fake.last(u.id)
    assert saved.message_id != plan_msg.message_id
    assert "Sam (sponsor) — +1 617 555 0134" in _text(saved)
    assert "(sponsor —" not in _text(saved)
    # The number stands alone in international form (what Telegram makes tappable).
    assert re.search(r"(^|\s)\+1 617 555 0134($|\s)", _text(saved), re.M)

    # From there on, taps edit the new screen in place too, up to the whole plan.
    n = len(fake.sent(u.id))
    await h.press(u, saved, "pl:menu")
    await h.press(u, fake.sent_message(u.id, saved.message_id), "pl:show")
    assert len(fake.sent(u.id)) == n
    whole = _text(fake.sent_message(u.id, saved.message_id))
    assert "Sam (sponsor) — +1 617 555 0134" in whole and "988" in whole

    # A plan button on a message that is not the plan's (the /sos "call someone" list) keeps
    # that message and opens the plan in a new one.
    await h.send(u, "/sos")
    await h.press(u, fake.last(u.id), "sos:call")
    call_list = fake.last(u.id)
    call_text = _text(call_list)
    await h.press(u, call_list, "pl:s:people")
    assert _text(fake.sent_message(u.id, call_list.message_id)) == call_text
    assert fake.last(u.id).message_id != call_list.message_id
    fake.assert_no_errors()


# -- item 15: /tip ----------------------------------------------------------------------------


async def test_tip_on_demand_rotates_without_repeats_and_leaves_the_daily_tip(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock, tip_time=time(10, 0))  # 09:00 in New York now
    async with h.hub.db.transaction() as s:
        pid = (await s.execute(select(Patient.id).where(Patient.telegram_id == u.id))).scalar_one()
        await tips.schedule_next(s, pid, clock.now(), load_sos_rules(CONTENT_DIR).tips)
    texts = {t.id: t.text for t in load_library(CONTENT_DIR).tips("en")}
    shown: list[str] = []
    for _ in range(5):
        await h.send(u, "/tip")
        reply = _text(fake.last(u.id))
        assert "/tip" in reply
        found = [tid for tid, body in texts.items() if re.sub(r"<[^>]+>", "", body) in reply]
        assert len(found) == 1, reply
        shown.append(found[0])
    assert len(set(shown)) == 5

    # The same day's daily tip still comes, and is none of the tips just asked for.
    clock.advance(hours=1, minutes=1)  # 10:01 in New York
    await h.tick()
    async with h.hub.db.session() as s:
        daily = (await s.execute(select(OutboxMessage).where(OutboxMessage.dedup_key.like("tip:%")))).scalars().all()
        rows = (await s.execute(select(TipShown.tip_id).order_by(TipShown.id))).scalars().all()
    assert len(daily) == 1 and len(rows) == 6
    assert rows[-1] not in shown

    # In the command menu and in /help.
    assert "tip" in PATIENT_COMMANDS
    menu = [c["command"] for c in fake.commands("all_private_chats")]
    assert "tip" in menu
    await h.send(u, "/help")
    assert "/tip" in _text(fake.last(u.id))
    fake.assert_no_errors()


async def test_tip_from_someone_not_enrolled(h: BotHarness, fake: FakeTelegram) -> None:
    stranger = fake.add_user(first_name="Max", started=True)
    await h.send(stranger, "/tip")
    assert "invite link" in _text(fake.last(stranger.id))
    async with h.hub.db.session() as s:
        assert (await s.execute(select(TipShown))).first() is None


# -- item 15: one time format in a patient's view ---------------------------------------------

CLOCK_12H = re.compile(r"\b(1[0-2]|[1-9]):[0-5]\d (am|pm)\b")
CLOCK_ANY = re.compile(r"\b\d{1,2}:\d{2}\b(?! (am|pm))")


async def test_settings_write_every_time_one_way(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/settings")
    menu = fake.last(u.id)
    await h.press(u, menu, "st:tm")
    ask = fake.sent_message(u.id, menu.message_id)
    labels = [b for b in ask.button_texts]
    assert labels and all(CLOCK_12H.fullmatch(lbl) for lbl in labels), labels
    # Driven from the content's own list: each offered time is written by the formatter.
    c = h.hub.content
    offered = [time.fromisoformat(v) for v in c.raw("onboarding_data.time_buttons", "en")]
    assert labels == [timefmt.clock(c, "en", t) for t in offered]

    await h.send(u, "13:16")
    saved = _text(fake.last(u.id))
    assert "Daily check-in: 1:16 pm" in saved
    assert not CLOCK_ANY.search(saved), saved
    await h.press(u, fake.last(u.id), "st:tm")
    await h.press(u, fake.last(u.id), "st:tm:0700")
    assert "Daily check-in: 7:00 am" in _text(fake.last(u.id))

    # The counselors' hours in /sos "talk to my counselor" are written the same way.
    await h.send(u, "/sos")
    await h.press(u, fake.last(u.id), "sos:talk")
    talk = _text(fake.last(u.id))
    assert CLOCK_12H.search(talk) and not CLOCK_ANY.search(talk), talk
    fake.assert_no_errors()


def test_clock_format_covers_every_minute_of_the_day() -> None:
    from bot.platform.content import get_content

    c = get_content(CONTENT_DIR)
    seen = set()
    for minutes in range(24 * 60):
        t = time(minutes // 60, minutes % 60)
        text = timefmt.clock(c, "en", t)
        assert CLOCK_12H.fullmatch(text), text
        seen.add(text)
    assert len(seen) == 24 * 60  # no two times of day written alike
    assert timefmt.clock(c, "en", time(0, 5)) == "12:05 am" and timefmt.clock(c, "en", time(12, 0)) == "12:00 pm"


# -- item 11: a typed sobriety date is read back -----------------------------------------------


async def _sobriety(db: Database) -> date | None:
    async with db.session() as s:
        return (await s.execute(select(Patient.sobriety_date))).scalars().first()


async def test_typed_sobriety_date_is_read_back_in_settings(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock, sobriety_date=date(2025, 12, 1))
    await h.send(u, "/settings")
    await h.press(u, fake.last(u.id), "st:sob")
    await h.send(u, "Jan 15 2026")
    echo = fake.last(u.id)
    assert "Jan 15, 2026" in _text(echo) and "right" in _text(echo)
    assert echo.callback_data == ["st:sob:d20260115", "st:sob"]
    assert await _sobriety(db) == date(2025, 12, 1)  # nothing saved before the yes

    await h.press(u, echo, "st:sob")  # change it: asked again
    await h.send(u, "1/14/2026")
    echo = fake.last(u.id)
    assert "Jan 14, 2026" in _text(echo)
    await h.press(u, echo, "st:sob:d20260114")
    assert await _sobriety(db) == date(2026, 1, 14)
    assert "Sobriety date: Jan 14, 2026" in _text(fake.sent_message(u.id, echo.message_id))

    # A forged confirmation of a date in the future or nonsense is refused.
    for forged in ("st:sob:d20990101", "st:sob:d2026011", "st:sob:dxxxxxxxx", "st:sob:d20261350"):
        qid = await h.press(u, echo, forged)
        assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    assert await _sobriety(db) == date(2026, 1, 14)
    fake.assert_no_errors()


async def test_typed_sobriety_date_is_read_back_in_onboarding(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    code = await make_invite(h, fake)
    u = fake.add_user(first_name="Zed")
    await h.send(u, f"/start {code}")
    for data in ("ob:age:y", "ob:con:y", "ob:tz:1", "ob:tm:2000"):
        await h.press(u, fake.last(u.id), data)
    await h.send(u, "2026-01-15")
    echo = fake.last(u.id)
    assert "Jan 15, 2026" in _text(echo)
    assert echo.callback_data == ["ob:sob:d20260115", "ob:sob:change"]
    await h.press(u, echo, "ob:sob:change")
    again = fake.sent_message(u.id, echo.message_id)
    assert "sobriety date" in _text(again) and "ob:sob:skip" in again.callback_data
    await h.send(u, "Jan 10 2026")
    await h.press(u, fake.last(u.id), "ob:sob:d20260110")
    assert "ob:mat:y" in fake.last(u.id).callback_data
    assert await _sobriety(db) == date(2026, 1, 10)
    # The old confirmation cannot be pressed again to change the answer: the question onboarding
    # is on is asked again.
    await h.press(u, echo, "ob:sob:d20260115")
    assert await _sobriety(db) == date(2026, 1, 10)
    assert "ob:mat:y" in fake.last(u.id).callback_data
    fake.assert_no_errors()


# -- item 8: typed text that is not a risk -------------------------------------------------------

# A message of each distress group in the rules (a group without a sample here fails the test).
DISTRESS = {
    "tired": "I'm so tired of everything",
    "bad_day": "today sucks",
    "feel_bad": "I feel awful",
    "overwhelmed": "everything is too much",
    "lonely": "i feel so lonely tonight",
}
THANKS = ["thanks", "thank you", "ty", "🙏", "Thank you so much!!"]


async def test_distress_without_risk_gets_one_reflective_line_and_the_toolbox(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    rules = free_text.matcher(CONTENT_DIR).rules
    assert set(DISTRESS) == set(rules.distress)
    u = await _patient(fake, db, clock)
    c = h.hub.content
    for group, words in DISTRESS.items():
        assert free_text.read(words, CONTENT_DIR).group == group
        await h.send(u, words)
        msg = fake.last(u.id)
        assert _text(msg).startswith(c.t(f"free_text.distress.{group}", "en"))
        assert "/talk" in _text(msg)
        assert msg.callback_data == ["sos:menu"] and msg.button_texts[0].startswith("🧰")
    # The button opens the toolbox.
    await h.press(u, msg, "sos:menu")
    assert any(d.startswith("sos:x:") for d in fake.last(u.id).callback_data)
    async with h.hub.db.session() as s:
        assert (await s.execute(select(Flag))).first() is None  # no risk, no flag
    fake.assert_no_errors()


async def test_thanks_gets_a_short_warm_answer(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    u = await _patient(fake, db, clock)
    warm = h.hub.content.t("free_text.thanks", "en")
    for words in THANKS:
        await h.send(u, words)
        assert _text(fake.last(u.id)) == warm, words
    # Someone who is not a patient gets the general answer, as before.
    stranger = fake.add_user(first_name="Max", started=True)
    await h.send(stranger, "thanks")
    assert _text(fake.last(stranger.id)) == h.hub.content.t("common.free_text", "en")


async def test_text_inside_a_flow_points_back_to_its_buttons(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock)
    c = h.hub.content
    pointers = {flow: c.t(f"free_text.in_flow.{flow}", "en") for flow in free_text.FLOWS}

    # Today's check-in waits for a button.
    await h.send(u, "/checkin")
    await h.send(u, "hmm not sure")
    assert _text(fake.last(u.id)) == pointers["checkin"]
    # Thanks and distress still get their own answer inside a flow.
    await h.send(u, "thanks")
    assert _text(fake.last(u.id)) == c.t("free_text.thanks", "en")
    await h.send(u, "I feel awful")
    assert "sos:menu" in fake.last(u.id).callback_data
    await h.send(u, "/checkin")
    await h.press(u, fake.last(u.id), "ci:cancel")
    await h.send(u, "hmm not sure")
    assert _text(fake.last(u.id)) == c.t("common.free_text", "en")

    # A questionnaire waits for a button.
    await h.press(u, fake.last(u.id), "as:start:weekly")
    await h.send(u, "what do I do")
    assert _text(fake.last(u.id)) == pointers["assessment"]
    async with h.hub.db.transaction() as s:
        await s.execute(update(AssessmentResult).values(status="cancelled"))

    # A safety question waits for a button: the pointer carries the crisis numbers.
    async with h.hub.db.transaction() as s:
        pid = (await s.execute(select(Patient.id).where(Patient.telegram_id == u.id))).scalar_one()
        s.add(SafetyCheck(patient_id=pid, category="suicide_self_harm", severity="high", source="message", asked_at=clock.now()))
    await h.send(u, "ok")
    reply = _text(fake.last(u.id))
    assert reply == pointers["safety_check"] and "988" in reply and "911" in reply
    fake.assert_no_errors()


async def test_risk_screening_runs_first_inside_a_flow(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = await _patient(fake, db, clock)
    await h.send(u, "/checkin")
    await h.send(u, "I want to kill myself")
    replies = [_text(m) for m in fake.sent(u.id)]
    assert any("988" in r for r in replies)
    assert not any(r == h.hub.content.t("free_text.in_flow.checkin", "en") for r in replies)
    async with h.hub.db.session() as s:
        assert (await s.execute(select(Flag))).first() is not None


# -- items 11 and 14: the consent and /privacy say what is true ----------------------------------


async def _consent_and_privacy(db: Database, clock: FrozenClock, **overrides: object) -> tuple[str, str]:
    async with running_bot(db, clock, **overrides) as (h, fake, _g):
        u = fake.add_user(first_name="Quinn")
        await h.send(u, f"/start {await make_invite(h, fake)}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        consent = fake.last(u.id)
        assert "ob:con:y" in consent.callback_data
        consent_text = _text(consent)
        await h.press(u, consent, "ob:con:y")
        for data in ("ob:tz:1", "ob:tm:2000", "ob:sob:skip", "ob:mat:n"):
            await h.press(u, fake.last(u.id), data)
        await h.send(u, "/privacy")
        privacy_text = _text(fake.last(u.id))
        fake.assert_no_errors()
    return consent_text, privacy_text


def _plain(c, key: str) -> str:  # type: ignore[no-untyped-def]
    return re.sub(r"<[^>]+>", "", c.t(key, "en")).replace("&amp;", "&")


async def test_consent_and_privacy_without_a_key_never_claim_encryption(db: Database, clock: FrozenClock) -> None:
    from bot.platform.content import get_content

    c = get_content(CONTENT_DIR)
    consent, privacy = await _consent_and_privacy(db, clock)
    for text in (consent, privacy):
        assert _plain(c, "privacy.storage_plain") in text
        assert _plain(c, "privacy.storage_encrypted") not in text
        assert "stored encrypted" not in text and "encrypted in our storage" not in text
        assert _plain(c, "privacy.retention") in text  # how long it is kept
        assert "{" not in text  # every placeholder filled
    # Answers can raise flags to the care team; 42 CFR Part 2 in plain words.
    assert "raise a flag to your counselors" in consent
    assert "42 CFR Part 2" in consent and "written consent" in consent and "court order" in consent
    async with db.session() as s:
        version = (await s.execute(select(Patient.consent_version))).scalar_one()
    assert version == consent_text_version() and version in privacy


async def test_consent_and_privacy_with_a_key_say_free_text_is_encrypted(db: Database, clock: FrozenClock) -> None:
    from cryptography.fernet import Fernet

    from bot.platform import crypto
    from bot.platform.content import get_content

    c = get_content(CONTENT_DIR)
    try:
        consent, privacy = await _consent_and_privacy(db, clock, encryption_key=Fernet.generate_key().decode())
    finally:
        crypto.configure(None)
    for text in (consent, privacy):
        assert _plain(c, "privacy.storage_encrypted") in text
        assert _plain(c, "privacy.storage_plain") not in text


def consent_text_version() -> str:
    from bot.platform.content import get_content
    from handlers.enrolment import consent_text

    return consent_text(get_content(CONTENT_DIR), "en")[1]


def test_consent_version_changed_with_its_words() -> None:
    """The consent's words changed in substance (flags, retention, Part 2, encryption as it is):
    patients who agreed to the earlier text are on record with the earlier version."""
    assert consent_text_version() not in ("2026-11-1", "")
