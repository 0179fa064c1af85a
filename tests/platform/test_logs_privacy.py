"""The logs never hold a name, anything a person typed, or the bot token (DESIGN §2.10, §5)."""

from __future__ import annotations

import logging

import pytest

from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests.onboarding_support import ADMIN, make_invite, running_bot, text_of

NAME = "Zebulonius"
TYPED = ["Atlantis/Sunken_City", "quarter past elephant", "purple sobriety banana", "2026-01-17"]


# Libraries at DEBUG dump raw updates (python-telegram-bot) and SQL parameters (aiosqlite); they
# stay at their production levels here. The project's own loggers are captured at DEBUG.
LIBRARY_LEVELS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "telegram": logging.INFO,
    "aiosqlite": logging.INFO,
    "sqlalchemy": logging.WARNING,
    "asyncio": logging.INFO,
}


@pytest.fixture
def production_log_levels():
    saved = {n: logging.getLogger(n).level for n in LIBRARY_LEVELS}
    for n, level in LIBRARY_LEVELS.items():
        logging.getLogger(n).setLevel(level)
    yield
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


async def test_flows_leave_no_personal_data_in_logs(
    db: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture, production_log_levels: None
):
    caplog.set_level(logging.DEBUG)
    async with running_bot(db, clock) as (h, fake, group):
        token = fake.token
        code = await make_invite(h, fake)
        u = fake.add_user(first_name=NAME, last_name="Quixotely", username="zeb_q")
        await h.send(u, f"/start {code}")
        await h.press(u, fake.last(u.id), "ob:age:y")
        await h.press(u, fake.last(u.id), "ob:con:y")
        await h.send(u, TYPED[0])
        await h.press(u, fake.last(u.id), "ob:tz:2")
        await h.send(u, TYPED[1])
        await h.press(u, fake.last(u.id), "ob:tm:0900")
        await h.send(u, TYPED[2])
        await h.send(u, TYPED[3])
        await h.press(u, fake.last(u.id), "ob:sob:d20260117")  # the typed date, confirmed
        await h.press(u, fake.last(u.id), "ob:mat:n")
        assert "all set" in text_of(fake.last(u.id))
        await h.send(u, "/settings")
        await h.press(u, fake.last(u.id), "st:tm")
        await h.send(u, "7:45 pm")
        await h.send(u, "/privacy")
        await h.send(u, "/mydata")
        await h.press(u, fake.last(u.id), "zz:forged")
        await h.push(fake.send_sticker(u))
        stranger = fake.add_user(first_name="Ophelius")
        await h.send(stranger, "/grant 1 counselor")
        await h.send(stranger, "/start " + "x" * 70)
        await h.send(ADMIN, f"/grant {u.id} facilitator")
        await h.send(u, "/delete")
        await h.press(u, fake.last(u.id), "pv:del:1")
        await h.press(u, fake.last(u.id), "pv:del:2")
        fake.assert_no_errors()
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    assert logged, "nothing was logged at all"
    for secret in [NAME, "Quixotely", "zeb_q", "Ophelius", token, token.split(":")[1], code, *TYPED, "7:45 pm"]:
        assert secret not in logged, f"{secret!r} appears in the logs"
