"""Shared helpers for the onboarding, privacy and authorization end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.platform.clock import Clock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.harness import ADMIN_ID, BotHarness

ADMIN = ADMIN_ID


def text_of(message: Any) -> str:
    plain = getattr(message, "plain", None)
    if plain is None:
        plain = message.plain_text
    return plain or ""


@asynccontextmanager
async def running_bot(db: Database, clock: Clock | None = None, **overrides: Any) -> AsyncIterator[tuple[BotHarness, FakeTelegram, Any]]:
    """The fake Telegram with an admin and a counselors' group, and the bot running on it."""
    async with FakeTelegram() as fake:
        h = BotHarness(fake, db, clock, **overrides)
        h.group.members[ADMIN] = "creator"
        await h.start()
        try:
            yield h, fake, h.group
        finally:
            await h.stop()


TEST_COHORT = "Test cohort"


async def make_invite(h: BotHarness, fake: FakeTelegram, args: str = "") -> str:
    """The admin asks for an invite (into `args`, else into the test cohort, created if needed:
    every invite has a cohort); returns the code from the link in the QR's caption."""
    if not args:
        await h.send(ADMIN, f"/cohort new {TEST_COHORT}")
        args = TEST_COHORT
    await h.send(ADMIN, f"/invite {args}".strip())
    caption = text_of(fake.last(ADMIN))
    assert "start=" in caption, caption
    return caption.split("start=", 1)[1].split()[0]


async def enrol(h: BotHarness, fake: FakeTelegram, user: Any, code: str) -> None:
    """Onboard `user` with invite `code` through every step."""
    await h.send(user, f"/start {code}")
    await h.press(user, fake.last(user.id), "ob:age:y")
    await h.press(user, fake.last(user.id), "ob:con:y")
    await h.press(user, fake.last(user.id), "ob:tz:1")
    await h.press(user, fake.last(user.id), "ob:tm:2000")
    await h.press(user, fake.last(user.id), "ob:sob:skip")
    await h.press(user, fake.last(user.id), "ob:mat:n")
    assert "all set" in text_of(fake.last(user.id))
