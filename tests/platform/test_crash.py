"""SIGKILL in the middle of a handler: after a restart the update is handled exactly once.

The bot runs as a real process (`iop-bot run`) against the fake Bot API in this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.platform.db import Database
from bot.platform.models import InboxUpdate
from fakeapi import FakeTelegram
from tests import escalation_support as sup

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


async def _spawn(fake: FakeTelegram, url: str, tmp: Path, group: int = -1001234567890) -> asyncio.subprocess.Process:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_", "WEBHOOK_"))
    }
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.base_url,
        DATABASE_URL=url,
        COUNSELOR_CHAT_ID=str(group),
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


async def _inbox_done(url: str, update_id: int) -> bool:
    db = Database(url)
    try:
        async with db.session() as s:
            row = await s.get(InboxUpdate, update_id)
            return row is not None and row.status == "done"
    finally:
        await db.dispose()


async def test_sigkill_after_a_crisis_reply_then_restart_does_not_send_it_again(tmp_path: Path, db_url: str):
    """"Yes" to the safety question: the crisis reply goes straight to Telegram, the answer and the
    flag are recorded, and the process is killed before the update is marked done (while it takes
    the question's buttons away). The restarted process handles the update again: the crisis reply
    and the group's post are not sent a second time."""
    url = db_url
    async with FakeTelegram() as fake:
        u = fake.add_user(first_name="Jordan", started=True)
        group = fake.add_group("Counselors").id
        proc = await _spawn(fake, url, tmp_path, group)
        try:
            await fake.wait_for(lambda: any(c.method == "getUpdates" for c in fake.calls), timeout=60)
            db = Database(url)
            try:
                await sup.add_patient(db, datetime.now(UTC), telegram_id=u.id)
            finally:
                await db.dispose()
            fake.send_text(u, "I don't want to wake up")
            question = await fake.wait_for_message(u.id, lambda m: any(d.startswith("sf:y:") for d in m.callback_data), timeout=120)
            fake.hold("editMessageReplyMarkup", chat_id=u.id)
            fake.press_button(u, question, "Yes")
            pressed = fake.updates[-1].update_id
            await fake.wait_held(timeout=30)  # replied and recorded; the buttons are being taken away
            proc.kill()  # SIGKILL
            await proc.wait()
            fake.release()
            crisis = [m for m in fake.sent(u.id) if "988lifeline.org" in (m.plain_text or "")]
            assert len(crisis) == 1
            assert not await _inbox_done(url, pressed)

            proc = await _spawn(fake, url, tmp_path, group)
            for _ in range(600):
                if await _inbox_done(url, pressed):
                    break
                await asyncio.sleep(0.1)
            assert await _inbox_done(url, pressed)
            # The flag's post (from the outbox) went out before the kill or goes out now: once.
            await fake.wait_for(lambda: len(fake.sent(group)) >= 1, timeout=30)
            asked = fake.send_text(u, "/help")  # answered once the new process is past the redelivered update
            await fake.wait_for_message(u.id, after=asked, timeout=30)
            await fake.wait_idle(timeout=30)
            crisis = [m for m in fake.sent(u.id) if "988lifeline.org" in (m.plain_text or "")]
            assert len(crisis) == 1, "the crisis reply went out twice"
            assert len(fake.sent(group)) == 1

            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log = (tmp_path / "bot.log").read_text()
    assert fake.token not in log and "Jordan" not in log


def _crisis_replies(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.plain_text for m in fake.sent(chat_id) if "988lifeline.org" in (m.plain_text or "")]


async def test_sigkill_after_a_typed_crisis_reply_then_restart_sends_it_once_and_posts_the_flag(
    tmp_path: Path, db_url: str
):
    """Words of a crisis: the reply with 988 goes straight to Telegram, and the process is killed
    at the next call it makes to Telegram (the line about the care team, from the outbox). The
    restarted process handles the text again: the crisis reply does not come a second time, the
    line about the care team comes (the dead process's outbox rows are taken over one lease
    later), and the counselors' group gets the flag once."""
    url = db_url
    async with FakeTelegram() as fake:
        u = fake.add_user(first_name="Jordan", started=True)
        group = fake.add_group("Counselors").id
        proc = await _spawn(fake, url, tmp_path, group)
        try:
            await fake.wait_for(lambda: any(c.method == "getUpdates" for c in fake.calls), timeout=60)
            db = Database(url)
            try:
                await sup.add_patient(db, datetime.now(UTC), telegram_id=u.id)
            finally:
                await db.dispose()
            # Every call after the crisis reply is held, whatever it is (polling goes on).
            fake.hold(None, predicate=lambda method, _: method != "getUpdates" and bool(_crisis_replies(fake, u.id)))
            typed = fake.send_text(u, "I have a rope and I am going to hang myself")
            await fake.wait_held(timeout=120)  # the line about the care team, from the outbox
            proc.kill()  # SIGKILL
            await proc.wait()
            fake.release()
            assert len(_crisis_replies(fake, u.id)) == 1

            proc = await _spawn(fake, url, tmp_path, group)
            for _ in range(600):
                if await _inbox_done(url, typed.update_id):
                    break
                await asyncio.sleep(0.1)
            assert await _inbox_done(url, typed.update_id)
            await fake.wait_for(lambda: len(fake.sent(group)) >= 1, timeout=60)
            await fake.wait_for_message(u.id, lambda m: "care team" in (m.plain_text or ""), timeout=60)
            asked = fake.send_text(u, "/help")  # answered once the new process is past the redelivered update
            await fake.wait_for_message(u.id, after=asked, timeout=30)
            await fake.wait_idle(timeout=30)
            assert len(_crisis_replies(fake, u.id)) == 1, "the crisis reply went out twice"
            assert len(fake.sent(group)) == 1

            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log = (tmp_path / "bot.log").read_text()
    assert fake.token not in log and "Jordan" not in log
