"""The schedule: due items in the database, one sweeper that claims them (DESIGN §3 Time).

Each item has a kind, an idempotency key per occurrence (`checkin:<patient>:<local date>`), a due
instant in UTC and a payload. `schedule()` is idempotent on the key. The sweeper claims due rows
(`FOR UPDATE SKIP LOCKED` on PostgreSQL), and runs each in its own transaction together with
marking it done, so a crash either leaves the item to run again or finished — never both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.platform.clock import Clock
from bot.platform.db import Database, conflict_insert
from bot.platform.models import ScheduledItem

log = logging.getLogger(__name__)

# A kind's service: runs inside the transaction that also marks the item done.
KindHandler = Callable[[AsyncSession, ScheduledItem, datetime], Awaitable[None]]

MAX_ATTEMPTS = 5
STALE_CLAIM = timedelta(minutes=10)


def payload_patient(payload: Any) -> int | None:
    """The patient an item's payload is about, if any."""
    pid = payload.get("patient_id") if isinstance(payload, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


async def schedule(
    session: AsyncSession,
    kind: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
    *,
    replace: bool = False,
) -> bool:
    """Schedule an occurrence. Returns False if the key exists (unless `replace` and still pending).

    An item about a patient carries `patient_id` in its payload; it is also kept in its own
    indexed column, by which erasure finds the patient's items."""
    patient_id = payload_patient(payload)
    ins = conflict_insert(session, ScheduledItem).values(
        kind=kind, key=key, due_at=due_at, payload=payload, status="pending", attempts=0, patient_id=patient_id
    )
    if replace:
        ins = ins.on_conflict_do_update(
            index_elements=["key"],
            set_={"due_at": due_at, "payload": payload, "patient_id": patient_id},
            where=ScheduledItem.status == "pending",
        )
    else:
        ins = ins.on_conflict_do_nothing(index_elements=["key"])
    res = await session.execute(ins)
    return bool(res.rowcount)


async def cancel(session: AsyncSession, *, key: str | None = None, key_prefix: str | None = None) -> int:
    """Cancel pending items by exact key or key prefix."""
    q = update(ScheduledItem).where(ScheduledItem.status == "pending")
    if key is not None:
        q = q.where(ScheduledItem.key == key)
    elif key_prefix is not None:
        q = q.where(ScheduledItem.key.startswith(key_prefix, autoescape=True))
    else:
        raise ValueError("give key or key_prefix")
    res = await session.execute(q.values(status="cancelled"))
    return res.rowcount or 0


class Sweeper:
    """Claims due items and dispatches them to the service registered for their kind."""

    def __init__(self, db: Database, clock: Clock, *, batch: int = 500) -> None:
        self.db = db
        self.clock = clock
        self.batch = batch
        self.kinds: dict[str, KindHandler] = {}
        self.after_tick: list[Callable[[], None]] = []

    def register(self, kind: str, handler: KindHandler) -> None:
        if kind in self.kinds:
            raise ValueError(f"kind {kind!r} registered twice")
        self.kinds[kind] = handler

    async def recover(self) -> None:
        """Items a dead process had claimed go back to pending (their work was rolled back)."""
        async with self.db.transaction() as s:
            await s.execute(
                update(ScheduledItem)
                .where(ScheduledItem.status == "running")
                .values(status="pending", claimed_at=None)
            )

    async def claim(self, now: datetime) -> list[int]:
        async with self.db.transaction() as s:
            stale = now - STALE_CLAIM
            q = (
                select(ScheduledItem.id)
                .where(
                    ScheduledItem.due_at <= now,
                    (ScheduledItem.status == "pending")
                    | ((ScheduledItem.status == "running") & (ScheduledItem.claimed_at < stale)),
                )
                .order_by(ScheduledItem.due_at)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )
            ids = list((await s.execute(q)).scalars())
            if ids:
                await s.execute(
                    update(ScheduledItem)
                    .where(ScheduledItem.id.in_(ids))
                    .values(status="running", claimed_at=now)
                )
            return ids

    async def tick(self) -> int:
        """Run everything due now (catching up after a late tick). Returns items handled."""
        total = 0
        while True:
            now = self.clock.now()
            ids = await self.claim(now)
            if not ids:
                break
            for item_id in ids:
                await self._run_one(item_id, now)
            total += len(ids)
            if len(ids) < self.batch:
                break
        if total:
            for cb in self.after_tick:
                cb()
        return total

    async def _run_one(self, item_id: int, now: datetime) -> None:
        try:
            async with self.db.transaction() as s:
                item = await s.get(ScheduledItem, item_id)
                if item is None or item.status != "running":
                    return
                handler = self.kinds.get(item.kind)
                if handler is None:
                    item.status = "failed"
                    item.last_error = "no service registered for this kind"
                    log.error("sweeper: no service for kind %r (item %s)", item.kind, item.id)
                    return
                await handler(s, item, now)
                item.status = "done"
                item.done_at = now
        except Exception as exc:
            log.exception("sweeper: item %s failed", item_id)
            async with self.db.transaction() as s:
                item = await s.get(ScheduledItem, item_id)
                if item is not None:
                    item.attempts += 1
                    item.last_error = type(exc).__name__
                    if item.attempts >= MAX_ATTEMPTS:
                        item.status = "failed"
                    else:
                        item.status = "pending"
                        item.due_at = now + timedelta(seconds=30 * 2 ** item.attempts)
