"""Getting updates from Telegram into the inbox, then to the Application.

Both transports store each update before it is handled, and only then let Telegram consider it
delivered: long polling advances its offset after the batch is stored; the webhook answers 200
after storing. If the database is down, updates are still handled (a crisis reply must not wait
on it) and a warning is logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application
from telegram.request import BaseRequest

from bot.http import Fields
from bot.inbox import Inbox

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [
    "message",
    "edited_message",
    "callback_query",
    "my_chat_member",
    "chat_member",
]
POLL_TIMEOUT = 25


class _Base:
    def __init__(self, app: Application, inbox: Inbox) -> None:
        self.app = app
        self.inbox = inbox

    async def accept(self, raw: list[dict[str, Any]]) -> None:
        """Store, then queue for handling, the updates not seen before."""
        try:
            fresh = await self.inbox.store(raw)
        except Exception as exc:
            log.warning("inbox unavailable (%s); handling %d update(s) without it", type(exc).__name__, len(raw))
            fresh = raw
        for data in fresh:
            update = Update.de_json(data, self.app.bot)
            await self.app.update_queue.put(update)


class Poller(_Base):
    """Long polling. `getUpdates` answers are taken as Telegram's JSON: stored as they came,
    then made into objects once (python-telegram-bot's `get_updates` would parse them, and
    storing needs them back as JSON)."""

    def __init__(
        self, app: Application, inbox: Inbox, request: BaseRequest, *, poll_timeout: int = POLL_TIMEOUT
    ) -> None:
        super().__init__(app, inbox)
        self.request = request
        self.poll_timeout = poll_timeout
        self._task: asyncio.Task[None] | None = None
        self.offset: int | None = None

    async def start(self) -> None:
        await self.app.bot.delete_webhook(drop_pending_updates=False)
        self._task = asyncio.create_task(self._loop(), name="poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        delay = 1.0
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
            except (InvalidToken, Conflict) as exc:
                log.error("polling stopped: %s", type(exc).__name__)
                raise
            except (NetworkError, TelegramError) as exc:
                log.warning("polling: %s; retrying in %.0fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            if not updates:
                continue
            if not isinstance(updates, list):
                log.warning("polling: unexpected answer to getUpdates; retrying")
                await asyncio.sleep(delay)
                continue
            await self.accept(updates)
            self.offset = updates[-1]["update_id"] + 1


class WebhookServer(_Base):
    """An aiohttp server for Telegram's webhook, checking the secret token header."""

    def __init__(
        self, app: Application, inbox: Inbox, *, url: str, secret: str | None, listen: str, port: int
    ) -> None:
        super().__init__(app, inbox)
        self.url = url
        self.secret = secret
        self.listen = listen
        self.port = port
        self.path = urlsplit(url).path or "/"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is None:  # start() may be retried after set_webhook failed
            web_app = web.Application(client_max_size=1 << 20)
            web_app.router.add_post(self.path, self._handle)
            self._runner = web.AppRunner(web_app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.listen, self.port)
            await site.start()
        await self.app.bot.set_webhook(
            url=self.url,
            secret_token=self.secret,
            allowed_updates=ALLOWED_UPDATES,
            max_connections=40,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        if self.secret:
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                return web.Response(status=403)
        try:
            data = await request.json()
        except Exception:
            return web.Response(status=400)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.Response(status=400)
        await self.accept([data])
        return web.Response(status=200)


def _secs(v: Any) -> float:
    return v.total_seconds() if hasattr(v, "total_seconds") else float(v)
