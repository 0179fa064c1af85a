"""Getting updates from Telegram into the inbox, then to the Application.

Both transports store each update before it is handled, and only then let Telegram consider it
delivered: long polling advances its offset after the batch is stored; the webhook answers 200
after storing. If the database is down, updates are still handled (a crisis reply must not wait
on it) and a warning is logged. Each update is parsed before it is stored: one that is not an
update is set aside with a log line (by id) and never reaches the inbox. A person's message or
button is read from its JSON instead, and built only if it is within its sender's limit (`accept`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application
from telegram.request import BaseRequest

from bot.platform.config import TokenRejected
from bot.platform.http import Fields
from bot.platform.inbox import Inbox

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [
    "message",
    "edited_message",
    "callback_query",
    "my_chat_member",
    "chat_member",
]
POLL_TIMEOUT = 25
MAX_BACKOFF = 30.0
WEBHOOK_CHECK_SECONDS = 300.0


def parse_update(data: Any, bot: Any) -> Update:
    """One update from Telegram's JSON; raises (ValueError, TypeError, ...) when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("an update is a JSON object")
    uid = data.get("update_id")
    if not isinstance(uid, int) or isinstance(uid, bool):
        raise ValueError("an update has an integer update_id")
    return Update.de_json(data, bot)


def _update_id(data: Any) -> object:
    return data.get("update_id") if isinstance(data, dict) else None


class _Base:
    def __init__(self, app: Application, inbox: Inbox) -> None:
        self.app = app
        self.inbox = inbox
        self._finishing: set[asyncio.Task[None]] = set()

    async def accept(self, raw: list[Any]) -> int:
        """Store, then queue for handling, the updates not seen before; returns how many were
        refused because they are not updates (logged by id, never by content).

        A person's message or button is read from its JSON and, once stored, screened and counted
        against their limit before it is built (the update processor's `triage` and `decide`,
        handlers/screening.py): one beyond the limit is marked done without ever becoming an Update,
        so a flood costs little more than its screening. Every other update is built before it
        is stored, and one that cannot be is set aside unstored. (One read from its JSON but
        that cannot be built is marked failed once stored, and counted as refused.)"""
        processor = getattr(self.app, "update_processor", None)
        triage = getattr(processor, "triage", None)
        parsed: dict[int, Update] = {}
        deferred: dict[int, Any] = {}
        good: list[dict[str, Any]] = []
        for data in raw:
            try:
                f = triage(data) if triage is not None else None
                if f is None:
                    update = parse_update(data, self.app.bot)
                    uid = update.update_id
                else:
                    uid = data["update_id"]
            except Exception as exc:
                log.error("an update (id %s) cannot be read (%s); it is set aside", _update_id(data), type(exc).__name__)
                continue
            if uid in parsed or uid in deferred:
                continue
            if f is None:
                parsed[uid] = update
            else:
                deferred[uid] = f
            good.append(data)
        try:
            fresh = await self.inbox.receive(good)  # a busy database holds it up a moment at most
        except Exception as exc:
            log.warning("inbox unavailable (%s); handling %d update(s) without it", type(exc).__name__, len(good))
            fresh = good
        refused = len(raw) - len(good)
        dropped: list[int] = []
        failed: list[int] = []
        for data in fresh:
            uid = data["update_id"]
            update = parsed.get(uid)
            if update is None:
                if not processor.decide(uid, deferred[uid]):
                    dropped.append(uid)  # beyond the sender's limit: never built
                    continue
                try:
                    update = parse_update(data, self.app.bot)
                except Exception as exc:
                    processor.forget(uid)
                    log.error("an update (id %s) cannot be read (%s); it is set aside", uid, type(exc).__name__)
                    failed.append(uid)
                    refused += 1
                    continue
            await self.app.update_queue.put(update)
        if dropped or failed:
            self._finish(processor, dropped, failed)
        return refused

    def _finish(self, processor: Any, dropped: list[int], failed: list[int]) -> None:
        """Mark updates that are not handled done (or failed) in the background: receiving goes on."""

        async def finish() -> None:
            finish_one = getattr(processor, "finish", None)
            # An empty Update stands for one never built (its id is all marking needs).
            jobs = [finish_one(Update(uid)) for uid in dropped] if finish_one is not None else []
            jobs += [self.inbox.mark_done(uid, failed=True) for uid in failed]
            for result in await asyncio.gather(*jobs, return_exceptions=True):
                if isinstance(result, Exception):
                    log.warning("inbox: could not mark an update that was not handled (%s)", type(result).__name__)

        task = asyncio.create_task(finish())
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finished(self) -> None:
        """At stop: updates not handled are marked before the process ends."""
        if self._finishing:
            await asyncio.wait(set(self._finishing))


class Poller(_Base):
    """Long polling. `getUpdates` answers are taken as Telegram's JSON: stored as they came,
    then made into objects once (python-telegram-bot's `get_updates` would parse them, and
    storing needs them back as JSON).

    Polling never ends on its own while the bot can still receive: network errors, 5xx and 409
    Conflict (another instance polling with the token, or a webhook set) are retried with
    backoff and logged. A rejected token (401) cannot get better by waiting: `on_fatal` is told,
    and the runner stops the process with a non-zero exit. So does any unexpected failure of the
    loop: a process that cannot receive updates does not stay up pretending.
    """

    def __init__(
        self,
        app: Application,
        inbox: Inbox,
        request: BaseRequest,
        *,
        poll_timeout: int = POLL_TIMEOUT,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        super().__init__(app, inbox)
        self.request = request
        self.poll_timeout = poll_timeout
        self.on_fatal = on_fatal
        self._task: asyncio.Task[None] | None = None
        self.offset: int | None = None

    async def start(self) -> None:
        await self.app.bot.delete_webhook(drop_pending_updates=False)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._finished()

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except TokenRejected as exc:
            log.critical("polling stopped: Telegram rejected the bot token (401 Unauthorized)")
            self._fatal(exc)
        except Exception as exc:
            log.critical("polling stopped unexpectedly (%s)", type(exc).__name__, exc_info=True)
            self._fatal(exc)

    def _fatal(self, exc: BaseException) -> None:
        if self.on_fatal is not None:
            self.on_fatal(exc)

    async def _loop(self) -> None:
        delay = 1.0
        conflicts = 0
        while True:
            try:
                fields = {"timeout": str(self.poll_timeout), "allowed_updates": json.dumps(ALLOWED_UPDATES)}
                if self.offset is not None:
                    fields["offset"] = str(self.offset)
                updates = await self.request.post(
                    f"{self.app.bot.base_url}/getUpdates", Fields(fields), read_timeout=self.poll_timeout + 10
                )
            except RetryAfter as exc:
                await asyncio.sleep(_secs(exc.retry_after))
                continue
            except InvalidToken:
                raise TokenRejected() from None
            except Conflict as exc:
                conflicts += 1
                log.error(
                    "polling: 409 Conflict from Telegram: another instance is polling with this token or a"
                    " webhook is set (Telegram says: %s); retrying in %.0fs (conflict %d in a row)",
                    exc.message,
                    delay,
                    conflicts,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            except (NetworkError, TelegramError) as exc:
                log.warning("polling: %s; retrying in %.0fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            delay = 1.0
            if conflicts:
                log.warning("polling: receiving updates again after %d conflict(s)", conflicts)
                conflicts = 0
            if not updates:
                continue
            if not isinstance(updates, list):
                log.warning("polling: unexpected answer to getUpdates; retrying")
                await asyncio.sleep(delay)
                continue
            await self.accept(updates)
            ids = [uid for uid in map(_update_id, updates) if isinstance(uid, int)]
            if ids:
                self.offset = max(ids) + 1


class WebhookServer(_Base):
    """An aiohttp server for Telegram's webhook. It registers itself with `setWebhook` (the
    secret token and the update types the bot needs) and refuses any request without the
    secret in its header; a body that is not an update is answered 400 and never stored."""

    def __init__(
        self,
        app: Application,
        inbox: Inbox,
        *,
        url: str,
        secret: str,
        listen: str,
        port: int,
        check_seconds: float = WEBHOOK_CHECK_SECONDS,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a secret token")
        super().__init__(app, inbox)
        self.url = url
        self.secret = secret
        self.listen = listen
        self.port = port
        self.path = urlsplit(url).path or "/"
        self.check_seconds = check_seconds
        self.on_fatal = on_fatal
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The web server's part of aiohttp is loaded only in webhook mode (start-up time).
        from aiohttp import web

        if self._runner is None:  # start() may be retried after set_webhook failed
            web_app = web.Application(client_max_size=1 << 20)
            web_app.router.add_post(self.path, self._handle)
            self._runner = web.AppRunner(web_app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.listen, self.port)
            await site.start()
        await self._register()
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_loop(), name="webhook-watch")

    async def _register(self) -> None:
        await self.app.bot.set_webhook(
            url=self.url,
            secret_token=self.secret,
            allowed_updates=ALLOWED_UPDATES,
            max_connections=40,
        )

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._finished()

    async def _watch_loop(self) -> None:
        """A webhook receives nothing when Telegram stops sending, so ask now and then: a
        rejected token stops the process (as for polling); a webhook changed or removed by
        someone else is logged and set again; delivery errors Telegram reports are logged."""
        last_error: int | None = None
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                info = await self.app.bot.get_webhook_info()
                if info.url != self.url:
                    log.error("webhook: Telegram has another webhook (or none) for this bot; setting ours again")
                    await self._register()
                stamp = int(info.last_error_date.timestamp()) if info.last_error_date else None
                if stamp is not None and stamp != last_error:
                    log.warning("webhook: Telegram reports a delivery error (%s)", info.last_error_message)
                last_error = stamp
            except InvalidToken:
                log.critical("webhook: Telegram rejected the bot token (401 Unauthorized)")
                if self.on_fatal is not None:
                    self.on_fatal(TokenRejected())
                return
            except TelegramError as exc:
                log.warning("webhook: could not check the webhook with Telegram (%s)", type(exc).__name__)

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return web.Response(status=403)
        try:
            data = await request.json()
        except Exception:
            return web.Response(status=400)
        if await self.accept([data]):
            return web.Response(status=400)  # not an update: refused, never stored
        return web.Response(status=200)


def _secs(v: Any) -> float:
    return v.total_seconds() if hasattr(v, "total_seconds") else float(v)
