"""Shared fixtures: a real database (SQLite file, or PostgreSQL when TEST_DATABASE_URL is set),
a frozen clock, and the project's fake Bot API server with the real Application running on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.clock import FrozenClock
from bot.db import Database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
CONTENT_DIR = Path(__file__).resolve().parents[1] / "content"


def database_url(tmp_path: Path) -> str:
    return TEST_DATABASE_URL or f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(database_url(tmp_path))
    await d.drop_all()
    await d.create_all()
    try:
        yield d
    finally:
        await d.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
