"""Screening from the first second: the bot receives while its risk detector still builds
(bot/safety/screening.py). The build is held on an event the test controls, so "still building" is a
fact of the test, not a race."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.core.vocabulary import Severity
from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.safety.risk import registry
from bot.safety.risk.loader import RiskContentError
from bot.safety.screening import Screening
from bot.safety.service import Detection
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

CRISIS = "I am going to kill myself tonight"
# Found by the full detector only (high, use disclosure): the crisis rules alone see nothing.
USE = "I used heroin yesterday"
ORDINARY = "hello, how are you"


@pytest.fixture
async def held(fake: FakeTelegram, db: Database, clock: FrozenClock) -> AsyncIterator[tuple[BotHarness, threading.Event]]:
    """The bot started with its full detector's build held until the event is set."""
    hold = threading.Event()
    h = BotHarness(fake, db, clock)
    await h.start(detector_hold=hold)
    try:
        yield h, hold
    finally:
        hold.set()
        await h.stop()


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, name: str, code: str):  # type: ignore[no-untyped-def]
    u = fake.add_user(first_name=name, started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code=code, first_name=name)
    return u


async def _flags(db: Database) -> list[tuple[str, str]]:
    async with db.session() as s:
        return [(f.category, f.severity) for f in (await s.scalars(select(Flag).order_by(Flag.id))).all()]


def test_the_fixed_texts_still_mean_what_this_test_needs() -> None:
    full, crisis = registry.get_detector(), registry.crisis_detector()
    assert full.detect(CRISIS).severity == crisis.detect(CRISIS).severity == Severity.CRISIS
    assert full.detect(USE).severity == Severity.HIGH and crisis.detect(USE).severity == Severity.NONE
    assert full.detect(ORDINARY).severity == crisis.detect(ORDINARY).severity == Severity.NONE


async def test_a_crisis_while_the_detector_builds_is_answered_and_nothing_goes_unscreened(
    held: tuple[BotHarness, threading.Event], fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    h, hold = held
    assert not h.hub.get(Screening).ready
    a = await _patient(fake, db, clock, "Jordan", "P-1001")
    b = await _patient(fake, db, clock, "Riley", "P-1002")
    c = await _patient(fake, db, clock, "Sam", "P-1003")
    # Sent first, so they are ahead of the crisis: they must not hold it up, nor skip screening.
    use = fake.send_text(b, USE)
    hello = fake.send_text(c, ORDINARY)
    crisis = fake.send_text(a, CRISIS)

    await h.handled(crisis.update_id)
    await h.outbox_idle()
    reply = fake.sent(a.id)[0].plain_text or ""
    assert "988" in reply and "911" in reply
    assert await _flags(db) == [("suicide_self_harm", "crisis")]
    (post,) = fake.sent(h.group.id)
    assert "P-1001" in (post.plain_text or "") and "CRISIS" in (post.plain_text or "")
    # The others wait for the full detector: nothing answered them, nothing marked them done.
    assert not h.hub.get(Screening).ready
    assert use.update_id not in h.processed and hello.update_id not in h.processed
    assert fake.sent(b.id) == [] and fake.sent(c.id) == []

    hold.set()
    await h.hub.get(Screening).wait_ready()
    await h.handled(use.update_id)
    await h.handled(hello.update_id)
    await h.outbox_idle()
    # Screened by the full detector: the use disclosure (which the crisis rules alone miss) is flagged.
    assert ("use_disclosure", "high") in await _flags(db)
    assert fake.sent(b.id), "the use disclosure was answered"
    assert len(fake.sent(a.id)) >= 1
    fake.assert_no_errors()


async def test_buttons_and_commands_go_on_while_the_detector_builds(
    held: tuple[BotHarness, threading.Event], fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    h, hold = held
    u = await _patient(fake, db, clock, "Jordan", "P-1001")
    await h.send(u, "/help")  # not screened: no wait for the detector
    assert fake.sent(u.id) and not h.hub.get(Screening).ready
    hold.set()


async def test_a_failed_build_stops_the_bot_and_leaves_held_texts_in_the_inbox(
    fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = threading.Event()
    h = BotHarness(fake, db, clock)
    await h.start(detector_hold=hold)
    u = await _patient(fake, db, clock, "Jordan", "P-1001")

    def broken(self: Detection) -> None:
        raise RiskContentError([("risk/en.yaml", 1, "broken")])

    monkeypatch.setattr(Detection, "warm", broken)
    inc = fake.send_text(u, ORDINARY)
    await fake.wait_idle(timeout=10)  # the bot has taken it from Telegram (stored in the inbox)
    hold.set()
    assert h._task is not None
    with pytest.raises(RiskContentError):
        await asyncio.wait_for(h._task, 30)
    assert inc.update_id not in h.processed  # not handled: still in the inbox for the next start
    # The person is told something went wrong, with the emergency numbers (the usual error reply).
    (told,) = fake.sent(u.id)
    assert "988" in (told.plain_text or "")


async def test_screening_says_which_detector_screens_an_update() -> None:
    """Without the application: a crisis text gets the crisis rules, any other text waits for
    the full detector, and an update screening does not read goes on at once."""

    class Msg:
        def __init__(self, text: str | None) -> None:
            self.text, self.caption = text, None

    class Upd:
        def __init__(self, text: str | None) -> None:
            self.effective_message = Msg(text)

    s = Screening()
    s.hold = threading.Event()
    s.screened = lambda update: getattr(update.effective_message, "text", None) != "/help"  # type: ignore[attr-defined]
    fatal: list[BaseException] = []
    s.start(fatal.append)
    try:
        assert await s.detector_for(Upd("/help")) is None
        chosen = await asyncio.wait_for(s.detector_for(Upd(CRISIS)), 60)
        assert chosen is registry.crisis_detector() or chosen is registry.get_detector()
        waiting = asyncio.ensure_future(s.detector_for(Upd(ORDINARY)))
        await asyncio.sleep(0)
        assert not waiting.done()
        s.hold.set()
        assert await asyncio.wait_for(waiting, 120) is None
        assert s.ready and not fatal
        assert await s.detector_for(Upd(CRISIS)) is None  # the full detector screens it now
    finally:
        s.hold.set()
        await s.stop()
