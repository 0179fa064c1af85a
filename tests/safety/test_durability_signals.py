"""A safety signal the database cannot store still reaches the counselors, and is recorded once
the database works again; a changed or removed ENCRYPTION_KEY stops the start with one sentence.

The full disk is simulated deterministically: every write statement on the running bot's engine
raises SQLAlchemy's OperationalError ("database or disk is full") while the fault is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from bot.core.vocabulary import FLAG_SEVERITIES, Category, Severity
from bot.escalation.models import Flag
from bot.escalation.rules import load_rules
from bot.platform import crypto
from bot.platform.clock import FrozenClock
from bot.platform.config import ConfigError
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import RuntimeSetting
from bot.safety import signals
from bot.safety.service import Signal
from bot.safety.signals import SignalKeeper
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import ADMIN_ID, BotHarness, make_settings

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@contextmanager
def disk_full(db: Database) -> Iterator[None]:
    """Every write on `db` fails as on a full disk; reads still work."""

    def fail(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            raise OperationalError(statement, {}, Exception("database or disk is full"))

    event.listen(db.engine.sync_engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", fail)


async def _until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Wait for an async condition (the bot works in the background meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _flags(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(Flag))).scalar_one())


@pytest.fixture(autouse=True)
def _no_key_left_behind() -> Iterator[None]:
    yield
    crypto.configure(None)


# -- the signal that cannot be stored ---------------------------------------------------------------


async def test_a_crisis_on_a_full_disk_reaches_the_group_and_is_recorded_when_space_is_back(
    fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: object
):
    h = BotHarness(fake, db, clock, detector=stub_detector)
    jordan = fake.add_user(first_name="Jordan", started=True)
    riley = fake.add_user(first_name="Riley", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=jordan.id, code="P-1234", first_name="Jordan")
    await sup.add_patient(db, clock.now(), telegram_id=riley.id, code="P-5678", first_name="Riley")
    await h.start()
    try:
        h.hub.get(SignalKeeper).retry_base = h.hub.get(SignalKeeper).retry_cap = 0.05
        with disk_full(h.hub.db):
            inc = fake.send_text(jordan, "I'm going to end it all tonight")
            await h.handled(inc.update_id)
            # The patient has the resources at once.
            assert "988" in (fake.sent(jordan.id)[0].plain_text or "")
            # The counselors hear of it now: code, category, severity — no name, no words.
            alert = await fake.wait_for_message(h.group.id)
            text = alert.plain_text or ""
            assert "P-1234" in text and "suicide or self-harm" in text and "CRISIS" in text
            assert "Jordan" not in text and "end it all" not in text
            # The admins are told, once.
            note = await fake.wait_for_message(ADMIN_ID)
            assert "database" in (note.plain_text or "")

            inc = fake.send_text(riley, "I took all my pills")
            await h.handled(inc.update_id)
            second = await fake.wait_for_message(h.group.id, after=alert)
            assert "P-5678" in (second.plain_text or "") and "overdose" in (second.plain_text or "")
            assert len(fake.sent(ADMIN_ID)) == 1
            assert await _flags(h.hub.db) == 0
            assert h.hub.get(SignalKeeper).held == 2

        # Space is back: the background retry stores both as ordinary flags.
        await _until(lambda: _stored(h, 2), "the flags to be stored")
        await h.outbox_idle()
        assert h.hub.get(SignalKeeper).held == 0
        async with h.hub.db.session() as s:
            rows = (await s.execute(select(Flag.category, Flag.severity).order_by(Flag.id))).all()
        assert [tuple(r) for r in rows] == [("suicide_self_harm", "crisis"), ("overdose_medical", "crisis")]
        # The alerts say they are recorded now, and under which flag; the flags' own cards follow.
        edited = fake.sent_message(h.group.id, alert.message_id).plain_text or ""
        assert "Recorded now as flag #1" in edited
        assert "Recorded now as flag #2" in (fake.sent_message(h.group.id, second.message_id).plain_text or "")
        cards = [m for m in fake.sent(h.group.id) if m.message_id not in (alert.message_id, second.message_id)]
        assert cards and all(m.callback_data for m in cards)
        # The admins hear that the database works again.
        assert len(fake.sent(ADMIN_ID)) == 2 and "again" in (fake.sent(ADMIN_ID)[1].plain_text or "")
        fake.assert_no_errors()
    finally:
        await h.stop()


async def _stored(h: BotHarness, n: int) -> bool:
    return await _flags(h.hub.db) >= n and h.hub.get(SignalKeeper).held == 0


async def test_the_minimal_alert_is_retried_when_the_group_is_at_its_limit(
    fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: object
):
    h = BotHarness(fake, db, clock, detector=stub_detector)
    jordan = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=jordan.id, code="P-1234", first_name="Jordan")
    await h.start()
    try:
        h.hub.get(SignalKeeper).retry_base = h.hub.get(SignalKeeper).retry_cap = 0.05
        fake.fail("sendMessage", "429", times=1, retry_after=1, chat_id=h.group.id)
        with disk_full(h.hub.db):
            inc = fake.send_text(jordan, "I'm going to end it all tonight")
            await h.handled(inc.update_id)
            alert = await fake.wait_for_message(h.group.id, timeout=5)
            assert "P-1234" in (alert.plain_text or "")
        await _until(lambda: _stored(h, 1), "the flag to be stored")
    finally:
        await h.stop()


async def test_a_signal_from_someone_who_is_not_a_patient_alerts_no_one(
    fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: object
):
    h = BotHarness(fake, db, clock, detector=stub_detector)
    stranger = fake.add_user(first_name="Sky", started=True)
    await h.start()
    try:
        h.hub.get(SignalKeeper).retry_base = h.hub.get(SignalKeeper).retry_cap = 0.05
        with disk_full(h.hub.db):
            inc = fake.send_text(stranger, "I'm going to end it all tonight")
            await h.handled(inc.update_id)
            assert "988" in (fake.sent(stranger.id)[0].plain_text or "")
        await _until(lambda: _stored(h, 0), "the signal to be dropped")
        assert fake.sent(h.group.id) == []
    finally:
        await h.stop()


async def test_yes_to_the_safety_question_on_a_full_disk_reaches_the_group_and_is_recorded_later(
    fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: object
):
    h = BotHarness(fake, db, clock, detector=stub_detector)
    jordan = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=jordan.id, code="P-1234", first_name="Jordan")
    await h.start()
    try:
        h.hub.get(SignalKeeper).retry_base = h.hub.get(SignalKeeper).retry_cap = 0.05
        await h.send(jordan, "some days I don't want to wake up")
        question = fake.last(jordan.id)
        yes = next(d for d in question.callback_data if d.startswith("sf:y:"))
        with disk_full(h.hub.db):
            fake.press(jordan, question, yes)
            reply = await fake.wait_for_message(jordan.id, after=question)
            assert "988" in (reply.plain_text or "")
            alert = await fake.wait_for_message(h.group.id)
            text = alert.plain_text or ""
            assert "P-1234" in text and "CRISIS" in text and "suicide or self-harm" in text
            assert "wake up" not in text and "Jordan" not in text
            assert await _flags(h.hub.db) == 0
        await _until(lambda: _stored(h, 1), "the answer to be stored")
        await h.outbox_idle()
        async with h.hub.db.session() as s:
            (severity,) = (await s.execute(select(Flag.severity))).scalars().all()
        assert severity == "crisis"
        assert "Recorded now as flag #" in (fake.sent_message(h.group.id, alert.message_id).plain_text or "")
    finally:
        await h.stop()


@pytest.mark.parametrize("severity", FLAG_SEVERITIES)
@pytest.mark.parametrize("category", list(Category))
def test_the_minimal_alert_for_every_category_and_severity(category: str, severity: str, clock: FrozenClock):
    c = get_content()
    text = signals.alert_text(c, "en", code="P-0042", category=category, severity=severity, at=clock.now(), zone="America/New_York")
    assert "P-0042" in text and c.t(f"flags.category.{category}", "en") in text
    assert c.t(f"flags.severity.{severity}", "en") in text
    unknown = signals.alert_text(c, "en", code=None, category=None, severity=severity, at=clock.now(), zone="UTC")
    assert unknown.count(c.t("signals.unknown", "en")) == 2


def test_which_signals_call_for_a_counselor_at_once():
    for severity in ("moderate", "high", "crisis"):
        assert signals.needs_counselor(Signal(severity, "suicide_self_harm", (), False))
    # Uncertain: a question first; only what would be flagged without an answer alerts now
    # (the threshold is the clinical rule in content/rules/escalation.yaml).
    threshold = Severity(load_rules().confirm.flag_without_answer_from)
    for severity in ("moderate", "high", "crisis"):
        expected = Severity(severity) >= threshold
        assert signals.needs_counselor(Signal(severity, "suicide_self_harm", (), True)) is expected
    assert not signals.needs_counselor(Signal("none", None, (), False))


# -- the encryption key check -------------------------------------------------------------------


def _keyed(h: BotHarness, key: str | None) -> BotHarness:
    """The same installation started with another ENCRYPTION_KEY (None: without one)."""
    h.settings = make_settings(h.fake, h.db, counselor_chat_id=h.group.id, encryption_key=key)
    return h


async def _start_fails(h: BotHarness, key: str | None) -> str:
    with pytest.raises(ConfigError) as err:
        await _keyed(h, key).start()
    h.runner = None
    return str(err.value)


async def test_a_changed_or_removed_key_stops_the_start_with_one_sentence(
    fake: FakeTelegram, db: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
):
    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    h = _keyed(BotHarness(fake, db, clock), key)
    await h.start()
    await h.stop()
    async with db.session() as s:
        row = await s.get(RuntimeSetting, crypto.CHECK_KEY)
    assert row is not None and row.value.startswith("enc1:")

    with caplog.at_level(logging.ERROR):
        changed = await _start_fails(h, other)
    assert "ENCRYPTION_KEY" in changed and "changed" in changed
    assert changed.count(".") == 1 and changed.endswith(".") and "\n" not in changed
    assert key not in caplog.text and other not in caplog.text
    removed = await _start_fails(h, None)
    assert "ENCRYPTION_KEY is not set" in removed and removed.count(".") == 1

    # The right key starts as before.
    await _keyed(h, key).start()
    await h.stop()


async def test_data_from_before_the_key_check_is_checked_too(fake: FakeTelegram, db: Database, clock: FrozenClock):
    """An installation that ran before the check row existed: its stored data is the check."""
    from bot.core import state

    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    crypto.configure(key)
    async with db.transaction() as s:
        await state.set_(s, 4242, "sos:plan_entry", {"section": "people"}, clock.now())
    crypto.configure(None)
    h = BotHarness(fake, db, clock)
    assert "changed" in await _start_fails(h, other)
    assert "not set" in await _start_fails(h, None)
    await _keyed(h, key).start()
    await h.stop()
    async with db.session() as s:
        assert (await s.get(RuntimeSetting, crypto.CHECK_KEY)) is not None


async def test_a_key_set_later_on_an_unencrypted_installation_is_taken_up(
    fake: FakeTelegram, db: Database, clock: FrozenClock
):
    h = BotHarness(fake, db, clock)
    await h.start()
    await h.stop()
    await _keyed(h, Fernet.generate_key().decode()).start()
    await h.stop()
    # From now on the key is checked: taking it away again stops the start.
    assert "not set" in await _start_fails(h, None)


async def test_a_message_sent_straight_to_telegram_says_why_it_was_not_taken(db: Database, clock: FrozenClock):
    """What the signal keeper sends while the database cannot store (bot/platform/outbox.py
    `send_now`): the message id, or `NotSent` with the wait a 429 asks for."""
    from datetime import timedelta
    from types import SimpleNamespace

    from telegram.error import Forbidden, NetworkError, RetryAfter

    from bot.platform.outbox import NotSent, Sender

    class Bot:
        def __init__(self, refusal: Exception | None) -> None:
            self.refusal = refusal

        async def send_message(self, chat_id: int, text: str, parse_mode: str | None = None) -> Any:
            assert parse_mode == "HTML"
            if self.refusal is not None:
                raise self.refusal
            return SimpleNamespace(message_id=42)

    assert await Sender(db, Bot(None), clock).send_now(1, "<b>alert</b>") == 42  # type: ignore[arg-type]
    for refusal, wait in (
        (RetryAfter(timedelta(seconds=7)), 7.0),
        (Forbidden("blocked"), None),
        (NetworkError("down"), None),
    ):
        with pytest.raises(NotSent) as caught:
            await Sender(db, Bot(refusal), clock).send_now(1, "alert")  # type: ignore[arg-type]
        assert caught.value.retry_after == wait and str(caught.value) == type(refusal).__name__
