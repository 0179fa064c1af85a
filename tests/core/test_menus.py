"""Every command the bot offers (the menus, every help text) has a handler: driven from the code's
own menu lists and from the help texts in content/, so a command cannot be advertised without one."""

from __future__ import annotations

import re

from telegram.ext import CommandHandler

import handlers
from bot.platform.content import get_content
from tests.harness import BotHarness

MENUS = (
    handlers.PATIENT_COMMANDS,
    handlers.GROUP_COMMANDS,
    handlers.COUNSELOR_COMMANDS,
    handlers.FACILITATOR_COMMANDS,
    handlers.ADMIN_COMMANDS,
)


def _handled(h: BotHarness) -> set[str]:
    names: set[str] = set()
    for group in h.app.handlers.values():
        for handler in group:
            if isinstance(handler, CommandHandler):
                names |= set(handler.commands)
    return names


def _advertised_in_help() -> dict[str, set[str]]:
    c = get_content()
    out: dict[str, set[str]] = {}
    for lang in c.languages:
        for key, text in c.messages[lang].items():
            if key.startswith("help."):
                out.setdefault(f"{lang}:{key}", set()).update(re.findall(r"(?<![\w/<])/([a-z]+)\b", str(text)))
    return out


async def test_every_command_in_a_menu_has_a_handler(h: BotHarness) -> None:
    handled = _handled(h)
    for menu in MENUS:
        assert set(menu) <= handled, set(menu) - handled


async def test_every_command_a_help_text_names_has_a_handler(h: BotHarness) -> None:
    handled = _handled(h)
    advertised = _advertised_in_help()
    assert advertised, "no help text found"
    for where, names in advertised.items():
        assert names <= handled, (where, names - handled)
