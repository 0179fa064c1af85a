"""The handlers' context: `ctx.hub` is the process's Hub (bot/core/hub.py)."""

from __future__ import annotations

from typing import Any

from telegram.ext import CallbackContext, ExtBot

from bot.core.hub import Hub


class Ctx(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """What every handler receives: python-telegram-bot's context, with the hub."""

    @property
    def hub(self) -> Hub:
        return self.application.bot_data["hub"]  # type: ignore[no-any-return]
