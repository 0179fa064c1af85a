"""SIGKILL in the middle of a handler: after a restart the update is handled exactly once.

The bot runs as a real process (`iop-bot run`) against the fake Bot API in this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from fakeapi import FakeTelegram

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


async def _spawn(fake: FakeTelegram, url: str, tmp: Path) -> asyncio.subprocess.Process:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_", "WEBHOOK_"))
    }
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.base_url,
        DATABASE_URL=url,
        COUNSELOR_CHAT_ID="-1001234567890",
        SWEEP_INTERVAL_SECONDS="3600",
        LOG_LEVEL="INFO",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run",
        cwd=tmp, env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=open(tmp / "bot.log", "ab"),  # noqa: ASYNC230, SIM115 (handed to the child)
    )


async def test_sigkill_mid_handler_then_restart_handles_the_update_once(tmp_path: Path, db_url: str):
    url = db_url
    async with FakeTelegram() as fake:
        u = fake.add_user(first_name="Casey")
        proc = await _spawn(fake, url, tmp_path)
        try:
            await fake.wait_for(lambda: any(c.method == "getUpdates" for c in fake.calls), timeout=60)
            fake.hold("sendMessage", chat_id=u.id)
            fake.send_text(u, "/help")
            await fake.wait_held(timeout=30)  # the handler is now in progress, waiting on Telegram
            proc.kill()  # SIGKILL
            await proc.wait()
            fake.release()
            assert [m for m in fake.sent(u.id)] == []

            proc = await _spawn(fake, url, tmp_path)
            reply = await fake.wait_for_message(u.id, timeout=60)
            assert "invite link" in reply.plain_text
            # Let the new process go past the redelivered update, then prove nothing else came.
            fake.send_text(u, "/nonsense")
            await fake.wait_for(lambda: len(fake.sent(u.id)) >= 2, timeout=30)
            await fake.wait_idle(timeout=30)
            texts = [m.plain_text for m in fake.sent(u.id)]
            assert len(texts) == 2 and "invite link" in texts[0] and "/help" in texts[1]

            proc.send_signal(signal.SIGTERM)  # a clean stop
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log = (tmp_path / "bot.log").read_text()
    assert fake.token not in log and "Casey" not in log
