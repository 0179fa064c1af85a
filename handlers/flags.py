"""The counselors' workflow: flag buttons, /flags, /flag <id>, /oncall, and Message patient.

Every press and command re-checks the counselor role on the server (a patient or a stranger who
presses a group button is refused). Details, the outcome note and relayed conversations happen in
the counselor's private chat, never in the group.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from telegram import Update, User
from telegram.error import Forbidden, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.core import state
from bot.core.hub import Hub
from bot.core.roles import COUNSELOR
from bot.core.state import Awaiting
from bot.core.vocabulary import FlagStatus
from bot.escalation import buttons, lifecycle, relay
from bot.escalation.lifecycle import Move
from bot.escalation.oncall import get_oncall, set_oncall
from bot.escalation.rendering import (
    age_text,
    flag_fields,
    render_details,
    render_post,
    trigger_why,
    why_text,
)
from bot.escalation.rules import Workflow, label
from bot.escalation.service import (
    claim,
    details,
    get_flag,
    history,
    open_flags,
    resolve,
    staff_names,
    talk_request,
)
from bot.platform.callbacks import Stale
from bot.platform.content import Html
from bot.platform.text import split_text
from bot.privacy import erasure
from handlers.common import require_role
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import answer, keyboard, reply

log = logging.getLogger(__name__)

NOTE_STATE = "flags:note"
PRIVATE = filters.ChatType.PRIVATE


def _is_id(text: str) -> bool:
    """A plain, reasonably sized number (not '²', not 30 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 15


def _name(user: User) -> str:
    return (user.first_name or user.username or str(user.id))[:64]


async def _dm(
    ctx: Ctx, user_id: int, text: str, rows: list[list[tuple[str, str]]] | None = None, *, about: int | None = None
) -> bool:
    """Write to a counselor privately. False when they have not opened a chat with the bot.

    `about`: the patient the message shows; it is remembered, so the patient's erasure takes it back."""
    parts = split_text(text)
    sent: list[int] = []
    try:
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                msg = await ctx.bot.send_message(
                    user_id, part, parse_mode="HTML", reply_markup=keyboard(rows) if rows and last else None,
                    disable_web_page_preview=True,
                )
                sent.append(msg.message_id)
        finally:
            if about is not None and sent:
                await _remember(ctx, about, user_id, sent)
        return True
    except Forbidden:
        return False
    except TelegramError as exc:
        # Not a closed chat: say so plainly rather than "open a chat with me".
        log.warning("flags: private message to a counselor failed (%s)", type(exc).__name__)
        try:
            await ctx.bot.send_message(user_id, ctx.hub.content.t("flags.dm_failed", ctx.lang))
        except TelegramError:
            return False
        return True


async def _remember(ctx: Ctx, patient_id: int, chat_id: int, message_ids: list[int]) -> None:
    hub = ctx.hub
    async with hub.db.transaction() as s:
        await erasure.remember(
            s, patient_id, chat_id, message_ids, hub.clock.now(),
            removed=erasure.removed_text(hub.content, hub.settings.default_language),
        )
    hub.sender.wake()


# -- buttons ----------------------------------------------------------------------------------


async def on_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    user = update.effective_user
    if q is None or user is None:
        return
    c = ctx.hub.content
    try:
        pressed = buttons.FLAG.parse(q.data)
    except Stale:
        await answer(q, c.t("common.button_expired", ctx.lang))
        return
    if not await require_role(update, ctx, COUNSELOR):
        return
    await _ACTIONS[pressed.codec](update, ctx, user, *pressed.values)


async def _claim(update: Update, ctx: Ctx, user: User, flag_id: int) -> None:
    hub, c = ctx.hub, ctx.hub.content
    async with hub.db.transaction() as s:
        res = await claim(s, hub.get(Workflow), flag_id, actor_id=user.id, actor_name=_name(user), now=hub.clock.now())
    hub.sender.wake()
    q = update.callback_query
    assert q is not None
    if res.ok:
        await answer(q, c.t("flags.claimed_ok", ctx.lang))
    elif res.reason == "already_claimed" and res.flag is not None:
        await answer(q, c.t("flags.already_claimed", ctx.lang, name=res.flag.claimed_by_name or "?"), alert=True)
    elif res.reason == "resolved":
        await answer(q, c.t("flags.already_resolved", ctx.lang), alert=True)
    else:
        await answer(q, c.t("flags.not_found", ctx.lang), alert=True)


async def _details(update: Update, ctx: Ctx, user: User, flag_id: int) -> None:
    hub, c = ctx.hub, ctx.hub.content
    q = update.callback_query
    assert q is not None
    async with hub.db.transaction() as s:
        d = await details(s, hub.get(Workflow), flag_id, actor_id=user.id, now=hub.clock.now())
    if d is None:
        await answer(q, c.t("flags.not_found", ctx.lang), alert=True)
        return
    text = render_details(d, hub.get(Workflow))
    rows = [[(c.t("flags.button.message", ctx.lang), buttons.MESSAGE.pack(flag_id))]] if d.flag.status != FlagStatus.RESOLVED else None
    if await _dm(ctx, user.id, text, rows, about=d.flag.patient_id):
        await answer(q, c.t("flags.details_sent", ctx.lang) if q.message is None or q.message.chat.type != "private" else None)
    else:
        await answer(q, c.t("flags.open_dm_first", ctx.lang), alert=True)


async def _message(update: Update, ctx: Ctx, user: User, flag_id: int) -> None:
    hub, c = ctx.hub, ctx.hub.content
    q = update.callback_query
    assert q is not None
    async with hub.db.transaction() as s:
        res = await relay.start(s, flag_id, counselor_id=user.id, counselor_name=_name(user), now=hub.clock.now())
    if not res.ok or res.conversation is None:
        if res.reason == "busy" and res.conversation is not None:
            await answer(q, c.t("flags.relay_busy", ctx.lang, code=res.conversation.patient_code, name=res.busy_with or "?"), alert=True)
        else:
            await answer(q, c.t("flags.not_found", ctx.lang), alert=True)
        return
    conv = res.conversation
    rows = [[(c.t("flags.button.end", ctx.lang), buttons.END.pack(conv.id))]]
    if await _dm(ctx, user.id, c.t("flags.relay_started", ctx.lang, code=conv.patient_code), rows, about=conv.patient_id):
        in_dm = q.message is not None and q.message.chat.type == "private"
        await answer(q, None if in_dm else c.t("flags.relay_asked", ctx.lang))
    else:
        await answer(q, c.t("flags.open_dm_first", ctx.lang), alert=True)


async def _resolve(update: Update, ctx: Ctx, user: User, flag_id: int) -> None:
    hub, c = ctx.hub, ctx.hub.content
    q = update.callback_query
    assert q is not None
    async with hub.db.session() as s:
        info = await get_flag(s, flag_id)
    if info is None:
        await answer(q, c.t("flags.not_found", ctx.lang), alert=True)
        return
    if not lifecycle.allowed(info.status, Move.RESOLVE):
        await answer(q, c.t("flags.already_resolved", ctx.lang), alert=True)
        return
    async with hub.db.transaction() as s:
        await state.set_(s, user.id, NOTE_STATE, {"flag_id": flag_id}, hub.clock.now())
    rows = [[(c.t("flags.button.cancel_note", ctx.lang), buttons.NO_NOTE.pack(flag_id))]]
    if await _dm(ctx, user.id, c.t("flags.resolve_prompt", ctx.lang, id=flag_id, code=info.patient_code), rows, about=info.patient_id):
        in_dm = q.message is not None and q.message.chat.type == "private"
        await answer(q, None if in_dm else c.t("flags.resolve_asked", ctx.lang))
    else:
        async with hub.db.transaction() as s:
            await state.clear(s, user.id, NOTE_STATE)
        await answer(q, c.t("flags.open_dm_first", ctx.lang), alert=True)


async def _no_note(update: Update, ctx: Ctx, user: User, flag_id: int) -> None:
    hub = ctx.hub
    q = update.callback_query
    assert q is not None
    async with hub.db.transaction() as s:
        await state.clear(s, user.id, NOTE_STATE)
    await answer(q, hub.content.t("common.cancelled", ctx.lang))
    if q.message is not None and getattr(q.message, "reply_markup", None):
        try:
            await q.edit_message_reply_markup(None)
        except TelegramError:
            pass


async def _end(update: Update, ctx: Ctx, user: User, conversation_id: int) -> None:
    hub, c = ctx.hub, ctx.hub.content
    q = update.callback_query
    assert q is not None
    async with hub.db.transaction() as s:
        conv = await relay.end(s, hub.get(Workflow), conversation_id, counselor_id=user.id, now=hub.clock.now())
    hub.sender.wake()
    if conv is None:
        await answer(q, c.t("flags.relay_not_active", ctx.lang))
        return
    await answer(q)
    said = await reply(update, c.t("flags.relay_ended_counselor", ctx.lang, code=conv.patient_code))
    if said is not None:
        await _remember(ctx, conv.patient_id, said.chat_id, [said.message_id])


_ACTIONS = {
    buttons.CLAIM: _claim,
    buttons.DETAILS: _details,
    buttons.MESSAGE: _message,
    buttons.RESOLVE: _resolve,
    buttons.NO_NOTE: _no_note,
    buttons.END: _end,
}


# -- typed text in the counselor's DM ---------------------------------------------------------


async def note_text(update: Update, ctx: Ctx, awaiting: Awaiting) -> None:
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.text is None:
        return
    hub, c = ctx.hub, ctx.hub.content
    if not await require_role(update, ctx, COUNSELOR):
        async with hub.db.transaction() as s:
            await state.clear(s, user.id, NOTE_STATE)
        return
    note = msg.text.strip()
    if not note:
        await reply(update, c.t("flags.resolve_empty", ctx.lang))
        return
    flag_id = int(awaiting.data.get("flag_id", 0))
    async with hub.db.transaction() as s:
        res = await resolve(s, hub.get(Workflow), flag_id, actor_id=user.id, actor_name=_name(user), note=note, now=hub.clock.now())
        await state.clear(s, user.id, NOTE_STATE)
    hub.sender.wake()
    if res.ok:
        await reply(update, c.t("flags.resolve_done", ctx.lang, id=flag_id))
    elif res.reason == "resolved":
        await reply(update, c.t("flags.already_resolved", ctx.lang))
    else:
        await reply(update, c.t("flags.not_found", ctx.lang))


async def relay_text(update: Update, ctx: Ctx, awaiting: Awaiting) -> None:
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.text is None:
        return
    hub = ctx.hub
    if not await require_role(update, ctx, COUNSELOR):
        async with hub.db.transaction() as s:
            await state.clear(s, user.id, relay.WRITE_STATE)
        return
    await _write(update, ctx, user.id, int(awaiting.data.get("conversation", 0)), msg.text)


async def staff_text(update: Update, ctx: Ctx) -> bool:
    """Typed text from a counselor that nothing was waiting for (after a resolve note, say): with
    one conversation open it goes to that patient, and the bot waits for more; with several the
    counselor is told how to choose. False when they have none (or are not a counselor)."""
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.text is None or not await ctx.hub.roles.has(user.id, COUNSELOR):
        return False
    hub = ctx.hub
    async with hub.db.session() as s:
        open_ = await relay.open_for_counselor(s, user.id)
    if not open_:
        return False
    if len(open_) > 1:
        codes = ", ".join(conv.patient_code for conv in open_)
        await reply(update, hub.content.t("flags.relay_choose", ctx.lang, codes=codes))
        return True
    async with hub.db.transaction() as s:
        await state.set_(s, user.id, relay.WRITE_STATE, {"conversation": open_[0].id}, hub.clock.now())
    await _write(update, ctx, user.id, open_[0].id, msg.text)
    return True


async def _write(update: Update, ctx: Ctx, user_id: int, conv_id: int, text: str) -> None:
    """Deliver a counselor's text in a conversation, and say so (or that it has ended)."""
    hub, c = ctx.hub, ctx.hub.content
    async with hub.db.transaction() as s:
        conv = await relay.counselor_writes(s, hub.get(Workflow), conv_id, counselor_id=user_id, text=text, now=hub.clock.now())
        if conv is None:
            await state.clear(s, user_id, relay.WRITE_STATE)
    hub.sender.wake()
    if conv is None:
        await reply(update, c.t("flags.relay_not_active", ctx.lang))
    else:
        said = await reply(update, c.t("flags.relay_delivered", ctx.lang, code=conv.patient_code), [[(c.t("flags.button.end", ctx.lang), buttons.END.pack(conv.id))]])
        if said is not None:
            await _remember(ctx, conv.patient_id, said.chat_id, [said.message_id])


async def patient_relay(update: Update, ctx: Ctx) -> None:
    """A patient's text while a counselor is talking with them goes back to that counselor."""
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.text is None or update.edited_message is not None:
        return
    hub = ctx.hub
    async with hub.db.session() as s:
        conv = await relay.active_for_patient(s, user.id)
        if conv is None:
            return
        if await state.get(s, user.id) is not None:
            return  # they are answering something else (a check-in note, a setting, …)
    if not await hub.roles.has(conv.counselor_id, COUNSELOR):
        # That person is no longer on the care team: never pass them the patient's words.
        async with hub.db.transaction() as s:
            await relay.staff_access_lost(s, hub.get(Workflow), conv.counselor_id, now=hub.clock.now())
            await talk_request(s, hub.get(Workflow), conv.patient_id, hub.clock.now(), source="relay_ended")
        hub.sender.wake()
        return
    async with hub.db.transaction() as s:
        conv = await relay.patient_replies(s, hub.get(Workflow), user.id, msg.text, now=hub.clock.now())
    if conv is None:
        return
    hub.sender.wake()
    await reply(update, hub.content.t("flags.relay_patient_ack", ctx.lang))
    raise ApplicationHandlerStop


# -- commands ---------------------------------------------------------------------------------


async def flags_cmd(update: Update, ctx: Ctx) -> None:
    if not await require_role(update, ctx, COUNSELOR):
        return
    hub, c = ctx.hub, ctx.hub.content
    if ctx.args:
        await reply(update, c.t("flags.list_usage", ctx.lang))
        return
    now = hub.clock.now()
    async with hub.db.session() as s:
        items = await open_flags(s, limit=20)
    if not items:
        await reply(update, c.t("flags.list_none", ctx.lang))
        return
    lang = ctx.lang
    lines = [c.t("flags.list_title", lang)]
    rows: list[list[tuple[str, str]]] = []
    for f in items:
        age = age_text(c, lang, now - (f.last_trigger_at or f.opened_at))
        lines.append(c.t("flags.list_item", lang, **flag_fields(c, lang, f), age=age))
        row = [(f"#{f.id} " + c.t("flags.button.details", ctx.lang), buttons.DETAILS.pack(f.id))]
        if lifecycle.allowed(f.status, Move.CLAIM):
            row.insert(0, (f"#{f.id} " + c.t("flags.button.claim", ctx.lang), buttons.CLAIM.pack(f.id)))
        rows.append(row)
    await reply(update, "\n".join(lines), rows)


async def flag_cmd(update: Update, ctx: Ctx) -> None:
    if not await require_role(update, ctx, COUNSELOR):
        return
    hub, c = ctx.hub, ctx.hub.content
    args = ctx.args or []
    if len(args) != 1 or not _is_id(args[0].lstrip("#")):
        await reply(update, c.t("flags.history_usage", ctx.lang))
        return
    flag_id = int(args[0].lstrip("#"))
    async with hub.db.session() as s:
        info = await get_flag(s, flag_id)
        events = await history(s, flag_id) if info else []
        names = await staff_names(s, {e.actor_id for e in events if e.actor_id is not None})
    if info is None:
        await reply(update, c.t("flags.not_found", ctx.lang))
        return
    zone = ZoneInfo(hub.settings.default_timezone)
    lines = [c.t("flags.history_title", ctx.lang, id=flag_id), render_post(info, hub.get(Workflow)), ""]
    for e in events:
        actor = names.get(e.actor_id or 0) or (str(e.actor_id) if e.actor_id else "–")
        key = f"flags.event.{e.kind}" if c.has(f"flags.event.{e.kind}", ctx.lang) else "flags.event.other"
        what = c.t(
            key, ctx.lang,
            source=label(c, ctx.lang, "source", e.source) if e.source else "–",
            severity=Html(label(c, ctx.lang, "severity", e.severity)) if e.severity else "–",
            reason=Html(why_text(trigger_why(e.source, e.reason), content=c, lang=ctx.lang)) if e.kind == "trigger" else "–",
            actor=actor,
            stage=(e.detail or {}).get("stage", "–"),
            kind=e.kind,
        )
        lines.append(c.t("flags.history_line", ctx.lang, time=e.at.astimezone(zone).strftime("%a %d %b %H:%M"), what=Html(what)))
    said = await reply(update, "\n".join(lines))
    if said is not None:
        await _remember(ctx, info.patient_id, said.chat_id, [said.message_id])


async def oncall_cmd(update: Update, ctx: Ctx) -> None:
    if not await require_role(update, ctx, COUNSELOR):
        return
    user = update.effective_user
    assert user is not None
    hub, c = ctx.hub, ctx.hub.content
    args = ctx.args or []
    now = hub.clock.now()
    if not args:
        async with hub.db.session() as s:
            oc = await get_oncall(s)
        if oc is None:
            await reply(update, c.t("flags.oncall_none", ctx.lang) + "\n" + c.t("flags.oncall_help", ctx.lang))
        else:
            mention = c.t("flags.mention_plain", ctx.lang, id=oc.telegram_id, name=oc.name or str(oc.telegram_id))
            when = oc.set_at.astimezone(ZoneInfo(hub.settings.default_timezone)).strftime("%a %d %b %H:%M")
            await reply(update, c.t("flags.oncall_show", ctx.lang, mention=Html(mention), time=when) + "\n" + c.t("flags.oncall_help", ctx.lang))
        return
    arg = args[0].lower()
    if len(args) > 1:
        await reply(update, c.t("flags.oncall_help", ctx.lang))
        return
    if arg in ("off", "none", "nobody"):
        async with hub.db.transaction() as s:
            await set_oncall(s, None, name=None, by=user.id, now=now)
        await reply(update, c.t("flags.oncall_cleared", ctx.lang))
        return
    if arg == "me":
        target, name = user.id, _name(user)
    elif _is_id(arg) and await hub.roles.has(int(arg), COUNSELOR):
        target = int(arg)
        async with hub.db.session() as s:
            name = (await staff_names(s, {target})).get(target) or str(target)
    else:  # only a counselor can be on call: crisis alerts go to them
        await reply(update, c.t("flags.oncall_bad", ctx.lang))
        return
    async with hub.db.transaction() as s:
        await set_oncall(s, target, name=name, by=user.id, now=now)
    mention = c.t("flags.mention_plain", ctx.lang, id=target, name=name)
    await reply(update, c.t("flags.oncall_set", ctx.lang, mention=Html(mention)))


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    app.add_handler(CallbackQueryHandler(on_button, pattern=buttons.FLAG.pattern))
    app.add_handler(CommandHandler("flags", flags_cmd))
    app.add_handler(CommandHandler("flag", flag_cmd))
    app.add_handler(CommandHandler("oncall", oncall_cmd))
    app.add_handler(MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND, patient_relay), group=-40)
    router.on(NOTE_STATE, note_text)
    router.on(relay.WRITE_STATE, relay_text)
