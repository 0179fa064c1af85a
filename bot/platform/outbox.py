"""The outbox: Bot API calls that must happen (flags, relays, prompts, broadcasts).

`enqueue` writes a row in the caller's transaction, so the message exists exactly when the
change that caused it does. The `Sender` delivers rows: network errors and 5xx are retried with
backoff, 429 honours `retry_after` for that chat only (a limit on the counselors' group never holds
back a patient's reply), 403 marks the chat blocked (nothing more is sent there), a 400 is
dead-lettered with a log line. Bulk rows share a token bucket at `SEND_RATE` per second.

Replies the handlers send straight to Telegram that Telegram did not take (a 429, or a connection
that never reached it) are handed to the outbox (`hand_over`), so each is delivered once, later;
until they are, the chat's next direct replies queue behind them, in order.

Urgent rows (crisis replies) are claimed before ordinary ones; rows of one chat otherwise keep
their order. A claimed row is leased to its sender for `LEASE`: several processes can share one
database, and only a lease that expired (its process died) is taken over by another sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from telegram import Bot, InputFile
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBUserWarning

from bot.platform.clock import Clock
from bot.platform.db import Database, conflict_insert
from bot.platform.models import BlockedChat, OutboxMessage

log = logging.getLogger(__name__)

# The outbox calls Bot API methods by name on purpose; PTB would suggest its typed wrappers.
warnings.filterwarnings("ignore", message="Please use 'Bot.", category=PTBUserWarning)

MAX_ATTEMPTS = 12
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0  # an outage is retried every 30 s at most, so flags go out soon after
# A claimed row stays the claiming sender's until then, and the sender renews the leases of the
# rows it holds every `LEASE_RENEW_SECONDS` (a send may take up to about 50 s, its timeouts): a
# live sender never loses a lease it still needs, and the rows of a process that died are taken
# over within `LEASE` (a restart's sender waits that long at most for them, never minutes).
LEASE = timedelta(seconds=20)
LEASE_RENEW_SECONDS = 5.0
PRIORITY_NORMAL = 0
PRIORITY_URGENT = 10
# A `deleteMessage` row whose payload carries this key takes a message back: deleted, or, where
# Telegram no longer allows deleting it (older than 48 hours), edited to this text.
REMOVED_TEXT = "removed_text"
# An `editMessageText` row whose payload carries this key replaces the message if Telegram still
# can, else sends its text (and buttons) as a new message: what it says must arrive either way.
OR_SEND = "or_send"


@dataclass(frozen=True)
class Outgoing:
    """What to send, as plain values: a Bot API method and its parameters."""

    chat_id: int
    text: str | None = None
    method: str = "sendMessage"
    params: dict[str, Any] | None = None
    reply_markup: dict[str, Any] | None = None
    file_name: str | None = None
    file_data: bytes | None = None


def ref_about(ref: str | None) -> str | None:
    """What an outbox row with this `ref` is about: its first two parts (`flag:12:3:main` ->
    `flag:12`); None without a ref."""
    if not ref:
        return None
    return ":".join(ref.split(":", 2)[:2])


async def enqueue(
    session: AsyncSession,
    out: Outgoing,
    *,
    now: datetime,
    dedup_key: str | None = None,
    ref: str | None = None,
    bulk: bool = False,
    not_before: datetime | None = None,
    urgent: bool = False,
) -> int | None:
    """Add a message to the outbox in the caller's transaction.

    With a `dedup_key`, a second enqueue of the same key is a no-op (returns None). `urgent`
    rows (a crisis reply) are sent before every ordinary row that is due.
    """
    payload: dict[str, Any] = dict(out.params or {})
    if out.text is not None:
        payload.setdefault("text" if out.method == "sendMessage" or out.method == "editMessageText" else "caption", out.text)
        payload.setdefault("parse_mode", "HTML")
    if out.reply_markup is not None:
        payload["reply_markup"] = out.reply_markup
    values = dict(
        chat_id=out.chat_id,
        method=out.method,
        payload=payload,
        file_name=out.file_name,
        file_data=out.file_data,
        dedup_key=dedup_key,
        ref=ref,
        about=ref_about(ref),
        bulk=bulk,
        status="pending",
        attempts=0,
        next_attempt_at=not_before or now,
        created_at=now,
        priority=PRIORITY_URGENT if urgent else PRIORITY_NORMAL,
    )
    if dedup_key is None:
        row = OutboxMessage(**values)
        session.add(row)
        await session.flush()
        return row.id
    ins = conflict_insert(session, OutboxMessage).values(**values)
    ins = ins.on_conflict_do_nothing(index_elements=["dedup_key"]).returning(OutboxMessage.id)
    res = await session.execute(ins)
    return res.scalar_one_or_none()


SentHook = Callable[[OutboxMessage, int | None], Awaitable[None]]
BlockedHook = Callable[[int], Awaitable[None]]


class NotSent(Exception):
    """Telegram did not take a message sent straight through the Bot API (`Sender.send_now`).
    `retry_after`: the seconds that chat must wait first (a 429); None for any other refusal or a
    network error."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Sender:
    """Delivers outbox rows. One per process; `wake()` after committing new rows."""

    def __init__(
        self,
        db: Database,
        bot: Bot,
        clock: Clock,
        *,
        send_rate: float = 25.0,
        batch: int = 50,
        concurrency: int = 8,
        backoff_base: float = BACKOFF_BASE,
    ) -> None:
        self.db = db
        self.bot = bot
        self.clock = clock
        self.batch = batch
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        # Capacity 1: evenly spaced sends, never a burst above the rate.
        self.limiter = AsyncLimiter(1, 1.0 / send_rate)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sent_hooks: list[SentHook] = []
        self.blocked_hooks: list[BlockedHook] = []
        # Direct replies handed over and not yet delivered, by chat (`hand_over`), and until when
        # Telegram asked that chat to wait.
        self._handed: dict[int, set[int]] = {}
        # Rows this sender claimed and has not finished with: their leases are renewed.
        self._held: set[int] = set()
        self._renewing: asyncio.Task[None] | None = None
        self._handed_until: dict[int, datetime] = {}

    async def send_now(self, chat_id: int, text: str) -> int:
        """Send HTML `text` straight through the Bot API, not the outbox (for what must go out
        while the database cannot store it): its message id. Raises `NotSent`."""
        try:
            msg = await self.bot.send_message(chat_id, text, parse_mode="HTML")
        except RetryAfter as exc:
            raise NotSent(type(exc).__name__, _seconds(exc.retry_after)) from exc
        except TelegramError as exc:
            raise NotSent(type(exc).__name__) from exc
        return int(msg.message_id)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.recover()
        self._stopping = False
        _by_bot[id(self.bot)] = self
        self._task = asyncio.create_task(self._run(), name="outbox-sender")
        self._renewing = asyncio.create_task(self._renew_loop(), name="outbox-leases")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if _by_bot.get(id(self.bot)) is self:
            del _by_bot[id(self.bot)]
        if self._task is not None:
            await self._task
            self._task = None
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None

    async def renew_leases(self) -> int:
        """Extend the lease of every row this sender holds (claimed, not yet finished); how many."""
        held = list(self._held)
        if not held:
            return 0
        async with self.db.transaction() as s:
            result = await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(held), OutboxMessage.status == "sending")
                .values(lease_until=self.clock.now() + LEASE)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def _renew_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            try:
                await self.renew_leases()
            except Exception as exc:  # a busy database: the next round tries again
                log.warning("outbox: could not renew leases (%s)", type(exc).__name__)

    # -- direct replies Telegram did not take ------------------------------------------------
    def waiting_in(self, chat_id: int) -> bool:
        """Replies to this chat were handed over and wait: a new one must queue behind them."""
        return bool(self._handed.get(chat_id))

    async def take_over(self, outs: list[Outgoing], *, delay: float = 0.0) -> None:
        """Deliver these (one chat's replies, in order) through the outbox, not before `delay` s
        (nor before the chat's replies handed over earlier may go)."""
        now = self.clock.now()
        chat = outs[0].chat_id
        until = max(now + timedelta(seconds=delay), self._handed_until.get(chat, now))
        self._handed_until[chat] = until
        ids: list[int] = []
        async with self.db.transaction() as s:
            for out in outs:
                row_id = await enqueue(s, out, now=now, not_before=until)
                if row_id is not None:
                    ids.append(row_id)
        for out, row_id in zip(outs, ids, strict=True):
            self._handed.setdefault(out.chat_id, set()).add(row_id)
        self.wake()

    def expect(self, chat_id: int, ids: Iterable[int]) -> None:
        """Rows of replies to this chat committed in a handler's transaction (so they are sent,
        once, even if the process dies right after): the chat's next direct replies queue behind
        them until they are delivered, to keep their order."""
        ids = set(ids)
        if ids:
            self._handed.setdefault(chat_id, set()).update(ids)
        self.wake()

    def _delivered(self, row: OutboxMessage) -> None:
        waiting = self._handed.get(row.chat_id)
        if waiting is not None:
            waiting.discard(row.id)
            if not waiting:
                del self._handed[row.chat_id]
                self._handed_until.pop(row.chat_id, None)

    def wake(self) -> None:
        self._wake.set()

    async def recover(self) -> None:
        """Rows a dead process left mid-send go back to pending: only those whose lease expired,
        never the rows another running process is sending right now."""
        now = self.clock.now()
        async with self.db.transaction() as s:
            await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "sending", _lease_expired(now))
                .values(status="pending", lease_until=None)
            )

    async def _run(self) -> None:
        while not self._stopping:
            try:
                n, next_due = await self.run_once()
            except Exception:
                log.exception("outbox: sender loop error")
                n, next_due = 0, None
            if n:
                continue
            timeout = 5.0
            if next_due is not None:
                timeout = max(0.01, min(timeout, (next_due - self.clock.now()).total_seconds()))
            self._wake.clear()
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    # -- one pass --------------------------------------------------------------------------
    async def run_once(self) -> tuple[int, datetime | None]:
        """Claim and send one batch of due rows. Returns (rows handled, next due time)."""
        now = self.clock.now()
        rows = await self._claim(now)
        if not rows:
            return 0, await self._next_due()
        sem = asyncio.Semaphore(self.concurrency)

        async def one(row: OutboxMessage) -> bool:
            async with sem:
                return await self._deliver(row)

        # Keep per-chat order: rows of one chat go one after another.
        by_chat: dict[int, list[OutboxMessage]] = {}
        for r in rows:
            by_chat.setdefault(r.chat_id, []).append(r)

        async def chat_seq(items: list[OutboxMessage]) -> None:
            for i, r in enumerate(items):
                if not await one(r):
                    # Keep the chat's order: what follows waits for the row that must be retried.
                    await self._release([x.id for x in items[i + 1 :]])
                    return

        await asyncio.gather(*(chat_seq(v) for v in by_chat.values()))
        return len(rows), None

    async def _next_due(self) -> datetime | None:
        async with self.db.session() as s:
            return (
                await s.execute(
                    select(OutboxMessage.next_attempt_at)
                    .where(OutboxMessage.status == "pending")
                    .order_by(OutboxMessage.next_attempt_at)
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def _claim(self, now: datetime) -> list[OutboxMessage]:
        async with self.db.transaction() as s:
            older = aliased(OutboxMessage)
            # A row waits for an older row of its chat that is in flight (a live lease) or still
            # pending (due, or waiting for its retry after a 429 or a backoff): one row per chat
            # per claim, so two processes never send one chat's rows at once, out of order.
            # Urgent rows wait only for urgent ones.
            waiting = (
                select(older.id)
                .where(
                    older.chat_id == OutboxMessage.chat_id,
                    older.id < OutboxMessage.id,
                    older.priority >= OutboxMessage.priority,
                    ((older.status == "sending") & ~_lease_expired(now, older)) | (older.status == "pending"),
                )
                .exists()
            )
            claimable = ((OutboxMessage.status == "pending") & (OutboxMessage.next_attempt_at <= now)) | (
                (OutboxMessage.status == "sending") & _lease_expired(now)
            )
            q = (
                select(OutboxMessage)
                .where(claimable, ~waiting)
                .order_by(OutboxMessage.priority.desc(), OutboxMessage.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )
            rows = list((await s.execute(q)).scalars())
            if not rows:
                return []
            blocked = set(
                (
                    await s.execute(
                        select(BlockedChat.chat_id).where(
                            BlockedChat.chat_id.in_({r.chat_id for r in rows})
                        )
                    )
                ).scalars()
            )
            live = []
            for r in rows:
                if r.chat_id in blocked:
                    r.status = "blocked"
                    r.last_error = "recipient has blocked the bot"
                else:
                    r.status = "sending"
                    r.lease_until = now + LEASE
                    live.append(r)
        self._held.update(r.id for r in live)
        return live

    async def _release(self, ids: list[int]) -> None:
        self._held.difference_update(ids)
        if not ids:
            return
        async with self.db.transaction() as s:
            await s.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(status="pending", lease_until=None)
            )

    async def _deliver(self, row: OutboxMessage) -> bool:
        """Send one row; False when it is to be retried later (the chat's next rows wait)."""
        if row.bulk:
            await self.limiter.acquire()
        try:
            result = await self._call(row)
        except RetryAfter as exc:
            # Telegram's limits are per chat (a group takes about 20 posts a minute): this chat
            # waits, its later rows with it; every other chat goes on.
            delay = _seconds(exc.retry_after)
            log.warning("outbox: 429 for chat %s; row %s and that chat wait %.1fs", _mask(row.chat_id), row.id, delay)
            await self._finish(row, "pending", error="429", delay=delay, count_attempt=False)
            return False
        except ChatMigrated as exc:
            await self._finish(row, "pending", error="chat migrated", new_chat_id=exc.new_chat_id, count_attempt=False)
            return False
        except Forbidden as exc:
            log.info("outbox: chat %s refused delivery (403); marking it blocked", _mask(row.chat_id))
            await self._blocked(row, str(exc))
        except BadRequest as exc:
            log.error("outbox: row %s dead-lettered: Telegram refused %s (%s)", row.id, row.method, exc.message)
            await self._finish(row, "dead", error=exc.message)
        except (NetworkError, TelegramError) as exc:  # timeouts, dropped connections, 5xx
            attempts = row.attempts + 1
            if attempts >= MAX_ATTEMPTS:
                log.error("outbox: row %s dead-lettered after %s attempts (%s)", row.id, attempts, type(exc).__name__)
                await self._finish(row, "dead", error=str(exc))
            else:
                delay = min(BACKOFF_CAP, self.backoff_base * 2 ** (attempts - 1))
                await self._finish(row, "pending", error=type(exc).__name__, delay=delay)
                return False
        except Exception as exc:
            log.exception("outbox: row %s failed unexpectedly", row.id)
            await self._finish(row, "dead", error=type(exc).__name__)
        else:
            msg_id = result.get("message_id") if isinstance(result, dict) else None
            await self._finish(row, "sent", message_id=msg_id)
            for hook in self.sent_hooks:
                try:
                    await hook(row, msg_id)
                except Exception:
                    log.exception("outbox: sent hook failed for row %s", row.id)
        return True

    async def _call(self, row: OutboxMessage) -> Any:
        params: dict[str, Any] = dict(row.payload)
        params["chat_id"] = row.chat_id
        if row.method == "deleteMessage" and REMOVED_TEXT in params:
            return await self._take_back(params)
        if row.method == "editMessageText" and params.pop(OR_SEND, False):
            return await self._edit_or_send(params)
        if row.file_data is not None:
            field = {"sendPhoto": "photo", "sendDocument": "document"}.get(row.method, "document")
            params[field] = InputFile(row.file_data, filename=row.file_name or "file")
        return await self._api(row.method, params)

    async def _api(self, method: str, params: dict[str, Any]) -> Any:
        return await self.bot.do_api_request(
            method,
            api_kwargs=params,
            read_timeout=20,
            write_timeout=20,
            connect_timeout=10,
        )

    async def _edit_or_send(self, params: dict[str, Any]) -> Any:
        """Replace the message; one Telegram no longer lets the bot edit (deleted, too old) gets
        the text as a new message, and one showing it already is done."""
        try:
            return await self._api("editMessageText", params)
        except BadRequest as exc:
            said = exc.message.lower()
            if "not modified" in said:
                return True
            if "message to edit not found" not in said and "can't be edited" not in said:
                raise
        params.pop("message_id", None)
        return await self._api("sendMessage", params)

    async def _take_back(self, params: dict[str, Any]) -> Any:
        """Delete a message; where Telegram refuses because it is too old (or not ours to delete),
        edit it to the neutral text instead. A message already gone, or already showing that text,
        is done."""
        text = str(params.pop(REMOVED_TEXT))
        target = {"chat_id": params["chat_id"], "message_id": params["message_id"]}
        try:
            return await self._api("deleteMessage", target)
        except BadRequest as exc:
            said = exc.message.lower()
            if "not found" in said:
                return True
            if "can't be deleted" not in said:
                raise
        try:
            return await self._api("editMessageText", {**target, "text": text, "parse_mode": "HTML"})
        except BadRequest as exc:
            said = exc.message.lower()
            if "not modified" in said or "not found" in said:
                return True
            if "no text in the message" not in said:
                raise
        try:  # a photo or a document: its caption
            return await self._api("editMessageCaption", {**target, "caption": text, "parse_mode": "HTML"})
        except BadRequest as exc:
            said = exc.message.lower()
            if "not modified" in said or "not found" in said:
                return True
            raise

    async def _finish(
        self,
        row: OutboxMessage,
        status: str,
        *,
        error: str | None = None,
        delay: float = 0.0,
        message_id: int | None = None,
        new_chat_id: int | None = None,
        count_attempt: bool = True,
    ) -> None:
        now = self.clock.now()
        values: dict[str, Any] = {"status": status, "last_error": error, "lease_until": None}
        if count_attempt and status != "sent":
            values["attempts"] = row.attempts + 1
        if status == "pending":
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        if status == "sent":
            values["sent_at"] = now
            values["telegram_message_id"] = message_id
        if new_chat_id is not None:
            values["chat_id"] = new_chat_id
        async with self.db.transaction() as s:
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(**values))
        self._held.discard(row.id)
        row.telegram_message_id = message_id
        if status == "pending":
            self._wake.set()
        else:
            self._delivered(row)

    async def _blocked(self, row: OutboxMessage, reason: str) -> None:
        now = self.clock.now()
        async with self.db.transaction() as s:
            await s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(status="blocked", last_error="403")
            )
            await mark_blocked(s, row.chat_id, now, reason[:200])
        self._held.discard(row.id)
        self._delivered(row)
        for hook in self.blocked_hooks:
            try:
                await hook(row.chat_id)
            except Exception:
                log.exception("outbox: blocked hook failed")


# The running sender of each bot (one per process; two in tests of several processes).
_by_bot: dict[int, Sender] = {}


def not_taken(exc: BaseException) -> float | None:
    """The wait before a send may be tried again, when Telegram certainly did not take it: a 429
    (its `retry_after`), or a connection that never reached Telegram. None otherwise: a timeout
    or a dropped answer may have delivered the message, and sending it again could double it."""
    if isinstance(exc, RetryAfter):
        return _seconds(exc.retry_after)
    if isinstance(exc, NetworkError) and isinstance(exc.__cause__, aiohttp.ClientConnectorError):
        return 0.0
    return None


async def hand_over(bot: Bot, outs: list[Outgoing], exc: BaseException | None = None) -> bool:
    """A direct reply (one chat's messages, in order) that Telegram did not take (`exc`), or that
    must queue behind replies already handed over (`exc` None): the outbox delivers it, once.

    False when it cannot be handed over (no running sender, or Telegram may have taken it): the
    caller raises the original error.
    """
    sender = _by_bot.get(id(bot))
    if sender is None or not outs:
        return False
    delay = 0.0 if exc is None else not_taken(exc)
    if delay is None:
        return False
    try:
        await sender.take_over(outs, delay=delay)
    except Exception as err:
        log.error("outbox: a reply could not be handed over (%s)", type(err).__name__)
        return False
    log.info("outbox: a reply to chat %s goes through the outbox (%s)", _mask(outs[0].chat_id), type(exc).__name__ if exc else "queued")
    return True


def expect(bot: Bot, chat_id: int, ids: list[int]) -> None:
    """Rows committed for this chat (`Sender.expect`); without a running sender they wait for
    the next start."""
    sender = _by_bot.get(id(bot))
    if sender is not None:
        sender.expect(chat_id, ids)


def waiting_in(bot: Bot, chat_id: int) -> bool:
    """Replies handed over to this chat are still waiting (a new direct reply would overtake them)."""
    sender = _by_bot.get(id(bot))
    return sender is not None and sender.waiting_in(chat_id)


async def mark_blocked(session: AsyncSession, chat_id: int, now: datetime, reason: str | None) -> None:
    ins = conflict_insert(session, BlockedChat).values(
        chat_id=chat_id, at=now, reason=reason
    )
    await session.execute(ins.on_conflict_do_nothing(index_elements=["chat_id"]))


async def mark_unblocked(session: AsyncSession, chat_ids: Iterable[int]) -> None:
    from sqlalchemy import delete

    await session.execute(delete(BlockedChat).where(BlockedChat.chat_id.in_(list(chat_ids))))


def _lease_expired(now: datetime, table: Any = OutboxMessage) -> Any:
    """A `sending` row nobody holds any more (a lease from before leases existed is NULL)."""
    return table.lease_until.is_(None) | (table.lease_until <= now)


def _seconds(v: Any) -> float:
    return v.total_seconds() if isinstance(v, timedelta) else float(v)


def _mask(chat_id: int) -> str:
    """Chat ids in logs are shortened: enough to correlate, not to identify."""
    s = str(chat_id)
    return "…" + s[-3:]
