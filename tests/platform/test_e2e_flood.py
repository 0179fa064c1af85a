"""One person's flood cannot slow everyone: per-person limits, one line per flood, risk first.

End to end through the fake Bot API; the limiter's time is the test's (`Ticks`), so what is
within a limit never depends on how fast the machine is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.config import Settings
from bot.platform.db import Database
from bot.platform.models import InboxUpdate
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

pytestmark = pytest.mark.usefixtures("stub_detector")

# The limits as configured by default (the harness lifts them for every other test).
LIMITS = {
    name: field.default for name, field in Settings.model_fields.items() if name.startswith("flood_")
}


@pytest.fixture
async def h(fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: sup.StubDetector) -> AsyncIterator[BotHarness]:
    harness = BotHarness(fake, db, clock, detector=stub_detector, **LIMITS)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()

CRISIS = "I can't do this anymore, I'm going to end it all tonight"


class Ticks:
    """The limiter's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _ticks(h: BotHarness) -> Ticks:
    ticks = Ticks()
    assert h.hub.flood is not None
    h.hub.flood.now = ticks
    return ticks


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, telegram_id: int, code: str) -> Any:
    await sup.add_patient(db, clock.now(), telegram_id=telegram_id, code=code)
    return fake.add_user(id=telegram_id, first_name="Jordan", started=True)


async def _statuses(db: Database, ids: list[int]) -> set[str]:
    async with db.session() as s:
        rows = (await s.execute(select(InboxUpdate.status).where(InboxUpdate.update_id.in_(ids)))).scalars().all()
    assert len(rows) == len(ids)
    return set(rows)


async def _crisis_flags(db: Database) -> list[Flag]:
    async with db.session() as s:
        return list((await s.execute(select(Flag).where(Flag.severity == "crisis"))).scalars())


def _texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.plain_text or "" for m in fake.sent(chat_id)]


async def test_a_patients_flood_is_answered_once_and_its_crisis_is_still_answered_and_flagged(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    ticks = _ticks(h)
    flood_line = h.hub.content.t("common.flood", "en")
    u = await _patient(fake, db, clock, 5001, "P-1001")
    # What one ordinary text gets, within the limit.
    await h.send(u, "hello there")
    one = len(fake.sent(u.id))
    assert one >= 1 and flood_line not in _texts(fake, u.id)
    burst = h.settings.flood_member_burst
    ids = [fake.send_text(u, f"hello {i}").update_id for i in range(burst + 10)]
    crisis = fake.send_text(u, CRISIS)  # well beyond the limit
    ids += [fake.send_text(u, f"and again {i}").update_id for i in range(10)]
    await h.settle()
    texts = _texts(fake, u.id)
    assert texts.count(flood_line) == 1  # one line for the whole flood
    # The crisis inside the flood: answered with the resources and flagged for the care team.
    assert any("988" in t and "Crisis Text Line" in t for t in texts)
    (flag,) = await _crisis_flags(db)
    assert any("CRISIS" in (m.plain_text or "") and "P-1001" in (m.plain_text or "") for m in fake.sent(h.group.id))
    # Ordinary handling stopped at the limit (the first text used one token already).
    ordinary = [t for t in texts if t != flood_line and "988" not in t]
    assert len(ordinary) == one * burst
    # Every update is done, handled or not: none comes back after a restart.
    assert await _statuses(db, [*ids, crisis.update_id]) == {"done"}
    # Once the bucket has filled again, the next text is handled as always, and a new flood
    # would get its line again.
    ticks.t += burst * h.settings.flood_member_every_seconds
    before = len(fake.sent(u.id))
    await h.send(u, "hello after a while")
    assert len(fake.sent(u.id)) == before + one
    assert _texts(fake, u.id).count(flood_line) == 1
    fake.assert_no_errors()


async def test_a_strangers_flood_gets_nothing_beyond_its_limit(h: BotHarness, fake: FakeTelegram, db: Database) -> None:
    ticks = _ticks(h)
    flood_line = h.hub.content.t("common.flood", "en")
    stranger = fake.add_user(first_name="Sky", started=True)
    await h.send(stranger, "hi")
    one = len(fake.sent(stranger.id))
    assert one >= 1
    burst = h.settings.flood_stranger_burst
    ids = [fake.send_text(stranger, f"hi {i}").update_id for i in range(burst + 20)]
    await h.settle()
    assert len(fake.sent(stranger.id)) == one * burst  # nothing beyond the limit, not even the line
    assert flood_line not in _texts(fake, stranger.id)
    # A crisis beyond the limit still gets the resources, once per flood.
    first = fake.send_text(stranger, CRISIS)
    second = fake.send_text(stranger, CRISIS)
    await h.settle()
    crisis_replies = [t for t in _texts(fake, stranger.id) if "988" in t]
    assert len(crisis_replies) == 1
    assert await _statuses(db, [*ids, first.update_id, second.update_id]) == {"done"}
    assert fake.sent(h.group.id) == []  # a stranger is not a patient: no flag
    # After the strangers' refill time, they are read again.
    ticks.t += burst * h.settings.flood_stranger_every_seconds
    before = len(fake.sent(stranger.id))
    await h.send(stranger, "hello?")
    assert len(fake.sent(stranger.id)) == before + one
    fake.assert_no_errors()


async def test_another_patients_crisis_goes_ahead_of_a_2000_message_flood(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    _ticks(h)
    flooder = await _patient(fake, db, clock, 5001, "P-1001")
    other = await _patient(fake, db, clock, 5002, "P-1002")
    proc = h.app.update_processor
    places = proc.ordinary_places
    burst = h.settings.flood_member_burst
    assert 0 < places < proc.max_concurrent_updates
    assert burst > places  # some of the flood's ordinary updates wait for a place
    started: list[int] = []
    run = proc.do_process_update

    async def recording(update: Any, coroutine: Any) -> None:
        started.append(update.update_id)
        await run(update, coroutine)

    proc.do_process_update = recording
    # The flooder's replies hang (a slow Telegram for them): their updates hold every place
    # ordinary updates may take.
    flood_line = h.hub.content.t("common.flood", "en")
    fake.hold("sendMessage", chat_id=flooder.id, predicate=lambda _m, params: params.get("text") != flood_line)
    flood = [fake.send_text(flooder, f"spam {i}").update_id for i in range(1000)]
    crisis = fake.send_text(other, CRISIS)
    flood += [fake.send_text(flooder, f"spam {i}").update_id for i in range(1000, 2000)]
    # The crisis is answered and flagged while the flood's backlog still waits.
    await h.handled(crisis.update_id, timeout=30)
    assert any("988" in t for t in _texts(fake, other.id))
    assert proc.waiting(urgent=False) == burst - places
    handled_flood = [u for u in started if u != crisis.update_id]
    assert len(handled_flood) == places
    fake.release()
    await h.settle(timeout=60)
    handled_flood = [u for u in started if u != crisis.update_id]
    assert len(handled_flood) == burst
    waited = handled_flood[places:]  # the flood's ordinary updates that were waiting for a place
    assert all(started.index(crisis.update_id) < started.index(u) for u in waited)
    assert any("988" in t for t in _texts(fake, other.id))
    assert len(await _crisis_flags(db)) == 1
    assert _texts(fake, flooder.id).count(flood_line) == 1
    assert await _statuses(db, [*flood, crisis.update_id]) == {"done"}
