"""The HTTP side of the fake Telegram Bot API: routes, recording, fault injection, webhooks."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import re
import socket
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from .botapi import METHODS, BotApiMixin
from .models import ApiCall, ApiError, ErrorRecord, FaultRule, HeldCall
from .people import PeopleMixin
from .state import SEND_METHODS
from .validation import Params, UploadedFile

log = logging.getLogger(__name__)

_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_BAD_GATEWAY = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_INJECTED = {
    "500": ApiError(500, "Internal Server Error"),
    "403": ApiError(403, "Forbidden: bot was blocked by the user"),
    "400": ApiError(400, "Bad Request: injected failure"),
    "401": ApiError(401, "Unauthorized"),
    "409": ApiError(
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
        "is running",
    ),
}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _client_gone(request: web.Request) -> bool:
    """Whether the client closed its connection, even if the loop has not noticed yet.

    A killed process's sockets are closed by the kernel before anyone can observe the process's
    death, so peeking at the socket tells for sure whether a held request still has a reader.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        probe = socket.fromfd(sock.fileno(), sock.family, sock.type)
    except OSError:
        return True
    try:
        probe.setblocking(False)
        return probe.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        probe.close()


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname
    return host is not None and host.lower() in _LOCAL_HOSTS


class FakeTelegram(BotApiMixin, PeopleMixin):
    """A fake Telegram Bot API server for end-to-end tests and benchmarks.

    ``await fake.start()`` listens on 127.0.0.1; point a bot at ``fake.base_url`` and
    ``fake.base_file_url``. The same object is the control API (``add_user``, ``send_text``,
    ``press``, ``fail``, ``hold``...) and records everything (``calls``, ``errors``, ``sent()``).
    The HTTP control API lives under ``/control/``.
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "iop_test_bot",
        bot_first_name: str = "IOP Test Bot",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        privacy_mode: bool = True,
        first_update_id: int = 1000,
        strict_ampersand: bool = True,
        webhook_retry_delay: float = 0.05,
    ) -> None:
        super().__init__(
            token,
            bot_username,
            bot_first_name,
            clock=clock,
            privacy_mode=privacy_mode,
            first_update_id=first_update_id,
            strict_ampersand=strict_ampersand,
        )
        if host not in _LOCAL_HOSTS:
            raise ValueError("the fake listens on localhost only")
        self.host = host
        self.port = port
        self.webhook_retry_delay = webhook_retry_delay
        # Seconds each Bot API call takes before it is handled: a round trip to Telegram's
        # servers, which a server on this machine otherwise answers at once (benchmarks).
        self.latency = 0.0
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the fake is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What python-telegram-bot wants as ``base_url`` (it appends the token)."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.root_url}/file/bot"

    @property
    def control_url(self) -> str:
        return f"{self.root_url}/control"

    def build_app(self) -> web.Application:
        from .control import add_control_routes

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("*", "/bot{token}/", self._handle_not_found)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        add_control_routes(app, self)
        app.router.add_get("/", self._handle_root)
        return app

    async def start(self) -> FakeTelegram:
        if self._runner is not None:
            return self
        self._closing = False
        runner = web.AppRunner(
            self.build_app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]
        self._runner = runner
        self._webhook_changed()
        return self

    async def stop(self) -> None:
        self._closing = True
        self._holds.clear()
        self._wake_pollers()
        self._touch()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            try:
                await self._webhook_task
            except asyncio.CancelledError:
                pass
            self._webhook_task = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- HTTP handlers ---------------------------------------------------------------------

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(text=_dumps(body), status=status, content_type="application/json")

    async def _handle_root(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "fake_telegram": True,
                "bot": self.bot.to_api(),
                "base_url": self.base_url,
                "base_file_url": self.base_file_url,
                "control_url": self.control_url,
            }
        )

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return self._json(ApiError(404, "Not Found").to_api(), 404)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._json(ApiError(401, "Unauthorized").to_api(), 401)
        stored = self._files_by_path.get(request.match_info["path"])
        if stored is None or stored.data is None:
            return self._json(ApiError(404, "Not Found").to_api(), 404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> Params:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.method == "POST" and request.body_exists:
            content_type = request.content_type
            if content_type == "application/json":
                try:
                    body = json.loads(await request.text() or "{}")
                except ValueError:
                    raise ApiError(400, "Bad Request: can't parse JSON") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "Bad Request: JSON object expected")
                raw.update(body)
            elif content_type == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                        continue
                    if part.filename is not None:
                        data = bytes(await part.read(decode=False))
                        mime = part.headers.get(aiohttp.hdrs.CONTENT_TYPE)
                        files[part.name] = UploadedFile(part.filename, mime, data)
                    else:
                        raw[part.name] = await part.text()
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        raw[key] = value
        return Params(raw, files)

    def _record_error(self, call: ApiCall, status: int, description: str, injected: bool) -> None:
        call.status = status
        call.description = description
        call.injected = injected
        self.errors.append(
            ErrorRecord(call.method, status, description, call.params, call.time, injected)
        )
        self._touch()

    def _error_response(
        self, call: ApiCall, error: ApiError, injected: bool = False
    ) -> web.Response:
        self._record_error(call, error.code, error.description, injected)
        return self._json(error.to_api(), error.code)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        if not _TOKEN_SHAPE.match(token):
            return self._json(ApiError(404, "Not Found").to_api(), 404)
        entry = METHODS.get(raw_method.lower())
        method = entry[0] if entry else raw_method
        call = ApiCall(method=method, params={}, time=self.clock())
        if token != self.token or self.token_revoked:
            self.calls.append(call)
            return self._error_response(call, ApiError(401, "Unauthorized"))
        try:
            params = await self._read_params(request)
        except ApiError as error:
            self.calls.append(call)
            return self._error_response(call, error)
        call.params = params.loggable()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        self.calls.append(call)
        if entry is None:
            return self._error_response(call, ApiError(404, "Not Found"))
        try:
            if self._is_held(method, params.raw):
                await self._wait_released(call, params)
                if _client_gone(request):
                    call.disconnected = True
                    self._touch()
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=499)
            fault = self._take_fault(method, params.raw.get("chat_id"))
            if fault is not None:
                return self._inject(request, call, fault)
            self._check_flood(method, params)
            result = entry[1](self, params)
            if inspect.isawaitable(result):
                result = await result
        except ApiError as error:
            return self._error_response(call, error)
        except asyncio.CancelledError:
            call.disconnected = True
            self._touch()
            raise
        except Exception:
            trace = traceback.format_exc()
            self.internal_errors.append(f"{method}: {trace}")
            log.error("fake Telegram failed on %s\n%s", method, trace)
            return self._error_response(call, ApiError(500, "Internal Server Error"))
        if method in SEND_METHODS:
            self._count_send(params)
        call.status = 200
        self._touch()
        return self._json({"ok": True, "result": result})

    async def _wait_released(self, call: ApiCall, params: Params) -> None:
        held = HeldCall(call.method, call.params, call.time)
        self.held.append(held)
        self._touch()
        try:
            while self._is_held(call.method, params.raw) and not self._closing:
                await self._changed.wait()
        finally:
            self.held.remove(held)
            self._touch()

    def _inject(self, request: web.Request, call: ApiCall, fault: FaultRule) -> web.StreamResponse:
        if fault.kind == "drop":
            self._record_error(call, 0, "connection dropped", True)
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response(status=500)
        if fault.kind == "redirect":
            # Back to the very same URL (token and all): a client that follows redirects loops.
            self._record_error(call, 302, "Found", True)
            return web.Response(status=302, headers={"Location": str(request.url)})
        if fault.kind == "502":
            self._record_error(call, 502, "Bad Gateway", True)
            return web.Response(text=_BAD_GATEWAY, status=502, content_type="text/html")
        if fault.kind == "429":
            error = ApiError(
                429,
                f"Too Many Requests: retry after {fault.retry_after}",
                {"retry_after": fault.retry_after},
            )
        elif fault.description:
            error = ApiError(int(fault.kind), fault.description)
        else:
            error = _INJECTED[fault.kind]
        return self._error_response(call, error, injected=True)

    # -- flood control ---------------------------------------------------------------------

    def _flood_key(self, params: Params) -> str:
        return str(params.raw.get("chat_id"))

    def _check_flood(self, method: str, params: Params) -> None:
        if method not in SEND_METHODS:
            return
        now = self.clock()
        checks: list[tuple[deque[float], float]] = []
        if self.flood_limit:
            checks.append((self._flood_window, self.flood_limit))
        if self.flood_limit_per_chat:
            window = self._flood_chat_windows.setdefault(self._flood_key(params), deque())
            checks.append((window, self.flood_limit_per_chat))
        for window, limit in checks:
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                retry_after = max(1, math.ceil(window[0] + 1.0 - now))
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )

    def _count_send(self, params: Params) -> None:
        now = self.clock()
        if self.flood_limit:
            self._flood_window.append(now)
        if self.flood_limit_per_chat:
            self._flood_chat_windows.setdefault(self._flood_key(params), deque()).append(now)

    # -- webhooks --------------------------------------------------------------------------

    def _webhook_changed(self) -> None:
        if self._runner is None and self.webhook is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.webhook is not None and _is_local(self.webhook["url"]):
            if self._webhook_task is None or self._webhook_task.done():
                self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        self._wake_pollers()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    async def _deliver_webhooks(self) -> None:
        while not self._closing:
            webhook = self.webhook
            if webhook is None or not _is_local(webhook["url"]):
                return
            batch = self._collect(1)
            if not batch:
                event = self._update_event
                await event.wait()
                continue
            update = batch[0]
            self._webhook_inflight = True
            try:
                status, error = await self._post(
                    webhook["url"], update, webhook.get("secret_token")
                )
            finally:
                self._webhook_inflight = False
            if status is not None and 200 <= status < 300:
                if self._pending and self._pending[0].update is update:
                    self._pending.popleft()
                self._touch()
                continue
            self.webhook_errors.append(
                (self.clock(), error or f"Wrong response from the webhook: {status}")
            )
            self._touch()
            await asyncio.sleep(self.webhook_retry_delay)

    async def _post(
        self, url: str, update: dict[str, Any], secret_token: str | None
    ) -> tuple[int | None, str | None]:
        headers = {"Content-Type": "application/json"}
        if secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        try:
            async with self._session().post(
                url, data=_dumps(update).encode(), headers=headers
            ) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as error:
            return None, f"Connection failed: {error.__class__.__name__}"

    async def post_webhook(
        self, url: str, update: dict[str, Any], secret_token: str | None = None
    ) -> int:
        """POST one update to a bot's webhook on localhost; returns the HTTP status (0 if none)."""
        if not _is_local(url):
            raise ValueError("webhooks are posted to localhost only")
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
            self._next_update_id += 1
        status, _ = await self._post(url, update, secret_token)
        return status or 0


async def serve_forever(fake: FakeTelegram) -> None:
    await fake.start()
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


__all__ = ["FakeTelegram", "serve_forever"]
