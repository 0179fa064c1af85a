"""Pruning finished rows (DESIGN §3): handled updates, sent messages, finished scheduled items.

A sweeper kind, `retention`, runs once a day. Each run deletes at most `BATCH` rows of each kind,
chosen through an index on (status, finished-at), so every statement stays short and the write
lock is held briefly; when a kind had a full batch (a backlog), the next run is scheduled at once
and the sweeper's next tick takes the next batch, the event loop serving everyone in between.

Kept, whatever their age: rows still waiting or being worked on (`pending`, `running`,
`sending`), and rows set aside for a person to look at (`failed`, `dead`, `blocked`).
How long finished rows stay is configuration (INBOX_/OUTBOX_/SCHEDULE_RETENTION_DAYS).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.platform.clock import Clock
from bot.platform.config import Settings
from bot.platform.db import Database
from bot.platform.models import InboxUpdate, OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper, schedule

log = logging.getLogger(__name__)

KIND = "retention"
BATCH = 1000


@dataclass(frozen=True)
class Retention:
    inbox: timedelta
    outbox: timedelta
    schedule: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            inbox=timedelta(days=settings.inbox_retention_days),
            outbox=timedelta(days=settings.outbox_retention_days),
            schedule=timedelta(days=settings.schedule_retention_days),
        )


def _targets(r: Retention, now: datetime) -> list[tuple[str, Any, Any, ColumnElement[bool]]]:
    """(name, model, key column, what may go): each predicate is served by an index whose
    leading column is `status` (ix_scheduled_done, ix_scheduled_due, ix_outbox_sent, ix_inbox_done)."""
    sched_cut = now - r.schedule
    return [
        ("scheduled_done", ScheduledItem, ScheduledItem.id,
         (ScheduledItem.status == "done") & (ScheduledItem.done_at < sched_cut)),
        ("scheduled_cancelled", ScheduledItem, ScheduledItem.id,
         (ScheduledItem.status == "cancelled") & (ScheduledItem.due_at < sched_cut)),
        ("outbox", OutboxMessage, OutboxMessage.id,
         (OutboxMessage.status == "sent") & (OutboxMessage.sent_at < now - r.outbox)),
        ("inbox", InboxUpdate, InboxUpdate.update_id,
         (InboxUpdate.status == "done") & (InboxUpdate.done_at < now - r.inbox)),
    ]


async def prune_batch(session: AsyncSession, r: Retention, now: datetime, batch: int = BATCH) -> dict[str, int]:
    """Delete at most `batch` expired rows of each kind. Returns how many went, by kind."""
    out: dict[str, int] = {}
    for name, model, key, expired in _targets(r, now):
        chosen = select(key).where(expired).limit(batch)
        res = await session.execute(
            delete(model).where(key.in_(chosen)).execution_options(synchronize_session=False)
        )
        out[name] = int(res.rowcount or 0)
    return out


def daily_key(at: datetime) -> str:
    return f"{KIND}:{at.date().isoformat()}"


async def ensure_scheduled(session: AsyncSession, now: datetime) -> None:
    """At start: today's prune (a no-op when it already ran; that run scheduled tomorrow's)."""
    await schedule(session, KIND, daily_key(now), now)


def handler(r: Retention, batch: int = BATCH) -> Any:
    async def run(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        counts = await prune_batch(session, r, now, batch)
        gone = {k: n for k, n in counts.items() if n}
        if gone:
            log.info("retention: pruned %s", ", ".join(f"{k}={n}" for k, n in sorted(gone.items())))
        if any(n >= batch for n in counts.values()):
            # A backlog: the next batch at the sweeper's next tick, in a transaction of its own.
            await schedule(session, KIND, f"{KIND}:after:{item.id}", now)
        else:
            nxt = now + timedelta(days=1)
            await schedule(session, KIND, daily_key(nxt), nxt)

    return run


def install(sweeper: Sweeper, settings: Settings) -> None:
    """Register the kind with the sweeper (the composition root also runs `ensure_at_start`)."""
    sweeper.register(KIND, handler(Retention.from_settings(settings)))


async def ensure_at_start(db: Database, clock: Clock) -> None:
    """Make sure a prune is scheduled."""
    async with db.transaction() as s:
        await ensure_scheduled(s, clock.now())
