"""Erasure finds a patient's scheduled items by their indexed patient column: every kind the bot
schedules goes, other patients' items and items about no one stay, and no statement of the
erasure reads all of scheduled_items (it held the event loop for seconds at 300,000 rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import JSON, DateTime, bindparam, insert, select, text

from bot.core.models import Patient
from bot.platform import migrate
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import ScheduledItem
from bot.platform.scheduler import payload_patient, schedule
from bot.privacy import erasure
from bot.privacy import service as privacy
from tests.conftest import CONTENT_DIR, TEST_DATABASE_URL
from tests.plan_support import plans, statements_of

REMOVED = erasure.removed_text(get_content(CONTENT_DIR), "en")

A, B = 7, 17  # patient ids; 7 is also a part of B's keys ("...:17:...") and of dates


async def _patients(db: Database, now: datetime) -> None:
    async with db.transaction() as s:
        await s.execute(insert(Patient), [
            dict(id=pid, telegram_id=5000 + pid, code=f"T-{pid:04d}", status="active", language="en",
                 timezone="America/New_York", created_at=now) for pid in (A, B)
        ])


async def test_erasure_takes_every_kind_of_the_patients_items_and_no_one_elses(h: Any):
    kinds = sorted(h.hub.sweeper.kinds)
    assert len(kinds) > 3
    now = h.clock.now()
    later = now + timedelta(days=3)
    await _patients(h.db, now)
    async with h.db.transaction() as s:
        for kind in kinds:
            for pid in (A, B):
                await schedule(s, kind, f"test-{kind}:{pid}:2027-07-17", later, {"patient_id": pid})
        await schedule(s, "test-about-no-one", "test-about-no-one:7", later, {"date": "2027-07-07"})
        await schedule(s, "test-no-payload", "test-no-payload:7", later)

    async with h.db.session() as s:
        before = set((await s.execute(select(ScheduledItem.key))).scalars())
    async with h.db.transaction() as s:
        result = await privacy.erase(s, 5000 + A, now=now, removed=REMOVED)
    assert result is not None
    assert result.deleted["scheduled_items"] == len(kinds)
    async with h.db.session() as s:
        after = set((await s.execute(select(ScheduledItem.key))).scalars())
    assert before - after == {f"test-{kind}:{A}:2027-07-17" for kind in kinds}
    assert {f"test-{kind}:{B}:2027-07-17" for kind in kinds} <= after
    assert {"test-about-no-one:7", "test-no-payload:7"} <= after


async def test_schedule_keeps_the_patient_of_the_payload(db: Database, clock: Any):
    now = clock.now()
    async with db.transaction() as s:
        await schedule(s, "k", "k:1", now, {"patient_id": A})
        await schedule(s, "k", "k:2", now, {"patient_id": "7"})  # not an id: about no one
        await schedule(s, "k", "k:3", now)
        await schedule(s, "k", "k:1", now, {"patient_id": B}, replace=True)
    async with db.session() as s:
        rows = dict((await s.execute(select(ScheduledItem.key, ScheduledItem.patient_id))).all())
    assert rows == {"k:1": B, "k:2": None, "k:3": None}
    assert payload_patient({"patient_id": True}) is None


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's query plan")
async def test_no_statement_of_the_erasure_scans_scheduled_items(db: Database, clock: Any):
    now = clock.now()
    await _patients(db, now)
    async with db.transaction() as s:
        for i in range(200):
            await schedule(s, "k", f"k:{i}", now + timedelta(days=1), {"patient_id": A if i % 10 == 0 else B})
    async def erase() -> None:
        async with db.transaction() as s:
            assert (await privacy.erase(s, 5000 + A, now=now, removed=REMOVED)) is not None

    statements = await statements_of(db, erase, lambda st: "scheduled_items" in st)
    assert statements
    for statement, details in await plans(db, statements):
        assert "SCAN scheduled_items" not in details, (statement, details)


async def test_the_migration_fills_the_patient_of_stored_items(db_url: str):
    await migrate.upgrade_async(db_url, "0007_prune_indexes")
    db = Database(db_url)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    stmt = text(
        "INSERT INTO scheduled_items (kind, key, due_at, payload, status, attempts) "
        "VALUES ('k', :key, :at, :payload, 'pending', 0)"
    ).bindparams(bindparam("at", type_=DateTime(timezone=True)), bindparam("payload", type_=JSON(none_as_null=True)))
    try:
        async with db.engine.begin() as conn:
            for i, payload in enumerate([{"patient_id": 7, "date": "2026-03-02"}, {"date": "2026-03-02"}, None]):
                await conn.execute(stmt, {"key": f"k:{i}", "at": at, "payload": payload})
        await migrate.upgrade_async(db_url)
        async with db.engine.connect() as conn:
            rows = dict((await conn.execute(text("SELECT key, patient_id FROM scheduled_items"))).all())
        assert rows == {"k:0": 7, "k:1": None, "k:2": None}
    finally:
        await db.dispose()
