"""Secrets and hygiene (issue 12, items 13 and 14).

- The bot token never reaches the log or stderr: not through python-telegram-bot's InvalidToken
  text, an HTTP client's error naming the URL, a traceback, or `iop-bot`'s last words; Bot API
  calls follow no redirects (the URL holds the token). Checked on real `iop-bot run` processes.
- `.env` (token, encryption key) and the database's folder and file are private (600 / 700).
- Button data with numbers the bot never made is a stale button, not a traceback.
- A name with HTML in it is escaped once in the counselors' group post.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from telegram.error import InvalidToken, NetworkError

from bot.platform import migrate
from bot.platform.callbacks import callback_data_ok
from bot.platform.clock import FrozenClock
from bot.platform.config import ConfigError, load_settings
from bot.platform.db import Database
from bot.platform.http import AiohttpRequest
from bot.platform.keyboards import MAX_CALLBACK_NUMBER
from bot.platform.logs import MASK, RedactTokenFilter, redact
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness
from tests.platform.test_platform_faults import EXIT_TOKEN_REJECTED, TOKEN, BotProcess

REPO = Path(__file__).resolve().parents[2]
SECRET_PART = TOKEN.split(":")[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _no_token(text: str) -> None:
    assert TOKEN not in text and SECRET_PART not in text


# -- the token in real processes -------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
async def test_a_token_rejected_at_start_is_one_sentence_without_the_token(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN) as fake:
        fake.revoke_token()
        bot = await BotProcess(fake, tmp_path).start()
        try:
            assert await bot.exited(180) == EXIT_TOKEN_REJECTED
        finally:
            await bot.kill()
    lines = bot.stderr_lines()
    assert lines[-1].startswith("iop-bot stopped: Telegram rejected TELEGRAM_BOT_TOKEN")
    _no_token(bot.output())
    assert "Traceback" not in bot.output()
    # The database the process created on its way is private to its user (it ran with umask 022).
    assert _mode(tmp_path / "data") == 0o700
    assert _mode(tmp_path / "data" / "iop.db") == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
async def test_a_redirect_is_not_followed_and_the_token_is_not_printed(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN) as fake:
        fake.fail("getMe", "redirect", times=None)  # a redirect back to the same URL, token and all
        bot = await BotProcess(fake, tmp_path).start()
        try:
            assert await bot.exited(180) == 1
        finally:
            await bot.kill()
        assert sum(1 for c in fake.calls if c.method == "getMe") == 1  # not followed, not retried
    last = bot.stderr_lines()[-1]
    assert "redirect" in last and "TELEGRAM_API_BASE_URL" in last
    _no_token(bot.output())


# -- the token in exception text and log records ---------------------------------------------


def test_the_log_filter_masks_the_token_in_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactTokenFilter(TOKEN))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        try:
            raise InvalidToken(f"The token `{TOKEN}` was rejected by the server.")
        except InvalidToken:
            log.exception("start-up failed")
        try:
            raise RuntimeError(f"GET http://127.0.0.1/bot{TOKEN}/getMe failed")
        except RuntimeError as exc:
            log.error("call failed: %s", exc, exc_info=True)
        log.warning("url %s", f"/bot{TOKEN.replace(':', '%3A')}/getUpdates", stack_info=True)
        log.info("a token shaped like one: 123456789:AAE" + "x" * 30)
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    _no_token(out)
    assert "Traceback" in out and out.count(MASK) >= 5 and "AAExxx" not in out


def test_redact_masks_only_the_token() -> None:
    assert redact(f"https://api.telegram.org/bot{TOKEN}/getMe", TOKEN) == f"https://api.telegram.org/bot{MASK}/getMe"
    assert redact("update 12345 failed (TimedOut)") == "update 12345 failed (TimedOut)"


@pytest.mark.parametrize("base", ["http//example.org/bot", "http://exa mple.org:99999/bot"])
async def test_an_http_client_error_never_quotes_the_token(base: str) -> None:
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as caught:
            await request.do_request(f"{base}{TOKEN}/getMe", "POST")
    finally:
        await request.shutdown()
    _no_token(str(caught.value))
    assert caught.value.__cause__ is None or TOKEN not in str(caught.value.__cause__)


@pytest.mark.parametrize("base", ["api.telegram.org/bot", "http//api.telegram.org/bot", "ftp://api.telegram.org/bot"])
def test_a_bot_api_url_that_is_not_http_is_a_configuration_error(base: str) -> None:
    """Caught at start, in one sentence, rather than as an HTTP client's error quoting the URL."""
    with pytest.raises(ConfigError, match="^TELEGRAM_API_BASE_URL is not valid"):
        load_settings(_env_file=None, telegram_api_base_url=base)


# -- files -----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_run_sh_creates_env_readable_by_its_owner_only_and_runs_the_bot_with_a_private_umask(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "run.sh", tmp_path / "run.sh")
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    (tmp_path / "scripts" / "venv.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    # Stands in for the bot: records the umask it was started with, and makes data/ as the bot would.
    (venv_bin / "iop-bot").write_text('#!/usr/bin/env bash\numask > started-umask\nmkdir -p data\n')
    for script in (tmp_path / "run.sh", tmp_path / "scripts" / "venv.sh", venv_bin / "iop-bot"):
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_KEY"}
    subprocess.run(["bash", "run.sh"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60, umask=0o022)
    dotenv = tmp_path / ".env"
    assert _mode(dotenv) == 0o600
    assert any(line.startswith("ENCRYPTION_KEY=") and len(line) > 20 for line in dotenv.read_text().splitlines())
    assert (tmp_path / "started-umask").read_text().strip() == "0077"
    assert _mode(tmp_path / "data") == 0o700


def test_the_database_folder_and_file_are_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/var/data/iop.db")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "var" / "data") == 0o700
    assert _mode(tmp_path / "var" / "data" / "iop.db") == 0o600


# -- button data -----------------------------------------------------------------------------

BIG = "9" * 25


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        ("fl:claim:12", True),
        ("ob:tm:0900", True),
        (f"fl:claim:{MAX_CALLBACK_NUMBER}", True),
        (f"fl:claim:{MAX_CALLBACK_NUMBER + 1}", False),
        (f"sf:fu:{BIG}:ok", False),
        (f"pl:e:-{BIG}", False),
        ("ci:ms:٣", False),  # a digit, but not one the bot writes
        ("x" * 65, False),
        (None, False),
    ],
)
def test_callback_data_is_checked_before_parsing(data: str | None, ok: bool) -> None:
    assert callback_data_ok(data) is ok


async def test_buttons_with_numbers_the_bot_never_made_are_stale_not_tracebacks(
    h: BotHarness, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    expired = h.hub.content.t("common.button_expired", "en")
    u = fake.add_user(first_name="Lee", started=True)
    await h.send(u, "/help")
    await h.send(h.admin, "/help")
    counselor = fake.add_user(first_name="Cory", started=True)
    await h.push(fake.join(h.group, counselor))
    await h.send(counselor, "/flags", chat=h.group)
    where = ((u, fake.last(u.id)), (h.admin, fake.last(h.admin.id)), (counselor, fake.last(h.group.id)))
    # One per handler that parses a number out of its buttons.
    for data in (
        f"fl:claim:{BIG}", f"fl:details:{BIG}", f"fl:end:{BIG}", f"sf:y:{BIG}", f"sf:fu:{BIG}:ok",
        f"pl:e:{BIG}", f"pl:dy:{BIG}", f"inv:rev:{BIG}", f"sos:f:{BIG}:3", f"ci:ms:{BIG}:y", f"as:cancel:{BIG}",
    ):
        for user, message in where:
            qid = await h.press(user, message, data)
            assert (fake.callback_answer(qid) or {}).get("text") == expired, data
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- HTML ------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 7, 8, 0, tzinfo=UTC))


@pytest.mark.usefixtures("stub_detector")
async def test_a_name_with_html_is_escaped_once_in_the_group_post(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code="P-1234", first_name="Jordan")
    name = "<b>Al & Co</b>"
    counselor = fake.add_user(first_name=name, started=True)
    await h.push(fake.join(h.group, counselor))
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = post.callback_data[0].split(":")[2]
    await h.press(counselor, post, f"fl:claim:{fid}")
    text = fake.sent_message(h.group.id, post.message_id).plain_text or ""
    assert f"Claimed by {name}" in text
    fake.assert_no_errors()
