"""Erasure finds the outbox rows about a patient by their indexed `about` (a ref's first two parts)
instead of reading the whole outbox with `ref LIKE ...`, and no statement of the erasure scans a
table: each one on the event loop stays bounded however large the outbox, the audit log or the
scheduled items grow."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import DateTime, bindparam, insert, select, text, update

from bot.core.audit import audit
from bot.core.models import Patient
from bot.escalation.models import Flag, FlagCard, RelayConversation
from bot.platform import migrate
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.platform.outbox import Outgoing, enqueue, ref_about
from bot.privacy import erasure
from bot.privacy import service as privacy
from tests.conftest import CONTENT_DIR, TEST_DATABASE_URL
from tests.plan_support import plans, statements_of

REMOVED = erasure.removed_text(get_content(CONTENT_DIR), "en")

A, B = 1, 12  # patient ids
GROUP = -100123


async def _world(db: Database, now: datetime) -> dict[str, Any]:
    """Two patients, each with flags, a card and a relay conversation, and outbox rows about
    every one of them (some sent, with the message Telegram gave back)."""
    async with db.transaction() as s:
        await s.execute(insert(Patient), [
            dict(id=pid, telegram_id=5000 + pid, code=f"T-{pid:04d}", status="active", language="en",
                 timezone="America/New_York", created_at=now) for pid in (A, B)
        ])
        out: dict[str, Any] = {}
        message_id = 100
        for pid in (A, B):
            flags = []
            for _ in range(12):
                f = Flag(patient_id=pid, category="severe_craving", severity="high", status="open", source="test",
                         opened_at=now)
                s.add(f)
                flags.append(f)
            card = FlagCard(patient_id=pid, day=date(2026, 3, 2), chat_id=GROUP, created_at=now)
            s.add(card)
            await s.flush()
            conv = RelayConversation(patient_id=pid, counselor_id=777, flag_id=flags[0].id, started_at=now)
            s.add(conv)
            await s.flush()
            refs = [f"flag:{f.id}:0:main" for f in flags] + [f"flagedit:{flags[1].id}:1:main",
                                                            f"card:{card.id}:0", f"cardedit:{card.id}:1", f"relay:{conv.id}"]
            sent: list[int] = []
            for ref in refs:
                row = await enqueue(s, Outgoing(GROUP, f"about {ref}"), now=now, ref=ref)
                message_id += 1
                await s.execute(update(OutboxMessage).where(OutboxMessage.id == row).values(
                    status="sent", sent_at=now, telegram_message_id=message_id))
                sent.append(message_id)
            await enqueue(s, Outgoing(GROUP, "waiting"), now=now, ref=f"flag:{flags[2].id}:0:t")
            await audit(s, None, "test", f"T-{pid:04d}", {}, now=now)
            out[f"sent{pid}"] = sent
            out[f"refs{pid}"] = refs + [f"flag:{flags[2].id}:0:t"]
        return out


async def test_erasure_drops_the_patients_outbox_rows_and_takes_back_their_messages(db: Database, clock: Any):
    now = clock.now()
    world = await _world(db, now)
    async with db.transaction() as s:
        result = await privacy.erase(s, 5000 + A, now=now, removed=REMOVED)
    assert result is not None
    assert result.deleted["outbox_staff"] == len(world[f"refs{A}"])
    async with db.session() as s:
        left = set((await s.execute(select(OutboxMessage.ref).where(OutboxMessage.ref != erasure.REMOVAL_REF))).scalars())
        removals = list((await s.execute(select(OutboxMessage.payload).where(OutboxMessage.ref == erasure.REMOVAL_REF))).scalars())
    assert left == set(world[f"refs{B}"])  # the other patient's rows stay, every one
    assert sorted(p["message_id"] for p in removals) == world[f"sent{A}"]  # each sent message taken back, once


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's query plan")
async def test_no_statement_of_the_erasure_scans_a_table(db: Database, clock: Any):
    now = clock.now()
    await _world(db, now)
    async def erase() -> None:
        async with db.transaction() as s:
            assert (await privacy.erase(s, 5000 + A, now=now, removed=REMOVED)) is not None

    statements = await statements_of(db, erase, lambda st: st.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")))
    assert any("outbox" in st for st, _ in statements)
    for statement, details in await plans(db, statements):
        assert "SCAN " not in details, (statement, details)
        if "FROM outbox" in statement:
            # By the patient's own rows, never by a status every sent row shares.
            assert "ix_outbox_about" in details or "ix_outbox_chat_id" in details, (statement, details)


def test_what_a_ref_is_about():
    assert ref_about("flag:12:3:main") == "flag:12"
    assert ref_about("relay:7") == "relay:7"
    assert ref_about("erased") == "erased"
    assert ref_about(None) is None and ref_about("") is None


async def test_the_migration_fills_what_stored_rows_are_about(db_url: str):
    await migrate.upgrade_async(db_url, "0008_scheduled_patient")
    db = Database(db_url)
    at = datetime(2026, 3, 2, tzinfo=UTC)
    stmt = text(
        "INSERT INTO outbox (chat_id, method, payload, ref, bulk, status, attempts, next_attempt_at, created_at, priority) "
        "VALUES (1, 'sendMessage', '{}', :ref, false, 'pending', 0, :at, :at, 0)"
    ).bindparams(bindparam("at", type_=DateTime(timezone=True)))
    try:
        async with db.engine.begin() as conn:
            for ref in ("flag:12:3:main", "relay:7", None):
                await conn.execute(stmt, {"ref": ref, "at": at})
        await migrate.upgrade_async(db_url)
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT ref, about FROM outbox ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [("flag:12:3:main", "flag:12"), ("relay:7", "relay:7"), (None, None)]
    finally:
        await db.dispose()
