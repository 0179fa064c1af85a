"""Every staff command answers a bad or missing argument with a clear usage line naming the
command: never a traceback, never a half-made result (an invite without a cohort above all)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.enrolment.models import Invite
from bot.platform.db import Database
from fakeapi import FakeTelegram
from handlers import ADMIN_COMMANDS, COUNSELOR_COMMANDS, GROUP_COMMANDS
from tests.harness import BotHarness

# Bad or missing arguments for each staff command; every command of the staff lists has cases.
BAD: dict[str, list[str]] = {
    "flags": ["12", "all now"],
    "flag": ["", "abc", "12 13", "#", "²", "9" * 30],
    "patient": ["", "P-1 P-2", "X" * 40],
    "invite": ["", "reusable", "Nonexistent group", "Nonexistent reusable", "99", "#0", "9" * 30],
    "invites": ["all"],
    "oncall": ["someone", "me now", "9" * 30, "-5"],
    "cohort": ["", "frobnicate", "new", "rename", "rename x y", "archive", "archive abc", "rename 9 "],
    "grant": ["", "123", "abc counselor", "123 wizard", "0 counselor", "9" * 30 + " counselor", "-4 counselor"],
    "revoke": ["", "123", "abc counselor", "123 wizard"],
    "staff": ["everyone"],
    "help": [],
}
# What names the command in each answer (an answer may name the command that does the job).
NAMES: dict[str, tuple[str, ...]] = {"flags": ("/flags", "/flag"), "cohort": ("/cohort",)}


async def _invites(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(Invite))).scalar_one())


def _text(m: Any) -> str:
    return (m.plain_text or "") if m is not None else ""


async def test_every_staff_command_answers_bad_arguments_with_its_usage(h: BotHarness, fake: FakeTelegram, db: Database) -> None:
    commands = sorted(set(COUNSELOR_COMMANDS) | set(ADMIN_COMMANDS) | set(GROUP_COMMANDS))
    assert set(commands) <= set(BAD), f"no cases for {set(commands) - set(BAD)}"
    await h.send(h.admin, "/cohort new Tuesday evening")
    await h.send(h.admin, "/cohort new Thursday")
    before = await _invites(db)
    for cmd in commands:
        for args in BAD[cmd]:
            sent = f"/{cmd} {args}".strip()
            n = len(fake.sent(h.admin.id))
            await h.send(h.admin, sent)
            replies = fake.sent(h.admin.id)[n:]
            assert len(replies) == 1, (sent, [_text(m) for m in replies])
            text = _text(replies[0])
            assert any(name in text for name in NAMES.get(cmd, (f"/{cmd}",))), (sent, text)
            assert "went wrong" not in text and "Traceback" not in text, (sent, text)
            assert replies[0].kind != "photo", sent
    fake.assert_no_errors()
    assert await _invites(db) == before


async def test_invite_without_a_cohort_lists_the_cohorts_and_makes_no_invite(h: BotHarness, fake: FakeTelegram, db: Database) -> None:
    await h.send(h.admin, "/invite")
    assert "/cohort new" in _text(fake.last(h.admin.id))  # none yet: how one is made
    await h.send(h.admin, "/cohort new Tuesday evening")
    await h.send(h.admin, "/cohort new Thursday")
    await h.send(h.admin, "/cohort archive 2")
    for args in ("", "reusable", "Nonexistent", "2"):
        await h.send(h.admin, f"/invite {args}".strip())
        text = _text(fake.last(h.admin.id))
        assert "/invite" in text and "Tuesday evening" in text and "Thursday" not in text, (args, text)
        assert "\n" not in text.strip()
    assert await _invites(db) == 0
    await h.send(h.admin, "/invite Tuesday evening")
    assert "Tuesday evening" in _text(fake.last(h.admin.id)) and await _invites(db) == 1
