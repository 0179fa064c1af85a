"""The durable inbox (DESIGN §3 Durability).

Updates are stored (idempotent on `update_id`) before anything handles them and marked done after;
on start, unfinished ones are handled again. The raw update is cleared once handled, since it holds
what people typed; the row stays so a redelivered update is recognised and skipped.

Handling an update again after a crash must not do twice what reached someone the first time (a
crisis reply sent straight to Telegram, a flag posted to the counselors). A handler records such a
step in the transaction that goes with it (`note_step`), kept in the update's row until it is
marked done; an update handled again at start tells its handlers which steps are done already
(`steps`, from memory: no database wait before a reply).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Text, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.platform import crypto
from bot.platform.clock import Clock
from bot.platform.db import Database, conflict_insert
from bot.platform.models import InboxUpdate

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# How long receiving waits to store a batch before handing it on anyway (seconds): another
# process holding SQLite's write lock (a backup, a migration) must not hold up the replies.
STORE_WAIT_SECONDS = 1.0
# A batch with a crisis in it waits only this long (a store on a free database takes a few
# milliseconds): the crisis reply never waits on a busy database.
URGENT_WAIT_SECONDS = 0.05
# Where an update's stored row keeps the steps already done (`note_step`), beside Telegram's JSON.
STEPS_KEY = "_iop_steps"
# Storing and marking are table statements (no ORM objects involved): they run for every update.
_TABLE = InboxUpdate.__table__
T = TypeVar("T")


def _as_is(data: dict[str, Any]) -> Any:
    return data


def _never(data: dict[str, Any]) -> bool:
    return False


def _decode(raw: str | None, update_id: int) -> dict[str, Any]:
    """A stored update back as Telegram's JSON; raises when it is not one."""
    if raw is None:
        raise ValueError("no payload")
    data = json.loads(crypto.decrypt(raw))
    if not isinstance(data, dict) or data.get("update_id") != update_id:
        raise ValueError("not an update")
    return data


def _steps_of(data: dict[str, Any]) -> frozenset[str]:
    """The steps recorded in a stored update (taken out of it: it goes on as Telegram sent it)."""
    steps = data.pop(STEPS_KEY, None)
    if not isinstance(steps, list):
        return frozenset()
    return frozenset(s for s in steps if isinstance(s, str))


class Inbox:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._batch: list[tuple[int, bool, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.store_wait = STORE_WAIT_SECONDS
        self.urgent_wait = URGENT_WAIT_SECONDS
        # Whether an update must not wait for its store (a crisis text; set by bot/safety/service.py).
        self.urgent: Callable[[dict[str, Any]], bool] = _never
        # Updates handed on before they were stored: update id -> the store still under way.
        self._storing: dict[int, asyncio.Task[list[dict[str, Any]]]] = {}
        # Updates handled again at start: update id -> the steps an earlier run did (`note_step`).
        self._steps: dict[int, frozenset[str]] = {}

    async def receive(self, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store a batch, waiting at most `store_wait`; returns the updates to handle now.

        When the database is busy for longer (another process holds SQLite's write lock), the
        whole batch is handed on at once and stored as soon as the database frees; marking any
        of them done waits for that store, so a handled update is never left pending. A batch
        with an urgent update (a crisis) waits only `urgent_wait`, and while an earlier batch
        still waits for its store (the database is known busy) a batch waits not at all. A
        store that fails at once raises, as `store` does.
        """
        if not updates:
            return []
        task = asyncio.create_task(self.store(updates))
        if not self._storing:
            first = min(self.urgent_wait, self.store_wait)
            await asyncio.wait({task}, timeout=first)
            if not task.done() and not self._any_urgent(updates):
                await asyncio.wait({task}, timeout=self.store_wait - first)
            if task.done():
                return task.result()
        ids = [u["update_id"] for u in updates]
        for uid in ids:
            self._storing[uid] = task
        log.warning("inbox: the database is busy; handling %d update(s) now, storing them when it frees", len(ids))

        def stored(t: asyncio.Task[list[dict[str, Any]]]) -> None:
            for uid in ids:
                if self._storing.get(uid) is t:
                    del self._storing[uid]
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                log.warning("inbox: %d update(s) handled while the database was busy could not be stored (%s)",
                            len(ids), type(exc).__name__)

        task.add_done_callback(stored)
        return list(updates)

    def _any_urgent(self, updates: list[dict[str, Any]]) -> bool:
        for u in updates:
            try:
                if self.urgent(u):
                    return True
            except Exception as exc:  # cannot tell: it is not held back
                log.warning("inbox: could not tell whether an update is urgent (%s)", type(exc).__name__)
                return True
        return False

    async def store(self, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store a batch; returns the updates that were new (to be handled now)."""
        if not updates:
            return []
        now = self.clock.now()
        ids = [u["update_id"] for u in updates]
        async with self.db.transaction() as s:
            known = set(
                (await s.execute(select(InboxUpdate.update_id).where(InboxUpdate.update_id.in_(ids)))).scalars()
            )
            fresh = []
            seen: set[int] = set()
            for u in updates:
                uid = u["update_id"]
                if uid in known or uid in seen:
                    continue
                seen.add(uid)
                fresh.append(u)
            if fresh:
                ins = conflict_insert(s, _TABLE)
                await s.execute(
                    ins.on_conflict_do_nothing(index_elements=["update_id"]),
                    [
                        {"update_id": u["update_id"], "payload": u, "status": "pending", "attempts": 1, "received_at": now}
                        for u in fresh
                    ],
                )
        return fresh

    def steps(self, update_id: int) -> frozenset[str]:
        """The steps of handling `update_id` an earlier run did before it stopped (empty for an
        update handled for the first time). From memory: never waits for the database."""
        return self._steps.get(update_id, frozenset())

    async def note_step(self, session: AsyncSession, update_id: int, step: str) -> None:
        """Record, in the caller's transaction, that `step` of handling `update_id` is done: if
        the process dies before the update is marked done, handling it again at start skips
        it (`steps`). Nothing is recorded for an update not stored (yet), or already done."""
        row = (
            await session.execute(
                select(type_coerce(_TABLE.c.payload, Text)).where(
                    _TABLE.c.update_id == update_id, _TABLE.c.status == "pending"
                )
            )
        ).first()
        if row is None:
            return
        try:
            data = _decode(row[0], update_id)
        except Exception as exc:  # a row that cannot be read is set aside at start anyway
            log.warning("inbox: could not record a step of update %s (%s)", update_id, type(exc).__name__)
            return
        done = set(data.get(STEPS_KEY) or ())
        if step in done:
            return
        data[STEPS_KEY] = sorted(done | {step})
        await session.execute(
            update(_TABLE).where(_TABLE.c.update_id == update_id, _TABLE.c.status == "pending").values(payload=data)
        )

    async def mark_done(self, update_id: int, *, failed: bool = False) -> None:
        """Mark an update handled; returns once that is committed.

        Updates finishing together share one transaction (group commit), so marking costs one
        write per batch rather than one per update, without weakening the guarantee.
        """
        storing = self._storing.get(update_id)
        if storing is not None:
            await asyncio.wait({storing})  # its row first (a failed store was logged there)
        self._steps.pop(update_id, None)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((update_id, failed, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the updates finishing in this turn join the batch
        while self._batch:
            batch, self._batch = self._batch, []
            now = self.clock.now()
            try:
                async with self.db.transaction() as s:
                    for failed in (False, True):
                        ids = [uid for uid, f, _ in batch if f is failed]
                        if ids:
                            await s.execute(
                                update(_TABLE)
                                .where(_TABLE.c.update_id.in_(ids))
                                .values(status="failed" if failed else "done", payload=None, done_at=now)
                            )
            except Exception as exc:
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def pending(self, parse: Callable[[dict[str, Any]], T] | None = None) -> list[T]:
        """Unfinished updates from an earlier run, oldest first, each made ready by `parse`.

        The steps an earlier run recorded for a row (`note_step`) are taken out of it and kept
        for `steps`. Every row counts one more attempt before it is handed back (so a row that kills the
        process still counts). Each row is read in its own guard: one that cannot be decrypted,
        decoded or parsed, or that has already been tried MAX_ATTEMPTS times, is set aside as
        failed with a log line (its id and why, never its content), so one poisonous update
        cannot stop the bot from starting.
        """
        parse = parse or _as_is
        async with self.db.transaction() as s:
            rows = (
                await s.execute(
                    select(_TABLE.c.update_id, type_coerce(_TABLE.c.payload, Text), _TABLE.c.attempts)
                    .where(_TABLE.c.status == "pending")
                    .order_by(_TABLE.c.update_id)
                )
            ).all()
            out: list[T] = []
            tried: list[int] = []
            aside: list[int] = []
            for update_id, raw, attempts in rows:
                if attempts >= MAX_ATTEMPTS:
                    log.error("inbox: update %s was tried %s times without finishing; setting it aside", update_id, attempts)
                    aside.append(update_id)
                    continue
                try:
                    data = _decode(raw, update_id)
                    steps = _steps_of(data)
                    out.append(parse(data))
                except Exception as exc:
                    log.error("inbox: stored update %s cannot be read (%s); setting it aside", update_id, type(exc).__name__)
                    aside.append(update_id)
                    continue
                tried.append(update_id)
                if steps:
                    self._steps[update_id] = steps
            if tried:
                await s.execute(
                    update(_TABLE).where(_TABLE.c.update_id.in_(tried)).values(attempts=_TABLE.c.attempts + 1)
                )
            if aside:
                await s.execute(
                    update(_TABLE)
                    .where(_TABLE.c.update_id.in_(aside))
                    .values(status="failed", payload=None, attempts=_TABLE.c.attempts + 1, done_at=self.clock.now())
                )
            return out
