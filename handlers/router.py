"""Routing of typed text to the conversation that is waiting for it.

A flow that asks a question stores what it awaits (`bot.core.state`) and registers a text handler for
that kind here. One MessageHandler dispatches by the stored kind, so areas never compete for text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update

from bot.core import state
from bot.core.state import Awaiting

TextHandler = Callable[[Update, Any, Awaiting], Awaitable[None]]


class TextRouter:
    def __init__(self) -> None:
        self.handlers: dict[str, TextHandler] = {}
        self.default: TextHandler | None = None

    def on(self, kind: str, handler: TextHandler) -> None:
        if kind in self.handlers:
            raise ValueError(f"text kind {kind!r} registered twice")
        self.handlers[kind] = handler

    async def dispatch(self, update: Update, ctx: Any) -> bool:
        """Route to the waiting conversation; False if nothing waits for this person's text."""
        user = update.effective_user
        if user is None:
            return False
        async with ctx.hub.db.session() as s:
            awaiting = await state.get(s, user.id)
        if awaiting is None or awaiting.kind not in self.handlers:
            return False
        await self.handlers[awaiting.kind](update, ctx, awaiting)
        return True
