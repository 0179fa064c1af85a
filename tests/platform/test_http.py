"""The Bot API HTTP client (bot/platform/http.py) against a small local server: what goes on the wire,
and how each kind of failure reaches python-telegram-bot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.platform.http import AiohttpRequest, Fields

TOKEN = "123456:" + "A" * 35


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer: tuple[int, dict[str, Any]] = (200, {"ok": True, "result": True})
        self.release = asyncio.Event()
        self.hold = False
        self.drop = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        entry: dict[str, Any] = {"method": request.path.rsplit("/", 1)[-1], "type": request.content_type}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            fields: dict[str, Any] = {}
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                fields[part.name or ""] = (part.filename, data) if part.filename else data.decode()  # type: ignore[union-attr]
            entry["fields"] = fields
        else:
            entry["fields"] = dict(await request.post())
        self.seen.append(entry)
        if self.hold:
            await self.release.wait()
        if self.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        status, body = self.answer
        return web.json_response(body, status=status)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/{tail:.*}", srv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield srv, f"http://127.0.0.1:{port}/bot"
    srv.release.set()
    await runner.cleanup()


async def _bot(base: str, timeout: float = 5.0) -> Bot:
    bot = Bot(TOKEN, base_url=base, request=AiohttpRequest(timeout=timeout), get_updates_request=AiohttpRequest())
    await bot._request[1].initialize()  # the bot's own calls, without getMe
    return bot


async def test_form_fields_as_python_telegram_bot_sends_them(server: tuple[Server, str]) -> None:
    srv, base = server
    bot = await _bot(base)
    srv.answer = (200, {"ok": True, "result": {"message_id": 5, "date": 0, "chat": {"id": 7, "type": "private"}, "text": "hi"}})
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="y")]])
    msg = await bot.send_message(7, "hi <b>there</b>", parse_mode="HTML", reply_markup=kb)
    assert msg.message_id == 5
    [seen] = srv.seen
    assert seen["method"] == "sendMessage" and seen["type"] == "application/x-www-form-urlencoded"
    assert seen["fields"]["chat_id"] == "7" and seen["fields"]["text"] == "hi <b>there</b>"
    assert json.loads(seen["fields"]["reply_markup"]) == {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
    await bot._request[1].shutdown()


async def test_files_go_as_multipart(server: tuple[Server, str]) -> None:
    srv, base = server
    bot = await _bot(base)
    srv.answer = (200, {"ok": True, "result": {"message_id": 6, "date": 0, "chat": {"id": 7, "type": "private"}}})
    await bot.send_photo(7, InputFile(b"\x89PNG fake", filename="chart.png"), caption="30 days")
    [seen] = srv.seen
    assert seen["method"] == "sendPhoto" and seen["type"] == "multipart/form-data"
    assert seen["fields"]["caption"] == "30 days" and seen["fields"]["chat_id"] == "7"
    assert seen["fields"]["photo"] == ("chart.png", b"\x89PNG fake")
    await bot._request[1].shutdown()


async def test_telegram_errors_keep_python_telegram_bot_mapping(server: tuple[Server, str]) -> None:
    srv, base = server
    bot = await _bot(base)
    srv.answer = (429, {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 3}})
    with pytest.raises(RetryAfter) as retry:
        await bot.send_message(7, "x")
    ra: Any = retry.value.retry_after
    assert (ra.total_seconds() if hasattr(ra, "total_seconds") else ra) == 3
    srv.answer = (400, {"ok": False, "error_code": 400, "description": "Bad Request: message is not modified"})
    with pytest.raises(BadRequest, match="not modified"):
        await bot.send_message(7, "x")
    await bot._request[1].shutdown()


async def test_a_server_that_never_answers_is_a_timeout(server: tuple[Server, str]) -> None:
    srv, base = server
    srv.hold = True
    bot = await _bot(base, timeout=0.2)
    with pytest.raises(TimedOut):
        await bot.send_message(7, "x")
    await bot._request[1].shutdown()


async def test_a_dropped_connection_is_a_network_error(server: tuple[Server, str]) -> None:
    srv, base = server
    srv.drop = True
    bot = await _bot(base)
    with pytest.raises(NetworkError) as err:
        await bot.send_message(7, "x")
    assert not isinstance(err.value, TimedOut)
    await bot._request[1].shutdown()


async def test_nothing_listening_is_a_network_error() -> None:
    # A port that was just free: nothing listens on it.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    bot = await _bot(f"http://127.0.0.1:{port}/bot")
    with pytest.raises(NetworkError):
        await bot.send_message(7, "x")
    await bot._request[1].shutdown()


async def test_raw_fields_and_uninitialised_use(server: tuple[Server, str]) -> None:
    srv, base = server
    req = AiohttpRequest()
    with pytest.raises(NetworkError, match="not initialized"):
        await req.post(f"{base}{TOKEN}/getUpdates", Fields({"timeout": "0"}))
    await req.initialize()
    srv.answer = (200, {"ok": True, "result": [{"update_id": 1}]})
    assert await req.post(f"{base}{TOKEN}/getUpdates", Fields({"offset": "1", "timeout": "0"})) == [{"update_id": 1}]
    assert srv.seen[-1]["fields"] == {"offset": "1", "timeout": "0"}
    await req.shutdown()
    await req.shutdown()  # twice is harmless
