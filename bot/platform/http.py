"""The bot's HTTP client for the Bot API: python-telegram-bot's request interface over aiohttp.

python-telegram-bot ships an httpx client; every bot call goes through it, and on a busy
install its per-request cost is a large share of the bot's CPU. aiohttp (already a dependency
for the webhook server) does the same work for a fraction of it. Status codes and bodies are
handed back to python-telegram-bot unchanged, so its error mapping (429 retry_after, 403, 400,
migrated chats) is the same as with httpx; network failures become its NetworkError / TimedOut.
Redirects are not followed (the URL holds the token), and error text never quotes the token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp
from telegram import Bot
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.platform.logs import redact

DEFAULT_TIMEOUT = 5.0
MEDIA_WRITE_TIMEOUT = 20.0
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Redirected(TelegramError):
    """The Bot API answered with a redirect. Not followed, and not worth retrying at start-up:
    it means TELEGRAM_API_BASE_URL points somewhere other than a Bot API server."""


def _token_in(url: str) -> str | None:
    """The token in a Bot API URL (`…/bot<token>/<method>`), to mask it in error text."""
    head, _, _method = url.rpartition("/")
    _, found, token = head.rpartition("/bot")
    return token if found and token else None


class Fields(RequestData):
    """Request parameters already in wire form (name -> string), for a call whose answer the
    caller wants as Telegram's JSON rather than as python-telegram-bot objects."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self._fields = fields

    @property
    def json_parameters(self) -> dict[str, str]:
        return dict(self._fields)

    @property
    def multipart_data(self) -> dict[str, Any]:
        return {}


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a bounded connection pool, created on `initialize`."""

    def __init__(self, pool_size: int = 32, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._pool_size = pool_size
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300),
                headers={"User-Agent": self.USER_AGENT},
                # The body is Telegram's JSON, read as bytes; no cookies, no redirects to follow.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept-Encoding",),
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _seconds(self, value: Any, default: float) -> float | None:
        return default if isinstance(value, DefaultValue) else value

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        files = request_data.multipart_data if request_data else None
        fields = request_data.json_parameters if request_data else None
        # Form fields, exactly as python-telegram-bot's own client sends them (nested values
        # are JSON strings); multipart when there are files.
        body: Any = None
        headers = None
        if fields and not files:
            # Encoded here: aiohttp would build a form object to produce the same bytes.
            body = urlencode(fields).encode()
            headers = _FORM
        if files:
            form = aiohttp.FormData()
            for name, value in (fields or {}).items():
                form.add_field(name, value)
            for name, part in files.items():
                filename, content, *mime = part if isinstance(part, tuple) else (None, part)
                form.add_field(name, content, filename=filename, content_type=mime[0] if mime else None)
            body = form
        read = self._seconds(read_timeout, self._timeout)
        write = self._seconds(write_timeout, MEDIA_WRITE_TIMEOUT if files else self._timeout)
        connect = self._seconds(connect_timeout, self._timeout)
        pool = self._seconds(pool_timeout, 1.0)
        # aiohttp has no separate write timeout: a request gets the larger of read and write
        # to finish reading the answer; waiting for a free connection counts against connect.
        sock_read = max(t for t in (read, write) if t is not None) if (read or write) else None
        timeout = aiohttp.ClientTimeout(
            total=None, connect=(connect or 0) + (pool or 0) or None, sock_read=sock_read
        )
        try:
            # No redirects: the token is in the URL, and the Bot API never redirects.
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as res:
                if 300 <= res.status < 400:
                    raise Redirected(
                        f"the Bot API answered {url.rsplit('/', 1)[-1]} with a redirect (HTTP {res.status}),"
                        " which is not followed: check TELEGRAM_API_BASE_URL"
                    )
                return res.status, await res.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            # An aiohttp error may quote the URL, and with it the token.
            raise NetworkError(redact(f"aiohttp.{type(exc).__name__}: {exc}", _token_in(url))) from None


async def call(bot: Bot, method: str, fields: dict[str, str]) -> Any:
    """One Bot API call with its parameters already in wire form, answered with Telegram's JSON.

    For the busiest calls (answering a button, editing the message it was on), where
    python-telegram-bot would build parameter objects and parse the answer into objects only
    for them to be thrown away. Errors are python-telegram-bot's own (BadRequest, Forbidden,
    RetryAfter, TimedOut, NetworkError), as for every other call.
    """
    return await bot.request.post(f"{bot.base_url}/{method}", Fields(fields))
