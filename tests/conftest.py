"""Shared fixtures: a real database (SQLite file, or PostgreSQL when TEST_DATABASE_URL is set),
a frozen clock, and the project's fake Bot API server with the real Application running on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

import bot.schema  # noqa: F401  (every table, for create_all)
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.escalation_support import StubDetector
from tests.harness import BotHarness

# Property tests draw the same examples on every run (a failure found once is found again, and CI
# never turns red by luck); new examples that matter are added with @example.
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.load_profile("deterministic")

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
CONTENT_DIR = Path(__file__).resolve().parents[1] / "content"


def database_url(tmp_path: Path) -> str:
    """A database of the test's own: a SQLite file, or a fresh schema on PostgreSQL."""
    if not TEST_DATABASE_URL:
        return f"sqlite+aiosqlite:///{tmp_path}/test.db"
    schema = "t_" + uuid.uuid4().hex[:12]
    _schemas.append(schema)
    sep = "&" if "?" in TEST_DATABASE_URL else "?"
    return f"{TEST_DATABASE_URL}{sep}search_path={schema}"


_schemas: list[str] = []


async def _create_schemas() -> None:
    from sqlalchemy import text

    if not TEST_DATABASE_URL:
        return
    admin = Database(TEST_DATABASE_URL)
    async with admin.engine.begin() as conn:
        for schema in _schemas:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    await admin.dispose()


async def _drop_schemas() -> None:
    from sqlalchemy import text

    if not TEST_DATABASE_URL:
        return
    admin = Database(TEST_DATABASE_URL)
    async with admin.engine.begin() as conn:
        while _schemas:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{_schemas.pop()}" CASCADE'))
    await admin.dispose()


@pytest.fixture
async def db_url(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database for this test (the schema exists on PostgreSQL)."""
    url = database_url(tmp_path)
    await _create_schemas()
    try:
        yield url
    finally:
        await _drop_schemas()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    d = Database(db_url)
    await d.create_all()
    try:
        yield d
    finally:
        await d.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """The project's fake Bot API server, on a free loopback port."""
    async with FakeTelegram() as f:
        yield f


@pytest.fixture
def stub_detector() -> StubDetector:
    """A risk detector that knows a few fixed phrases (tests/escalation_support.py): the bot of
    a test that uses this fixture screens with it (`h`, or `BotHarness(..., detector=...)`)."""
    return StubDetector()


@pytest.fixture
async def h(
    fake: FakeTelegram, db: Database, clock: FrozenClock, request: pytest.FixtureRequest
) -> AsyncIterator[BotHarness]:
    """The real bot running against `fake`, on the frozen clock (screening with the stub detector
    when the test uses `stub_detector`)."""
    detector = request.getfixturevalue("stub_detector") if "stub_detector" in request.fixturenames else None
    harness = BotHarness(fake, db, clock, detector=detector)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stands for the bot's code in the content fingerprint (bot/platform/content.py), so a test
    can change it: a folder with one module, `rules.py`."""
    from bot.platform import content

    d = tmp_path / "code"
    d.mkdir()
    (d / "rules.py").write_text("RULES = 1\n")
    monkeypatch.setattr(content, "_CODE_DIR", d)
    return d
