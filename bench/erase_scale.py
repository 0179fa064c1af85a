"""Erasure at scale: /delete's erase with 300,000 rows in scheduled_items, in the outbox and in
the audit log.

Fills scheduled_items with other patients' check-in prompts, reminders and tips (done and
pending), the outbox with sent posts about other patients' flags, cards and relayed words, and the
audit log with other patients' entries; gives the patient who erases 20 flags with their posts;
then times `privacy.erase` for that patient, as /delete runs it, and the longest the event loop
went without running a 5 ms heartbeat meanwhile.

    .venv/bin/python -m bench.erase_scale                # SQLite in a temporary directory
    BENCH_DATABASE_URL=postgresql+asyncpg://... .venv/bin/python -m bench.erase_scale
    BENCH_ITEMS=50000 BENCH_OUTBOX=50000 BENCH_AUDIT=50000 ...   # a smaller run
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time as timer
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

import bot.schema  # noqa: F401  (every table, for create_all)
from bot.checkins import service as checkins
from bot.core.models import AuditEntry, Patient
from bot.escalation.models import Flag
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.privacy import erasure
from bot.privacy import service as privacy
from bot.recovery import tips

CHUNK = 10_000
PER_PATIENT = 30
TARGET = 1  # the patient who asks for erasure
TARGET_FLAGS = 20
GROUP = -1001234567890


def _items(n: int, start: datetime) -> list[dict[str, object]]:
    has_patient_column = "patient_id" in ScheduledItem.__table__.c
    rows: list[dict[str, object]] = []
    for i in range(n):
        pid = i // PER_PATIENT + 1
        day = (start + timedelta(days=i % PER_PATIENT)).date()
        kind, key = [
            (checkins.PROMPT, checkins.prompt_key(pid, day)),
            (checkins.REMINDER, checkins.reminder_key(pid, day)),
            (tips.KIND, tips.tip_key(pid, day)),
        ][i % 3]
        done = day < (start + timedelta(days=PER_PATIENT - 3)).date()
        row: dict[str, object] = dict(
            kind=kind, key=key, due_at=start + timedelta(days=i % PER_PATIENT),
            payload={"patient_id": pid, "date": day.isoformat()}, status="done" if done else "pending",
            attempts=0, done_at=start if done else None,
        )
        if has_patient_column:
            row["patient_id"] = pid
        rows.append(row)
    return rows


def _outbox(n: int, start: datetime) -> list[dict[str, object]]:
    """Sent posts about other patients' flags, cards and relayed words (their ids are not the
    target's), and the target's own flag posts at the end."""
    has_about = "about" in OutboxMessage.__table__.c
    refs = [f"flag:{1000 + i // 4}:0:main" if i % 4 < 2 else
            (f"card:{1000 + i // 4}:0" if i % 4 == 2 else f"relay:{1000 + i // 4}") for i in range(n)]
    refs += [f"flag:{fid}:0:main" for fid in range(1, TARGET_FLAGS + 1)]
    rows: list[dict[str, object]] = []
    for i, ref in enumerate(refs):
        row: dict[str, object] = dict(
            chat_id=GROUP, method="sendMessage", payload={"text": "a post"}, ref=ref, bulk=False, status="sent",
            attempts=1, next_attempt_at=start, created_at=start, sent_at=start, telegram_message_id=i + 1, priority=0,
        )
        if has_about:
            row["about"] = ":".join(ref.split(":", 2)[:2])
        rows.append(row)
    return rows


async def main() -> None:
    n = int(os.environ.get("BENCH_ITEMS", "300000"))
    n_outbox = int(os.environ.get("BENCH_OUTBOX", "300000"))
    n_audit = int(os.environ.get("BENCH_AUDIT", "300000"))
    tmp = tempfile.TemporaryDirectory()
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    db = Database(url)
    await db.drop_all()
    await db.create_all()
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    t0 = timer.perf_counter()
    async with db.transaction() as s:
        await s.execute(insert(Patient), [dict(id=TARGET, telegram_id=10_000_001, code="B-000001", status="active",
                                               language="en", timezone="America/New_York", created_at=start)])
    rows = _items(n, start)
    for base in range(0, n, CHUNK):
        async with db.transaction() as s:
            await s.execute(insert(ScheduledItem), rows[base:base + CHUNK])
    async with db.transaction() as s:
        await s.execute(insert(Flag), [dict(id=fid, patient_id=TARGET, category="severe_craving", severity="high",
                                            status="open", source="bench", opened_at=start)
                                       for fid in range(1, TARGET_FLAGS + 1)])
    rows = _outbox(n_outbox, start)
    for base in range(0, len(rows), CHUNK):
        async with db.transaction() as s:
            await s.execute(insert(OutboxMessage), rows[base:base + CHUNK])
    rows = [dict(at=start, actor_id=None, action="checkin.done", subject=f"B-{2 + i % 5000:06d}", detail=None)
            for i in range(n_audit)]
    for base in range(0, len(rows), CHUNK):
        async with db.transaction() as s:
            await s.execute(insert(AuditEntry), rows[base:base + CHUNK])
    del rows
    print(f"database: {'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}; "
          f"{n} scheduled items, {n_outbox} outbox rows, {n_audit} audit entries "
          f"created in {timer.perf_counter() - t0:.1f} s")

    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = timer.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = timer.perf_counter()
            gaps.append(now - last)
            last = now

    removed = erasure.removed_text(get_content(), "en")  # content loaded, as in the running bot (not part of the erase)
    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    t0 = timer.perf_counter()
    async with db.transaction() as s:
        result = await privacy.erase(s, 10_000_001, now=start + timedelta(days=PER_PATIENT), removed=removed)
    took = timer.perf_counter() - t0
    stop.set()
    await beat
    assert result is not None
    async with db.session() as s:
        left = (await s.execute(select(func.count()).select_from(ScheduledItem))).scalar_one()
    print(f"erase: {took * 1000:.1f} ms; scheduled items erased {result.deleted.get('scheduled_items', 0)}, "
          f"{left} left; outbox rows about the patient dropped {result.deleted.get('outbox_staff', 0)}, "
          f"their posts taken back {result.deleted.get('staff_messages', 0)}; "
          f"longest event-loop stall {max(gaps) * 1000:.1f} ms")
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
