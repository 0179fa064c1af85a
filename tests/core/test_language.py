"""The language a person is spoken to in: one resolver (bot/core/language.py), resolved once per
update into `ctx.lang`, and `Content.t` that must be told the language.

End to end with a second language made for the test (`xx`: every English message prefixed
"[xx] "): a stranger, a patient and staff whose Telegram speaks xx are answered in xx by every
command the bot offers them (the command lists in handlers/__init__.py), through onboarding, a
check-in, /sos and a crisis reply.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from telegram.ext import CommandHandler

import handlers
from bot.core.language import Languages, pick
from bot.core.models import Patient
from bot.platform.clock import FrozenClock
from bot.platform.config import REPO_ROOT
from bot.platform.content import Content, get_content
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.checkins_support import make_patient
from tests.harness import ADMIN_ID, BotHarness
from tests.onboarding_support import enrol, make_invite

XX = "[xx] "
# Values under these keys are data (time formats, the offered times), not sentences.
DATA_KEYS = ("formats", "onboarding_data")


def _prefixed(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _prefixed(v) for k, v in node.items()}
    if isinstance(node, str):
        return XX + node
    return node  # lists (word lists, times) and numbers stay as they are


def make_xx(root: Path) -> Path:
    """A copy of content/ with a language `xx`: English's files, every message prefixed "[xx] "."""
    content = root / "content"
    shutil.copytree(REPO_ROOT / "content", content)
    shutil.copytree(content / "en", content / "xx")
    for f in (content / "xx" / "messages").glob("*.yaml"):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        out = {k: (v if k in DATA_KEYS else _prefixed(v)) for k, v in data.items()}
        f.write_text(yaml.safe_dump(out, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return content


@pytest.fixture(scope="module")
def xx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_xx(tmp_path_factory.mktemp("xx"))


@pytest.fixture
async def hx(fake: FakeTelegram, db: Database, clock: FrozenClock, xx_dir: Path) -> AsyncIterator[BotHarness]:
    """The bot on the content with xx; the admin's Telegram speaks xx."""
    harness = BotHarness(fake, db, clock, content_dir=xx_dir)
    harness.admin.language_code = "xx"
    harness.group.members[ADMIN_ID] = "creator"
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def _words(m: Any) -> str:
    return m.plain_text or ""


def said_since(fake: FakeTelegram, chat_id: int, before: int) -> list[str]:
    """What the bot sent (or edited) in `chat_id` since `before` (fake.sent's length then)."""
    return [_words(m) for m in fake.sent(chat_id)[before:] if _words(m)]


def assert_xx(texts: list[str], what: str) -> None:
    assert texts, f"{what}: no reply"
    for t in texts:
        assert XX.strip() in t, f"{what}: not in xx: {t[:200]!r}"


# -- the resolver ---------------------------------------------------------------------------------


LANGS = ["en", "es", "xx"]


def test_the_stored_language_comes_first() -> None:
    assert pick("es", "xx", LANGS, "en") == "es"


def test_before_one_is_stored_telegrams_language_if_content_has_it() -> None:
    assert pick(None, "xx", LANGS, "en") == "xx"
    assert pick(None, "es-MX", LANGS, "en") == "es"  # a region is the language's
    assert pick("", "ES", LANGS, "en") == "es"


def test_else_the_clinics_language() -> None:
    assert pick(None, "fr", LANGS, "es") == "es"
    assert pick(None, None, LANGS, "es") == "es"
    assert pick(None, "", LANGS, "en") == "en"


async def test_stored_languages_are_read_once_and_again_after_forget(db: Database, clock: FrozenClock) -> None:
    p = await make_patient(db, clock.now())
    langs = Languages(db, LANGS, "en")
    reads: list[str] = []
    session = db.session

    def counting() -> Any:
        reads.append("read")
        return session()

    db.session = counting  # type: ignore[method-assign]
    try:
        assert await langs.of(p.telegram_id, "xx") == "en"  # stored "en" wins over Telegram's xx
        assert await langs.of(p.telegram_id, "xx") == "en"
        assert len(reads) == 1
        async with db.transaction() as s:
            (await s.execute(select(Patient).where(Patient.id == p.id))).scalar_one().language = "es"
        assert await langs.of(p.telegram_id, None) == "en"  # kept until told
        langs.forget(p.telegram_id)
        assert await langs.of(p.telegram_id, None) == "es"
        assert len(reads) == 2
        assert await langs.of(123456789, "xx") == "xx"  # a stranger: Telegram's
        assert await langs.of(None, "xx") == "en"  # no one: the clinic's
    finally:
        db.session = session  # type: ignore[method-assign]
    assert langs.known(p.telegram_id, "xx") == "es"  # without the database


async def test_a_database_that_cannot_be_read_falls_back_without_keeping_it(db: Database, clock: FrozenClock) -> None:
    p = await make_patient(db, clock.now())
    langs = Languages(db, LANGS, "en")

    def broken() -> Any:
        raise OSError("no database")

    session = db.session
    db.session = broken  # type: ignore[method-assign]
    try:
        assert await langs.of(p.telegram_id, "xx") == "xx"
    finally:
        db.session = session  # type: ignore[method-assign]
    assert await langs.of(p.telegram_id, "xx") == "en"  # read now that it can be


# -- t() must be told the language ------------------------------------------------------------------


def test_a_lookup_without_a_language_is_a_type_error() -> None:
    c = get_content()
    for call in (lambda: c.t("common.error"), lambda: c.has("common.error"), lambda: c.raw("common.error")):  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError):
        c.data("consent.yaml")  # type: ignore[call-arg]


def test_a_key_a_language_lacks_is_englishs(xx_dir: Path) -> None:
    c = Content(xx_dir)
    assert c.t("common.error", "xx").startswith(XX)
    assert c.t("common.error", "zz") == c.t("common.error", "en")


# -- end to end in xx ---------------------------------------------------------------------------------


def every_command(app: Any) -> list[str]:
    """Every command the bot answers (its registered handlers), the menus' first: a command added
    later is tested here without anyone listing it."""
    registered: set[str] = set()
    for group in app.handlers.values():
        for handler in group:
            if isinstance(handler, CommandHandler):
                registered |= set(handler.commands)
    menus = [*handlers.PATIENT_COMMANDS, *handlers.GROUP_COMMANDS, *handlers.COUNSELOR_COMMANDS,
             *handlers.FACILITATOR_COMMANDS, *handlers.ADMIN_COMMANDS]
    assert set(menus) <= registered, set(menus) - registered  # every command a menu offers is answered
    ordered = list(dict.fromkeys([*menus, *sorted(registered)]))
    # /delete last: it asks, and the patient keeps their data (the test goes on).
    return [c for c in ordered if c != "delete"] + ["delete"]


async def test_a_stranger_is_answered_and_onboarded_in_their_telegram_language(hx: BotHarness, fake: FakeTelegram, db: Database) -> None:
    stranger = fake.add_user(first_name="Xo", language_code="xx", started=True)
    for command in every_command(hx.app):
        before = len(fake.sent(stranger.id))
        await hx.send(stranger, f"/{command}")
        assert_xx(said_since(fake, stranger.id, before), f"a stranger's /{command}")
    code = await make_invite(hx, fake)
    before = len(fake.sent(stranger.id))
    await enrol(hx, fake, stranger, code)
    assert_xx(said_since(fake, stranger.id, before), "onboarding")
    async with db.session() as s:
        stored = (await s.execute(select(Patient.language).where(Patient.telegram_id == stranger.id))).scalar_one()
    assert stored == "xx"
    fake.assert_no_errors()


async def test_every_patient_command_a_checkin_and_the_crisis_reply_are_in_the_patients_language(
    hx: BotHarness, fake: FakeTelegram, db: Database
) -> None:
    # Telegram says English, the patient chose xx: the stored language wins.
    u = fake.add_user(first_name="Xi", language_code="en", started=True)
    await enrol(hx, fake, u, await make_invite(hx, fake))
    async with db.transaction() as s:
        (await s.execute(select(Patient).where(Patient.telegram_id == u.id))).scalar_one().language = "xx"
    hx.hub.languages.forget(u.id)
    for command in every_command(hx.app):
        before = len(fake.sent(u.id))
        await hx.send(u, f"/{command}")
        assert_xx(said_since(fake, u.id, before), f"/{command}")
        if command == "checkin":
            # A check-in by its buttons: each question is edited in, in xx.
            for _ in range(3):
                msg = fake.last(u.id)
                data = next(d for d in msg.callback_data if d.startswith("ci:a:"))
                await hx.press(u, msg, data)
                assert_xx([_words(fake.last(u.id))], f"check-in after {data}")
    before = len(fake.sent(u.id))
    await hx.send(u, "I am going to kill myself tonight")
    assert_xx(said_since(fake, u.id, before), "the crisis reply")
    fake.assert_no_errors()


async def test_settings_answer_in_the_language_just_chosen(hx: BotHarness, fake: FakeTelegram) -> None:
    u = fake.add_user(first_name="Xe", language_code="en", started=True)
    await enrol(hx, fake, u, await make_invite(hx, fake))
    await hx.send(u, "/settings")
    await hx.press(u, fake.last(u.id), "st:lang")
    before = len(fake.sent(u.id))
    await hx.press(u, fake.last(u.id), "st:lang:xx")
    assert _words(fake.last(u.id)).startswith(XX), _words(fake.last(u.id))
    await hx.send(u, "/help")
    assert_xx(said_since(fake, u.id, before), "after choosing xx")


async def test_staff_commands_answer_in_the_staff_members_telegram_language(hx: BotHarness, fake: FakeTelegram) -> None:
    counselor = fake.add_user(first_name="Xa", language_code="xx", started=True)
    hx.group.members[counselor.id] = "member"
    await hx.send(hx.admin, f"/grant {counselor.id} counselor")
    for who in (counselor, hx.admin):
        for command in every_command(hx.app):
            before = len(fake.sent(who.id))
            await hx.send(who, f"/{command}")
            assert_xx(said_since(fake, who.id, before), f"staff /{command}")
    for command in handlers.GROUP_COMMANDS:
        before = len(fake.sent(hx.group.id))
        await hx.send(counselor, f"/{command}", chat=hx.group)
        assert_xx(said_since(fake, hx.group.id, before), f"/{command} in the counselors' group")
    fake.assert_no_errors()
