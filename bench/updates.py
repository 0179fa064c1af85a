"""Updates per second through the full path, against a bare python-telegram-bot application.

Full path: fake Bot API → getUpdates → inbox → handler → database write → reply → fake Bot API,
for a realistic button press: patients walking through the daily check-in by buttons (each press
stores an answer item by item and edits the check-in message to the next question).
Bare: a python-telegram-bot echo application on the same fake server, answering each press and
editing the message.

The fake server runs in its own process (as Telegram would be), driven over its control API.

Run:  .venv/bin/python bench/updates.py [--users 300] [--database-url URL]
      (BENCH_CONCURRENCY sets how many updates the bot handles at once; default 16)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update  # noqa: E402
from telegram.ext import Application, CallbackQueryHandler, CommandHandler  # noqa: E402

from bot.app import Runner, build_application, run_event_loop  # noqa: E402
from bot.core.models import Patient  # noqa: E402
from bot.core.rules_loader import load_instruments  # noqa: E402
from bot.platform.config import load_settings  # noqa: E402
from bot.platform.db import Database  # noqa: E402


class FakeProcess:
    """`python -m fakeapi` in a child process, and a small client for its control API."""

    def __init__(self, *args: str) -> None:
        self.args = args  # more of `python -m fakeapi`'s options (e.g. --latency-ms 60)

    async def __aenter__(self) -> FakeProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fakeapi", "--port", "0", *self.args,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        info: dict[str, str] = {}
        assert self.proc.stdout is not None
        while len(info) < 4:
            line = (await self.proc.stdout.readline()).decode().strip()
            if not line:
                raise RuntimeError("the fake Bot API server did not start")
            k, _, v = line.partition("=")
            info[k] = v
        self.base_url, self.control_url, self.token = info["base_url"], info["control_url"], info["token"]
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        self.proc.terminate()
        await self.proc.wait()

    async def ctl(self, action: str, **payload: Any) -> Any:
        async with self.http.post(f"{self.control_url.rstrip('/')}/{action}", json=payload) as r:
            body = await r.json()
        if not body.get("ok"):
            raise RuntimeError(f"control {action}: {body}")
        return body["result"]


async def wait_until(cond: Any, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.005)


async def press_all(fake: FakeProcess, presses: list[tuple[int, int, str]]) -> None:
    for user_id, message_id, data in presses:
        await fake.ctl("press", user_id=user_id, chat_id=user_id, message_id=message_id, callback_data=data)


# -- bare python-telegram-bot -----------------------------------------------------------------

async def bare(fake: FakeProcess, users: list[int], steps: int) -> float:
    count = 0

    async def start(update: Update, _: Any) -> None:
        kb = InlineKeyboardMarkup([[InlineKeyboardButton("Press", callback_data="b:0")]])
        await update.effective_chat.send_message("Ready", reply_markup=kb)  # type: ignore[union-attr]

    async def pressed(update: Update, _: Any) -> None:
        nonlocal count
        q = update.callback_query
        await q.answer()  # type: ignore[union-attr]
        n = int(q.data.split(":")[1]) + 1  # type: ignore[union-attr]
        kb = InlineKeyboardMarkup([[InlineKeyboardButton("Press", callback_data=f"b:{n}")]])
        await q.edit_message_text(f"Pressed {n}", reply_markup=kb)  # type: ignore[union-attr]
        count += 1

    app = (
        Application.builder().token(fake.token).base_url(fake.base_url).concurrent_updates(16)
        .connection_pool_size(32).build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=10)  # type: ignore[union-attr]
        for u in users:
            await fake.ctl("send_text", user_id=u, text="/start")
        ids: dict[int, int] = {}
        for u in users:
            while u not in ids:
                last = await fake.ctl("last", chat_id=u)
                if last and last.get("text") == "Ready":
                    ids[u] = last["message_id"]
                else:
                    await asyncio.sleep(0.01)
        await app.updater.stop()  # type: ignore[union-attr]
        presses = [(u, ids[u], f"b:{k}") for k in range(steps) for u in users]
        await press_all(fake, presses)
        t0 = time.perf_counter()
        await app.updater.start_polling(poll_interval=0, timeout=10)  # type: ignore[union-attr]
        await wait_until(lambda: count >= len(presses))
        elapsed = time.perf_counter() - t0
        await app.updater.stop()  # type: ignore[union-attr]
        await app.stop()
    return len(presses) / elapsed


# -- iop-bot, full path -----------------------------------------------------------------------

def checkin_presses() -> list[str]:
    """The button presses of one check-in, from the instrument itself (not MAT)."""
    out: list[str] = []
    for item in load_instruments().checkin("en").visible_items(set()):
        if item.kind in ("scale", "choice"):
            out.append(f"ci:a:{item.id}:{item.options[len(item.options) // 2 - 1].value}")
        elif item.kind == "multi":
            out.append(f"ci:t:{item.id}:{item.options[0].value}")
            out.append(f"ci:d:{item.id}")
        else:
            out.append(f"ci:skip:{item.id}")
    return out


async def full(fake: FakeProcess, users: list[int], db_url: str) -> tuple[float, int]:
    db = Database(db_url)
    await db.drop_all()
    await db.create_all()
    now = datetime.now(UTC)
    async with db.transaction() as s:
        for i, u in enumerate(users):
            s.add(Patient(
                telegram_id=u, code=f"P-{10000 + i}", first_name="Bench", status="active",
                language="en", timezone="America/New_York", checkin_time=dtime(20, 0),
                tips_enabled=False, mat=False, created_at=now, consent_version="bench", consented_at=now,
            ))
    settings = load_settings(
        _env_file=None, telegram_bot_token=fake.token, telegram_api_base_url=fake.base_url,
        database_url=db_url, sweep_interval_seconds=3600,
    )
    count = 0

    def on_processed(_: int) -> None:
        nonlocal count
        count += 1

    async def run_until(n: int) -> float:
        app = build_application(settings, db=Database(db_url), concurrent_updates=int(os.environ.get("BENCH_CONCURRENCY", "16")))
        runner = Runner(app)
        runner.hub.processed_hooks.append(on_processed)
        task = asyncio.create_task(runner.run(install_signals=False))
        await runner.started.wait()
        t0 = time.perf_counter()
        await wait_until(lambda: count >= n)
        elapsed = time.perf_counter() - t0
        runner.stop()
        await task
        return elapsed

    for u in users:
        await fake.ctl("send_text", user_id=u, text="/checkin")
    await run_until(len(users))
    ids: dict[int, int] = {}
    for u in users:
        last = await fake.ctl("last", chat_id=u)
        ids[u] = last["message_id"]
    steps = checkin_presses()
    presses = [(u, ids[u], data) for data in steps for u in users]
    await press_all(fake, presses)
    count = 0
    elapsed = await run_until(len(presses))
    errors = await fake.ctl("errors")
    await db.dispose()
    return len(presses) / elapsed, len(errors) if isinstance(errors, list) else int(errors or 0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="iop-bench-")
    db_url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
    steps = len(checkin_presses())
    async with FakeProcess() as fake:
        users = [(await fake.ctl("add_user", first_name=f"U{i}", started=True))["id"] for i in range(args.users)]
        bare_rate = await bare(fake, users, steps)
        full_rate, errors = await full(fake, users, db_url)
    print(f"database: {re.sub(r'//[^@/]*@', '//***@', db_url.split('?')[0])}")
    print(f"button presses: {args.users * steps} ({args.users} patients x {steps}-step check-in)")
    print(f"bare python-telegram-bot echo: {bare_rate:8.1f} updates/s")
    print(f"iop-bot full path:             {full_rate:8.1f} updates/s")
    print(f"ratio full/bare:               {full_rate / bare_rate:8.2f}")
    print(f"errors returned by the fake Bot API: {errors}")


if __name__ == "__main__":
    run_event_loop(main())  # the loop `iop-bot run` uses; both applications share it
