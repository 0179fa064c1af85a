"""Another process holding SQLite's write lock does not stop the bot receiving: the update is handed
on after a bounded wait, stored once the lock frees, and marked done, never left pending."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select

from bot.platform.models import InboxUpdate
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's write lock")



def _hold_write_lock(url: str) -> sqlite3.Connection:
    """What a backup or a second process does: take SQLite's write lock and keep it."""
    conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_held_write_lock_does_not_stop_receiving(h: Any):
    stranger = h.fake.add_user(first_name="Sam", started=True)
    h.hub.inbox.store_wait = 0.05
    holder = _hold_write_lock(h.db.url)
    try:
        inc = h.fake.send_text(stranger, "hello")
        # The poll loop takes the update and asks for the next ones while the lock is still held
        # (before, it waited for the lock: as long as the other process kept it).
        await h.fake.wait_idle(timeout=10)
        # Handed on, its store still waiting for the lock.
        assert inc.update_id in h.hub.inbox._storing
    finally:
        holder.rollback()
        holder.close()
    await h.handled(inc.update_id)
    await h.outbox_idle()
    async with h.db.session() as s:
        row = (await s.execute(select(InboxUpdate.status, InboxUpdate.payload).where(
            InboxUpdate.update_id == inc.update_id))).one()
    assert row == ("done", None)
    assert not h.hub.inbox._storing
    assert h.fake.last(stranger) is not None  # answered once the database was free


async def test_a_free_database_stores_before_handing_on(h: Any):
    stranger = h.fake.add_user(first_name="Sam", started=True)
    inc = h.fake.send_text(stranger, "hello")
    await h.handled(inc.update_id)
    assert not h.hub.inbox._storing
    async with h.db.session() as s:
        status = (await s.execute(select(InboxUpdate.status).where(InboxUpdate.update_id == inc.update_id))).scalar_one()
    assert status == "done"
