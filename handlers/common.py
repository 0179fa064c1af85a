"""What every chat gets: /help, the fallbacks, group hygiene, blocking, and the error handler."""

from __future__ import annotations

import html
import logging

from telegram import ChatMemberUpdated, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.core import group, people
from bot.core.hub import Hub
from bot.core.roles import ADMIN, COUNSELOR, FACILITATOR
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import answer, reply

log = logging.getLogger(__name__)

MAX_TEXT_LEN = 3000


def is_counselor_group(ctx: Ctx, chat_id: int | None) -> bool:
    return chat_id is not None and chat_id == ctx.hub.settings.counselor_chat_id


def user_id(update: Update) -> int:
    """Who sent the update (0 when Telegram says no one)."""
    return update.effective_user.id if update.effective_user else 0


async def require_patient(update: Update, ctx: Ctx) -> people.PatientInfo | None:
    """The enrolled patient behind this update, or None after telling the person how to enrol."""
    user = update.effective_user
    if user is None:
        return None
    async with ctx.hub.db.session() as s:
        patient = await people.active_patient_info(s, user.id)
    if patient is None:
        await not_enrolled(update, ctx)
    return patient


async def not_enrolled(update: Update, ctx: Ctx) -> None:
    """Tell someone who is not an enrolled patient how to enrol."""
    if update.callback_query is not None:
        await answer(update.callback_query, ctx.hub.content.t("common.not_enrolled", ctx.lang), alert=True)
    else:
        await reply(update, ctx.hub.content.t("common.not_enrolled", ctx.lang))


async def require_role(update: Update, ctx: Ctx, *roles: str) -> bool:
    """Server-side role check for every staff command and button; refuses politely otherwise."""
    user = update.effective_user
    if user is not None and await ctx.hub.roles.has(user.id, *roles):
        return True
    c = ctx.hub.content
    chat = update.effective_chat
    if set(roles) == {ADMIN}:
        text = c.t("common.not_allowed_admin", ctx.lang)
    elif chat is not None and chat.type != ChatType.PRIVATE:
        text = c.t("common.not_allowed_group", ctx.lang)
    else:
        text = c.t("common.not_allowed", ctx.lang)
    if update.callback_query is not None:
        await answer(update.callback_query, text, alert=True)
    elif chat is not None:
        await reply(update, text)
    return False


async def help_cmd(update: Update, ctx: Ctx) -> None:
    user = update.effective_user
    if user is None:
        return
    c = ctx.hub.content
    roles = await ctx.hub.roles.roles_of(user.id)
    async with ctx.hub.db.session() as s:
        patient = await people.patient_by_telegram(s, user.id)
    parts = []
    if patient is not None and patient.status in ("active", "inactive"):
        parts.append(c.t("help.patient", ctx.lang))
    if COUNSELOR in roles or ADMIN in roles:
        parts.append(c.t("help.counselor", ctx.lang))
    if FACILITATOR in roles or ADMIN in roles:
        parts.append(c.t("help.facilitator", ctx.lang))
    if ADMIN in roles:
        parts.append(c.t("help.admin", ctx.lang))
    if not parts:
        parts.append(c.t("help.newcomer", ctx.lang))
    await reply(update, "\n\n".join(parts))


async def start_fallback(update: Update, ctx: Ctx) -> None:
    """`/start` when onboarding has nothing to do: staff welcome, or how to enrol."""
    user = update.effective_user
    if user is None:
        return
    roles = await ctx.hub.roles.roles_of(user.id)
    if roles:
        await reply(
            update,
            ctx.hub.content.t("common.staff_welcome", ctx.lang, name=user.first_name or "", roles=", ".join(sorted(roles))),
        )
    else:
        await reply(update, ctx.hub.content.t("common.not_enrolled", ctx.lang))


async def unknown_command(update: Update, ctx: Ctx) -> None:
    await reply(update, ctx.hub.content.t("common.unknown_command", ctx.lang))


async def non_text(update: Update, ctx: Ctx) -> None:
    await reply(update, ctx.hub.content.t("common.text_only", ctx.lang))


async def forwarded(update: Update, ctx: Ctx) -> None:
    await reply(update, ctx.hub.content.t("common.forwarded", ctx.lang))


async def edited(update: Update, ctx: Ctx) -> None:
    await reply(update, ctx.hub.content.t("common.edited", ctx.lang))


def text_dispatch(router: TextRouter):  # type: ignore[no-untyped-def]
    async def handle(update: Update, ctx: Ctx) -> None:
        msg = update.effective_message
        if msg is None or msg.text is None:
            return
        if len(msg.text) > MAX_TEXT_LEN:
            await reply(update, ctx.hub.content.t("common.too_long", ctx.lang))
            return
        if await router.dispatch(update, ctx):
            return
        if router.default is not None:
            from bot.core.state import Awaiting

            await router.default(update, ctx, Awaiting("", {}))
            return
        await reply(update, ctx.hub.content.t("common.free_text", ctx.lang))

    return handle


async def expired_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    if q is not None:
        await answer(q, ctx.hub.content.t("common.button_expired", ctx.lang))


async def my_chat_member(update: Update, ctx: Ctx) -> None:
    """The bot's own membership changed: leave foreign groups, note blocks in private chats."""
    cmu: ChatMemberUpdated | None = update.my_chat_member
    if cmu is None:
        return
    chat = cmu.chat
    status = cmu.new_chat_member.status
    if chat.type == ChatType.PRIVATE:
        blocked = status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT)
        async with ctx.hub.db.transaction() as s:
            await people.set_blocked(s, chat.id, blocked, ctx.hub.clock.now())
        return
    if status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR) and not is_counselor_group(ctx, chat.id):
        log.info("added to a group that is not the counselors' group; leaving it")
        try:
            await ctx.bot.leave_chat(chat.id)
        except Exception as exc:
            log.warning("could not leave a foreign group (%s)", type(exc).__name__)


async def chat_member(update: Update, ctx: Ctx) -> None:
    """Someone joined or left the counselors' group: their counselor access follows at once."""
    cmu = update.chat_member
    if cmu is None or not is_counselor_group(ctx, cmu.chat.id):
        return
    user = cmu.new_chat_member.user
    member = cmu.new_chat_member
    if user.is_bot:
        return
    inside = member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER) or (
        member.status == ChatMemberStatus.RESTRICTED and bool(getattr(member, "is_member", False))
    )
    await _membership_changed(ctx, user.id, inside, str(member.status))


async def group_joins_and_leaves(update: Update, ctx: Ctx) -> None:
    """Joins and leaves told as service messages in the counselors' group (Telegram sends these
    even to a bot that is not an admin there and so gets no chat_member updates)."""
    msg = update.effective_message
    if msg is None or not is_counselor_group(ctx, msg.chat.id):
        return
    for user in msg.new_chat_members or ():
        if not user.is_bot:
            await _membership_changed(ctx, user.id, True, "member")
    left = msg.left_chat_member
    if left is not None and not left.is_bot:
        await _membership_changed(ctx, left.id, False, "left")


async def _membership_changed(ctx: Ctx, user_id: int, inside: bool, status: str) -> None:
    """Access follows at once, the group's roster remembers it, leaving the group ends a granted
    counselor role (admins are told), and someone who is no longer on the care team is taken out
    of any conversation with a patient (Roles.record_membership)."""
    await ctx.hub.roles.record_membership(user_id, inside, status)


async def foreign_group(update: Update, ctx: Ctx) -> None:
    """A message from a group that is not ours: leave it."""
    chat = update.effective_chat
    if chat is None:
        return
    try:
        await ctx.bot.leave_chat(chat.id)
    except Exception as exc:
        log.warning("could not leave a foreign group (%s)", type(exc).__name__)


async def group_migrated(update: Update, ctx: Ctx) -> None:
    msg = update.effective_message
    if msg is None or msg.migrate_to_chat_id is None:
        return
    if is_counselor_group(ctx, msg.chat.id):
        async with ctx.hub.db.transaction() as s:
            await group.record_migration(s, msg.chat.id, msg.migrate_to_chat_id, ctx.hub.clock.now())
        ctx.hub.settings.counselor_chat_id = msg.migrate_to_chat_id
        log.warning(
            "the counselors' group became a supergroup; using its new id (also set COUNSELOR_CHAT_ID=%s)",
            msg.migrate_to_chat_id,
        )


async def error_handler(update: object, ctx: Ctx) -> None:
    err = ctx.error
    uid = update.update_id if isinstance(update, Update) else None
    log.error(
        "error while handling update %s: %s",
        uid,
        type(err).__name__,
        exc_info=(type(err), err, err.__traceback__) if err is not None else None,
    )
    if not isinstance(update, Update):
        return
    # A press is told in an alert; one already answered (the step ran, then the edit failed)
    # is told in the chat instead.
    if update.callback_query is not None and await answer(update.callback_query, ctx.hub.content.t("common.error", ctx.lang), alert=True):
        return
    chat = update.effective_chat
    if chat is not None and chat.type == ChatType.PRIVATE:
        try:
            await reply(update, ctx.hub.content.t("common.error", ctx.lang))
        except Exception as exc:
            log.warning("could not tell the person about the error (%s)", type(exc).__name__)


def register_early(app: Application, hub: Hub) -> None:  # type: ignore[type-arg]
    """Group -100: chat hygiene before any feature sees the update."""
    hub.roles.after_change.append(hub.sender.wake)  # type: ignore[attr-defined]
    app.add_handler(ChatMemberHandler(my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER), group=-100)
    app.add_handler(ChatMemberHandler(chat_member, ChatMemberHandler.CHAT_MEMBER), group=-100)
    app.add_handler(
        MessageHandler(filters.StatusUpdate.NEW_CHAT_MEMBERS | filters.StatusUpdate.LEFT_CHAT_MEMBER, group_joins_and_leaves),
        group=-100,
    )
    app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, group_migrated), group=-100)


def register_fallbacks(app: Application, router: TextRouter) -> None:  # type: ignore[type-arg]
    """Group 0, last: what nothing else took."""
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler("help", help_cmd))
    app.add_handler(CommandHandler("start", start_fallback, filters=private))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & private, edited))
    app.add_handler(MessageHandler(filters.FORWARDED & private, forwarded))
    app.add_handler(MessageHandler(filters.COMMAND & private, unknown_command))
    app.add_handler(MessageHandler(filters.TEXT & private & ~filters.COMMAND, text_dispatch(router)))
    app.add_handler(MessageHandler(private & ~filters.TEXT & ~filters.StatusUpdate.ALL, non_text))
    app.add_handler(CallbackQueryHandler(expired_button))


def escape(text: str) -> str:
    return html.escape(text, quote=False)
