"""Privacy: /privacy, /mydata and /delete, the Telegram side (DESIGN §2.10). Thin: parse,
authorise, call a service in a unit of work, render the result.

Callback data: `pv:del:1|2`, `pv:keep` the two-step erasure.
"""

from __future__ import annotations

from telegram import InputFile, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.core import state, timefmt
from bot.core.hub import Hub
from bot.core.people import PatientInfo
from bot.enrolment import onboarding
from bot.enrolment.onboarding import AGE, CONSENT
from bot.platform.callbacks import Pressed, Stale
from bot.platform.content import Html
from bot.privacy import buttons, erasure
from bot.privacy import service as privacy
from handlers import common
from handlers.context import Ctx
from handlers.enrolment import ask_step, enrolled_patient, storage_line
from handlers.router import TextRouter
from handlers.ui import answer, edit, reply

DELETE_KIND = "privacy:delete"


async def privacy_cmd(update: Update, ctx: Ctx) -> None:
    p = await enrolled_patient(update, ctx)
    if p is None:
        return
    c = ctx.hub.content
    async with ctx.hub.db.transaction() as s:
        info = await privacy.summary(s, p.telegram_id)
    if info is None:
        return
    records = ", ".join(f"{name.replace('_', ' ')} ({n})" for name, n in sorted(info.records.items()))
    await reply(
        update,
        c.t(
            "privacy.info",
            ctx.lang,
            code=info.code,
            version=info.consent_version or "—",
            date=timefmt.day(c, ctx.lang, info.consented_at.date()) if info.consented_at else "—",
            records=records or c.t("privacy.no_records", ctx.lang),
            storage=Html(storage_line(c, ctx.lang, ctx.hub.settings.encryption_key is not None)),
            retention=Html(c.t("privacy.retention", ctx.lang)),
        ),
    )


async def mydata_cmd(update: Update, ctx: Ctx) -> None:
    p = await enrolled_patient(update, ctx)
    if p is None or update.effective_chat is None:
        return
    async with ctx.hub.db.transaction() as s:
        doc = await privacy.export(s, p.telegram_id, now=ctx.hub.clock.now(), content=ctx.hub.content)
    if doc is None:
        return
    data = privacy.export_json(doc)
    await ctx.bot.send_document(
        update.effective_chat.id,
        document=InputFile(data, filename=f"mydata-{p.code}.json"),
        caption=ctx.hub.content.t("privacy.export_caption", ctx.lang, code=p.code),
        parse_mode=ParseMode.HTML,
    )


async def delete_cmd(update: Update, ctx: Ctx) -> None:
    user = update.effective_user
    if user is None:
        return
    async with ctx.hub.db.session() as s:
        prog = await onboarding.current(s, user.id)
    p: PatientInfo | None = prog.patient
    if prog.kind == "step" and prog.step in (AGE, CONSENT):
        # Nothing is kept before consent: stopping is immediate.
        async with ctx.hub.db.transaction() as s:
            await onboarding.erase_onboarding(s, user.id)
        ctx.hub.languages.forget(user.id)
        await reply(update, ctx.hub.content.t("onboarding.declined", ctx.lang))
        return
    if prog.kind != "step":
        p = await common.require_patient(update, ctx)
    if p is None:
        return
    c = ctx.hub.content
    async with ctx.hub.db.transaction() as s:
        await state.set_(s, p.telegram_id, DELETE_KIND, {"step": 1}, ctx.hub.clock.now())
    await reply(
        update,
        c.t("privacy.delete_ask", ctx.lang),
        [[(c.t("privacy.delete_yes", ctx.lang), buttons.DELETE.pack("1"))], [(c.t("privacy.delete_no", ctx.lang), buttons.KEEP.pack())]],
    )


async def privacy_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    user = update.effective_user
    if q is None or user is None:
        return
    chat = update.effective_chat
    async with ctx.hub.db.session() as s:
        prog = await onboarding.current(s, user.id)
        waiting = await state.get(s, user.id)
    p = prog.patient if prog.kind in ("step", "active") else None
    pending = waiting is not None and waiting.kind == DELETE_KIND
    try:
        pressed: Pressed | None = buttons.PRIVACY.parse(q.data)
    except Stale:
        pressed = None
    if pressed is None or q.message is None or p is None or chat is None or chat.type != "private" or not pending:
        await common.expired_button(update, ctx)
        return
    assert waiting is not None
    c = ctx.hub.content
    lang = ctx.lang
    now = ctx.hub.clock.now()
    if pressed.codec is buttons.KEEP:
        async with ctx.hub.db.transaction() as s:
            await state.clear(s, user.id, DELETE_KIND)
            if prog.kind == "step":
                await state.set_(s, user.id, onboarding.STATE_KIND, {}, now)
        await answer(q)
        await edit(q, c.t("privacy.delete_kept", lang))
        if prog.kind == "step":
            await ask_step(update, ctx, prog.step, lang)
        return
    if pressed.values == ("1",):
        async with ctx.hub.db.transaction() as s:
            await state.set_(s, user.id, DELETE_KIND, {"step": 2}, now)
        await answer(q)
        await edit(
            q,
            c.t("privacy.delete_confirm", lang),
            [[(c.t("privacy.delete_really", lang), buttons.DELETE.pack("2"))], [(c.t("privacy.delete_no", lang), buttons.KEEP.pack())]],
        )
        return
    if waiting.data.get("step") != 2:
        await common.expired_button(update, ctx)
        return
    async with ctx.hub.db.transaction() as s:
        await privacy.erase(
            s,
            user.id,
            now=now,
            removed=erasure.removed_text(ctx.hub.content, ctx.hub.settings.default_language),
            staff=None
            if ctx.hub.settings.counselor_chat_id is None
            else privacy.StaffNotice(ctx.hub.settings.counselor_chat_id, ctx.hub.content, ctx.hub.settings.default_language),
        )
    ctx.hub.languages.forget(user.id)
    # The removals of what staff were sent about the patient go out now, not at the next poll.
    ctx.hub.sender.wake()
    await answer(q)
    await edit(q, c.t("privacy.deleted", lang))


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler("privacy", privacy_cmd, filters=private))
    app.add_handler(CommandHandler("mydata", mydata_cmd, filters=private))
    app.add_handler(CommandHandler("delete", delete_cmd, filters=private))
    app.add_handler(CallbackQueryHandler(privacy_button, pattern=buttons.PRIVACY.pattern))
