import asyncio
from datetime import UTC, datetime

from sqlalchemy import select, text

from bot.db import Database
from bot.models import Cohort


async def test_fifty_concurrent_read_modify_writes_lose_nothing(db: Database):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.transaction() as s:
        s.add(Cohort(name="counter", timezone="0", created_at=now))

    async def bump() -> None:
        # The convention for read-modify-write: lock what you read (PostgreSQL takes a row lock;
        # SQLite's writing transactions already begin IMMEDIATE).
        async with db.transaction() as s:
            q = select(Cohort).where(Cohort.name == "counter").with_for_update()
            row = (await s.execute(q)).scalar_one()
            value = int(row.timezone or "0")
            await asyncio.sleep(0)  # let the others run between the read and the write
            row.timezone = str(value + 1)

    await asyncio.gather(*(bump() for _ in range(50)))
    async with db.session() as s:
        row = (await s.execute(select(Cohort).where(Cohort.name == "counter"))).scalar_one()
    assert row.timezone == "50"


async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(db: Database):
    if not db.sqlite:
        return
    async with db.session() as s:
        assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await s.execute(text("PRAGMA busy_timeout"))).scalar() >= 5000


async def test_datetimes_come_back_aware_utc(db: Database):
    when = datetime(2026, 7, 1, 12, 30, tzinfo=UTC)
    async with db.transaction() as s:
        s.add(Cohort(name="tz", created_at=when))
    async with db.session() as s:
        got = (await s.execute(select(Cohort.created_at).where(Cohort.name == "tz"))).scalar_one()
    assert got == when and got.tzinfo is not None


async def test_transaction_rolls_back_on_error(db: Database):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with db.transaction() as s:
            s.add(Cohort(name="ghost", created_at=now))
            await s.flush()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with db.session() as s:
        assert (await s.execute(select(Cohort).where(Cohort.name == "ghost"))).first() is None
