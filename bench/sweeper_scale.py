"""Sweeper at scale: 100,000 patients with check-in times spread over the day.

Times how long one sweeper tick takes to claim the check-in prompts due in one minute and hand
them to the outbox (with their reminders and the next day's prompts), and reports peak memory.

    .venv/bin/python -m bench.sweeper_scale            # SQLite in a temporary directory
    BENCH_DATABASE_URL=postgresql+asyncpg://... .venv/bin/python -m bench.sweeper_scale
    BENCH_PATIENTS=20000 ...                            # a smaller run
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time as timer
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, insert, select, update

import bot.schema  # noqa: F401  (every table, for create_all)
from bot.checkins import service as checkins
from bot.core.lifecycle import Lifecycle
from bot.core.models import Patient
from bot.escalation.rules import build_workflow
from bot.platform.clock import FrozenClock, local_date, next_local_due
from bot.platform.config import load_settings
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Phoenix",
         "Europe/London", "Asia/Tokyo"]
CHUNK = 5000


def peak_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


async def populate(db: Database, n: int, start: datetime) -> None:
    for base in range(0, n, CHUNK):
        patients, items = [], []
        for i in range(base, min(n, base + CHUNK)):
            minute = (i * 1440 // n) % 1440 if n >= 1440 else (i * 7) % 1440
            t = time(minute // 60, minute % 60)
            zone = ZONES[i % len(ZONES)]
            patients.append(
                dict(id=i + 1, telegram_id=10_000_000 + i, code=f"B-{i:06d}", status="active", language="en",
                     timezone=zone, checkin_time=t, tips_enabled=False, mat=i % 3 == 0, share_milestones=False,
                     created_at=start)
            )
            due = next_local_due(t, zone, start)
            day = local_date(due, zone)
            items.append(
                dict(kind=checkins.PROMPT, key=checkins.prompt_key(i + 1, day), due_at=due,
                     payload={"patient_id": i + 1, "date": day.isoformat()}, status="pending", attempts=0)
            )
        async with db.transaction() as s:
            await s.execute(insert(Patient), patients)
            await s.execute(insert(ScheduledItem), items)


async def main() -> None:
    n = int(os.environ.get("BENCH_PATIENTS", "100000"))
    tmp = tempfile.TemporaryDirectory()
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    db = Database(url)
    await db.drop_all()
    await db.create_all()
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    t0 = timer.perf_counter()
    await populate(db, n, start)
    print(f"database: {'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}; "
          f"{n} patients and prompts created in {timer.perf_counter() - t0:.1f} s")

    # Everything due before 12:00 UTC ran on earlier ticks; time the minute that follows.
    window_start = start + timedelta(hours=12)
    async with db.transaction() as s:
        await s.execute(update(ScheduledItem).where(ScheduledItem.due_at <= window_start).values(status="done"))
    clock = FrozenClock(window_start + timedelta(minutes=1))
    sw = Sweeper(db, clock)
    content = get_content()
    wf = build_workflow(load_settings(_env_file=None), content)  # no counselors' group: flags are stored only
    checkins.setup(sw, content, Lifecycle(), lambda: wf)
    async with db.session() as s:
        due = (await s.execute(select(func.count()).select_from(ScheduledItem).where(
            ScheduledItem.status == "pending", ScheduledItem.due_at <= clock.now()))).scalar_one()
    t1 = timer.perf_counter()
    handled = await sw.tick()
    elapsed = timer.perf_counter() - t1
    async with db.session() as s:
        queued = (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
        pending = (await s.execute(select(func.count()).select_from(ScheduledItem).where(
            ScheduledItem.status == "pending"))).scalar_one()
    print(f"prompts due in the minute: {due}; handled: {handled}; outbox rows: {queued}; pending items now: {pending}")
    print(f"claim + hand to outbox: {elapsed:.3f} s ({elapsed / max(handled, 1) * 1000:.1f} ms per prompt)")
    print(f"peak memory (max RSS of the process): {peak_mb():.0f} MB")
    await db.drop_all()
    await db.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
