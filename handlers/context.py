"""The handlers' context: `ctx.hub` is the process's Hub (bot/core/hub.py), `ctx.lang` the
language of the person behind the update (bot/core/language.py)."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CallbackContext, ExtBot

from bot.core.hub import Hub


class Ctx(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """What every handler receives: python-telegram-bot's context, with the hub and the language.

    One context serves every handler of an update; the first handler group (`resolve_language`)
    sets `lang` on it, so every reply of the update is in the same language."""

    @property
    def hub(self) -> Hub:
        return self.application.bot_data["hub"]  # type: ignore[no-any-return]

    @property
    def lang(self) -> str:
        """The language of the person this update is from: replies to them are in it."""
        lang: str | None = self.__dict__.get("_lang")
        if lang is None:
            raise RuntimeError("the language is resolved by the first handler group (handlers.register)")
        return lang

    @lang.setter
    def lang(self, value: str) -> None:
        """A person who just chose a language is answered in it from then on."""
        self.__dict__["_lang"] = value

    @classmethod
    def from_error(  # type: ignore[override]
        cls, update: object, error: Exception, application: Application, *args: Any, **kwargs: Any  # type: ignore[type-arg]
    ) -> Ctx:
        """The error handler's context: the same language, from what the update's resolution kept."""
        ctx: Ctx = super().from_error(update, error, application, *args, **kwargs)  # type: ignore[assignment]
        hub: Hub | None = application.bot_data.get("hub")
        if hub is not None:
            user = update.effective_user if isinstance(update, Update) else None
            ctx.lang = hub.languages.known(user.id if user else None, user.language_code if user else None)
        return ctx


async def resolve_language(update: Update, ctx: Ctx) -> None:
    """The first handler group: the language of the person behind the update, once."""
    user = update.effective_user
    ctx.lang = await ctx.hub.languages.of(user.id if user else None, user.language_code if user else None)
