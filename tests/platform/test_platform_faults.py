"""The bot never goes deaf without saying so (issue 12, items 2, 3 and 9).

- Polling survives 409 Conflict (retried with backoff, one clear log line) and stops the process
  with exit status 3 and one sentence when Telegram rejects the token (401); SIGTERM stops it
  cleanly at any time. These drills run a real `iop-bot run` process against the fake Bot API.
- A stored update that cannot be read is set aside at start, with its attempt counted; an
  error during start-up is raised as it was, never hidden behind "still running".
- Webhook mode needs a secret, registers itself with it, and answers a body that is not an
  update with 400, never storing it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Text, insert, literal, select

from bot import app as app_module
from bot.platform import content
from bot.platform.clock import FrozenClock
from bot.platform.config import ConfigError, TokenRejected, load_settings
from bot.platform.db import Database
from bot.platform.inbox import MAX_ATTEMPTS
from bot.platform.models import InboxUpdate
from bot.platform.transport import ALLOWED_UPDATES
from fakeapi import FakeTelegram
from tests.harness import BotHarness

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Shaped like a real token, so that the log scan means something.
TOKEN = "7012345678:AAHk3vQy7Yp2XoLmN9sT4uVwZ1aB2cD3eFg"
EXIT_TOKEN_REJECTED = 3
REPO_CONTENT = content.DEFAULT_CONTENT_DIR


# -- a real process --------------------------------------------------------------------------


class BotProcess:
    """`iop-bot run` as a child process, its stdout and stderr in files."""

    def __init__(self, fake: FakeTelegram, tmp: Path, **env: str) -> None:
        self.fake = fake
        self.tmp = tmp
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> BotProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_", "WEBHOOK_", "ENCRYPTION_"))}
        env.update(
            TELEGRAM_BOT_TOKEN=self.fake.token,
            TELEGRAM_API_BASE_URL=self.fake.base_url,
            DATABASE_URL=f"sqlite+aiosqlite:///{self.tmp}/data/iop.db",
            COUNSELOR_CHAT_ID="-1001234567890",
            SWEEP_INTERVAL_SECONDS="3600",
            LOG_LEVEL="INFO",
        )
        env.update(self.env)
        with open(self.tmp / "stdout.log", "ab") as out, open(self.tmp / "stderr.log", "ab") as err:  # noqa: ASYNC230
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "run", cwd=self.tmp, env=env, stdout=out, stderr=err, umask=0o022
            )
        return self

    async def exited(self, timeout: float) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def output(self) -> str:
        return (self.tmp / "stdout.log").read_text() + (self.tmp / "stderr.log").read_text()

    def stderr_lines(self) -> list[str]:
        return [line for line in (self.tmp / "stderr.log").read_text().splitlines() if line.strip()]

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _polls(fake: FakeTelegram) -> int:
    return sum(1 for c in fake.calls if c.method == "getUpdates")


def _conflicts(fake: FakeTelegram) -> int:
    return sum(1 for e in fake.errors if e.method == "getUpdates" and e.status == 409)


async def _answered(fake: FakeTelegram, user: Any, text: str = "/help") -> None:
    after = fake.mark()
    fake.send_text(user, text)
    reply = await fake.wait_for_message(user.id, after=after, timeout=30)
    assert "invite link" in (reply.plain_text or "")


async def _compete_for_updates(fake: FakeTelegram) -> None:
    """Another instance with the same token polls once: the bot's long poll ends with 409."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}{fake.token}/getUpdates", data={"timeout": "0"}) as res:
            assert res.status == 200


def _assert_clean(output: str) -> None:
    assert TOKEN not in output and TOKEN.split(":")[1] not in output
    assert "still running" not in output
    assert "Traceback" not in output


async def test_a_409_conflict_is_retried_and_polling_recovers_then_sigterm_stops_cleanly(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN) as fake:
        u = fake.add_user(first_name="Casey")
        bot = await BotProcess(fake, tmp_path).start()
        try:
            await fake.wait_for(lambda: _polls(fake) >= 1, timeout=180, description="the first poll")
            await _answered(fake, u)

            # Another instance polls (a real 409 for the bot's long poll), then two more conflicts.
            await _compete_for_updates(fake)
            fake.fail("getUpdates", "409", times=2)
            await fake.wait_for(lambda: _conflicts(fake) >= 3, timeout=30, description="three conflicts")
            await _answered(fake, u)  # polling came back by itself
            assert "another instance is polling with this token or a webhook is set" in bot.output()
            assert "terminated by other getUpdates request" in bot.output()  # Telegram's own words

            # A conflict that does not end: the process keeps saying so, and SIGTERM still stops it.
            await _compete_for_updates(fake)
            fake.fail("getUpdates", "409", times=None)
            seen = _conflicts(fake)
            await fake.wait_for(lambda: _conflicts(fake) > seen, timeout=30, description="a conflict in backoff")
            assert bot.proc is not None
            bot.proc.send_signal(signal.SIGTERM)
            assert await bot.exited(30) == 0
        finally:
            await bot.kill()
        _assert_clean(bot.output())


async def test_a_token_revoked_while_polling_stops_the_process_with_one_sentence(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN) as fake:
        u = fake.add_user(first_name="Robin")
        bot = await BotProcess(fake, tmp_path).start()
        try:
            await fake.wait_for(lambda: _polls(fake) >= 1, timeout=180, description="the first poll")
            await _answered(fake, u)
            fake.revoke_token()
            assert await bot.exited(30) == EXIT_TOKEN_REJECTED
        finally:
            await bot.kill()
        last = bot.stderr_lines()[-1]
        assert last.startswith("iop-bot stopped: Telegram rejected TELEGRAM_BOT_TOKEN")
        assert "@BotFather" in last
        _assert_clean(bot.output())


# -- the content check at a first start -------------------------------------------------------


async def test_a_first_start_answers_before_its_risk_rules_are_checked_and_records_the_check_after(
    fake: FakeTelegram, db: Database
) -> None:
    """At a first start (new content or code) the risk rules are checked by building the
    detector, in the background while the bot answers; the check is recorded once it passed."""
    hold = threading.Event()
    recorded = threading.Event()
    h = BotHarness(fake, db)
    await h.start(detector_hold=hold, content_checked=recorded.set)
    try:
        u = fake.add_user(first_name="Early")
        await h.send(u, "/help")
        assert "invite link" in fake.last(u.id).plain_text
        assert not recorded.is_set()
        hold.set()
        assert await asyncio.to_thread(recorded.wait, 60)
    finally:
        hold.set()
        await h.stop()


def _content_copy(tmp: Path) -> Path:
    root = tmp / "content"
    shutil.copytree(REPO_CONTENT, root)
    return root


async def test_broken_risk_rules_stop_a_first_start_with_their_file_and_line(tmp_path: Path) -> None:
    root = _content_copy(tmp_path)
    rules = root / "risk" / "en.yaml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(text.replace("  self: 'myself|", "  self: '(myself|", 1), encoding="utf-8")
    async with FakeTelegram(token=TOKEN) as fake:
        bot = await BotProcess(fake, tmp_path, CONTENT_DIR=str(root)).start()
        try:
            assert await bot.exited(300) == 1
        finally:
            await bot.kill()
    last = bot.stderr_lines()
    assert any("invalid risk content" in ln for ln in last)
    # Each rule that uses the broken word list is named with its file and line.
    assert any(re.search(r"risk/en\.yaml:\d+: rule \w+: bad pattern", ln) for ln in last), last[-5:]
    assert not (tmp_path / "data" / content.CHECKED_FILE).exists()
    _assert_clean(bot.output())


async def test_other_content_problems_stop_a_first_start_before_it_receives(tmp_path: Path) -> None:
    root = _content_copy(tmp_path)
    (root / "en" / "messages" / "broken.yaml").write_text("oops: [unclosed\n", encoding="utf-8")
    async with FakeTelegram(token=TOKEN) as fake:
        bot = await BotProcess(fake, tmp_path, CONTENT_DIR=str(root)).start()
        try:
            assert await bot.exited(120) == 1
        finally:
            await bot.kill()
        assert _polls(fake) == 0
    assert bot.stderr_lines()[-1].startswith("content/ has 1 problem(s)")
    assert not (tmp_path / "data" / content.CHECKED_FILE).exists()


# -- poison updates at start -----------------------------------------------------------------


def _help_update(update_id: int, user_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": user_id, "type": "private", "first_name": "Poe"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Poe"},
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }


async def _store_raw(db: Database, clock: FrozenClock, update_id: int, raw: str, attempts: int = 1) -> None:
    """An inbox row exactly as given (bypassing the inbox's own encoding)."""
    async with db.transaction() as s:
        await s.execute(
            insert(InboxUpdate.__table__).values(
                update_id=update_id,
                payload=literal(raw, Text),
                status="pending",
                attempts=attempts,
                received_at=clock.now(),
            )
        )


async def _rows(db: Database) -> dict[int, tuple[str, int, bool]]:
    async with db.session() as s:
        rows = (await s.execute(select(InboxUpdate.update_id, InboxUpdate.status, InboxUpdate.attempts, InboxUpdate.payload.is_(None)))).all()
    return {uid: (status, attempts, cleared) for uid, status, attempts, cleared in rows}


async def test_a_poison_row_is_set_aside_with_its_attempt_counted_and_the_bot_starts(
    fake: FakeTelegram, db: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    u = fake.add_user(first_name="Poe", started=True)
    truncated = json.dumps(_help_update(4001, u.id))[:45]
    await _store_raw(db, clock, 4001, truncated)
    await _store_raw(db, clock, 4002, json.dumps({"update_id": 4002, "message": "string"}))
    await _store_raw(db, clock, 4003, json.dumps(_help_update(4003, u.id)))
    await _store_raw(db, clock, 4004, json.dumps(_help_update(4004, u.id)), attempts=MAX_ATTEMPTS)
    await _store_raw(db, clock, 4005, json.dumps({"update_id": 9999, "message": "another id"}))
    caplog.set_level(logging.INFO)
    h = BotHarness(fake, db, clock)
    await h.start()
    try:
        await h.handled(4003)
        assert "invite link" in (fake.last(u.id).plain_text or "")
        assert len(fake.sent(u.id)) == 1  # the row tried too often is not handled again
    finally:
        await h.stop()
    rows = await _rows(db)
    assert rows[4003] == ("done", 2, True)
    for bad in (4001, 4002, 4005):
        assert rows[bad] == ("failed", 2, True), bad  # the attempt counted, the content gone
    assert rows[4004] == ("failed", MAX_ATTEMPTS + 1, True)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "bot.platform.inbox")
    for bad in (4001, 4002, 4005):
        assert f"stored update {bad} cannot be read" in logged
    assert "string" not in logged and "Poe" not in logged and "message_id" not in logged
    # The next start is an ordinary one.
    await h.start()
    await h.stop()


async def test_an_error_during_start_up_is_raised_as_it_was(
    fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Boom(Exception):
        pass

    async def failing_start(app: Any) -> None:
        raise Boom("the original error")

    monkeypatch.setattr(app_module, "start_services", failing_start)
    h = BotHarness(fake, db, clock)
    with pytest.raises(Boom, match="the original error"):
        await h.start()
    assert h.runner is not None and not h.runner.app.running


async def test_a_stop_asked_for_while_starting_ends_the_run_at_once(fake: FakeTelegram, db: Database, clock: FrozenClock) -> None:
    """SIGTERM while Telegram is slow to answer at start: the run ends now, cleanly."""
    fake.hold("getMe")
    h = BotHarness(fake, db, clock)
    runner = app_module.Runner(app_module.build_application(h.settings, db=Database(db.url), clock=clock))
    task = asyncio.create_task(runner.run(install_signals=False))
    await fake.wait_held(timeout=30)
    runner.stop()  # what the SIGTERM handler does
    await asyncio.wait_for(task, 10)  # no exception, and not after start-up's retries
    assert not runner.started.is_set() and not runner.app.running
    fake.release()


# -- webhook ---------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _post_raw(url: str, body: object, secret: str) -> int:
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
    async with aiohttp.ClientSession() as http, http.post(url, data=data, headers=headers) as res:
        return res.status


async def test_webhook_mode_refuses_to_start_without_a_secret(fake: FakeTelegram, db: Database) -> None:
    port = _free_port()
    h = BotHarness(fake, db, webhook_url=f"http://127.0.0.1:{port}/telegram", webhook_port=port)
    with pytest.raises(ConfigError, match="^WEBHOOK_SECRET is not set"):
        await h.start()
    assert fake.webhook is None and not any(c.method == "getMe" for c in fake.calls)


@pytest.mark.parametrize("secret", ["has space", "semi;colon", "x" * 257, "ünïcode", "trailing-newline\n"])
def test_a_webhook_secret_telegram_would_refuse_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ConfigError, match="^WEBHOOK_SECRET is not valid"):
        load_settings(_env_file=None, webhook_secret=secret)


async def test_the_webhook_is_registered_with_its_secret_and_refuses_what_is_not_an_update(
    fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    secret = "s3cret-Token_1"
    h = BotHarness(fake, db, clock, webhook_url=url, webhook_secret=secret, webhook_port=port)
    await h.start()
    try:
        assert fake.webhook == {"url": url, "secret_token": secret, "max_connections": 40}
        assert fake.allowed_updates == ALLOWED_UPDATES
        assert {"message", "edited_message", "callback_query", "my_chat_member", "chat_member"} <= set(ALLOWED_UPDATES)
        assert await fake.post_webhook(url, _help_update(5001, 42)) == 403  # no secret
        for body in ({"message": "string"}, {"update_id": 5002, "message": "string"}, {"update_id": "5003"}, [1, 2], "{"):
            assert await _post_raw(url, body, secret) == 400, body
    finally:
        await h.stop()
    assert set(await _rows(db)) == set()  # nothing was stored
    await h.start()  # and the next start is an ordinary one
    try:
        u = fake.add_user(first_name="Hook", started=True)
        assert await fake.post_webhook(url, _help_update(5004, u.id), secret_token=secret) == 200
        await h.handled(5004)
        assert "invite link" in (fake.last(u.id).plain_text or "")
    finally:
        await h.stop()


async def test_webhook_mode_sets_its_webhook_again_and_stops_when_the_token_is_rejected(
    fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    """A webhook hears nothing once Telegram stops sending: the bot asks, and acts."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    h = BotHarness(fake, db, clock, webhook_url=url, webhook_secret="s3cret", webhook_port=port, webhook_check_seconds=0.05)
    await h.start()
    assert h._task is not None
    try:
        fake.webhook = None  # removed by someone else
        await fake.wait_for(lambda: fake.webhook is not None, timeout=10, description="the webhook set again")
        assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret"
        fake.revoke_token()
        with pytest.raises(TokenRejected):
            await asyncio.wait_for(h._task, 10)
        assert not h.runner.app.running  # type: ignore[union-attr]
    finally:
        if not h._task.done():
            await h.stop()
