"""Every handler, registered in one visible place.

Groups: -110 the language of the person behind the update (`ctx.lang`, resolved once); -100 chat
hygiene (membership, foreign groups); -50 safety (the risk detector sees every free text first);
0 features, then the fallbacks last.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat, Update
from telegram.ext import Application, ApplicationHandlerStop, CallbackQueryHandler, TypeHandler

from bot.core.hub import Hub
from bot.platform.callbacks import callback_data_ok
from handlers import common
from handlers.context import Ctx, resolve_language
from handlers.router import TextRouter

log = logging.getLogger(__name__)

PATIENT_COMMANDS = ["checkin", "sos", "plan", "tip", "days", "progress", "talk", "settings", "privacy", "mydata", "delete", "help"]
GROUP_COMMANDS = ["flags", "flag", "help"]
COUNSELOR_COMMANDS = ["flags", "flag", "patient", "invite", "invites", "oncall"]
# Announcements (/announce) come with broadcasts; until then a facilitator has no commands of their own.
FACILITATOR_COMMANDS: list[str] = []
ADMIN_COMMANDS = ["cohort", "grant", "revoke", "staff"]


Register = Callable[[Application, Hub, TextRouter], None]  # type: ignore[type-arg]


def register(app: Application, hub: Hub, features: Sequence[Register]) -> None:  # type: ignore[type-arg]
    """The person's language first, chat hygiene next, then each area's handlers in the order given (bot/areas.py), then the
    fallbacks."""
    router = TextRouter()
    app.add_handler(TypeHandler(Update, resolve_language), group=-110)
    common.register_early(app, hub)
    # Button data the bot cannot have made (a 25-digit id, say) is answered as a stale button
    # here, before any feature parses it.
    app.add_handler(CallbackQueryHandler(_malformed_button, pattern=lambda d: not callback_data_ok(d)), group=-95)
    app.add_handler(TypeHandler(Update, _group_gate(hub)), group=-90)
    for feature in features:
        feature(app, hub, router)
    common.register_fallbacks(app, router)
    app.add_error_handler(common.error_handler)


async def _malformed_button(update: Update, ctx: Ctx) -> None:
    await common.expired_button(update, ctx)
    raise ApplicationHandlerStop


def _group_gate(hub: Hub) -> Callable[[Update, Ctx], Awaitable[None]]:
    """Leave foreign groups; in the counselors' group let only commands and buttons through."""

    seen = hub.private_chats

    async def gate(update: Update, ctx: Ctx) -> None:
        chat = update.effective_chat
        if chat is not None and chat.type == "private" and update.message is not None:
            seen.add(chat.id)  # this person has a chat with the bot: their menu can be set
        if chat is None or chat.type == "private" or update.my_chat_member or update.chat_member:
            return
        if chat.id != hub.settings.counselor_chat_id:
            msg = update.message
            if msg is not None and (
                msg.new_chat_members or msg.left_chat_member or msg.migrate_to_chat_id or msg.migrate_from_chat_id
            ):
                # Service messages: the bot's own membership change is handled by my_chat_member.
                raise ApplicationHandlerStop
            await common.foreign_group(update, ctx)
            raise ApplicationHandlerStop
        if update.callback_query is not None:
            return
        msg = update.message
        if msg is not None and msg.text and msg.text.startswith("/"):
            return
        if msg is not None and msg.migrate_to_chat_id is not None:
            return
        raise ApplicationHandlerStop  # ordinary chatter among counselors

    return gate


def _commands(hub: Hub, names: list[str]) -> list[BotCommand]:
    """The menu's lines, in the clinic's language (one menu per scope, whoever opens it)."""
    return [BotCommand(n, hub.content.t(f"menu.{n}", hub.languages.default)) for n in names]


async def set_commands(app: Application, hub: Hub) -> None:  # type: ignore[type-arg]
    """Command menus per scope: private chats, the counselors' group, each staff member's chat."""
    bot = app.bot
    await bot.set_my_commands(_commands(hub, PATIENT_COMMANDS), scope=BotCommandScopeAllPrivateChats())
    if hub.settings.counselor_chat_id is not None:
        try:
            await bot.set_my_commands(_commands(hub, GROUP_COMMANDS), scope=BotCommandScopeChat(hub.settings.counselor_chat_id))
        except Exception as exc:
            log.warning("could not set the counselors' group menu (%s)", type(exc).__name__)
    # Each staff member's own menu is set when they write to the bot (/start) or are granted a
    # role after having done so: Telegram refuses a chat scope for someone who never opened one,
    # and menus it has accepted persist across restarts.


async def set_staff_commands(app: Application, hub: Hub, user_id: int, roles: set[str]) -> None:  # type: ignore[type-arg]
    if user_id not in hub.private_chats:
        return  # set when they first write to the bot
    names: list[str] = []
    if roles & {"counselor", "admin"}:
        names += COUNSELOR_COMMANDS
    if roles & {"facilitator", "admin"}:
        names += FACILITATOR_COMMANDS
    if "admin" in roles:
        names += ADMIN_COMMANDS
    names += ["help"]
    try:
        await app.bot.set_my_commands(_commands(hub, list(dict.fromkeys(names))), scope=BotCommandScopeChat(user_id))
    except Exception as exc:  # the person may not have opened a chat with the bot yet
        log.info("staff menu not set for one user (%s)", type(exc).__name__)

