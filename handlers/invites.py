"""Cohorts and invites: /cohort (admins), /invite and /invites (counselors), the Telegram side
(DESIGN §2.1). Thin: parse, authorise, call a service in a unit of work, render the result.

Callback data: `inv:rev:<id>` revoke an invite (counselors).
"""

from __future__ import annotations

from telegram import InputFile, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.core.audit import audit
from bot.core.hub import Hub
from bot.core.roles import ADMIN, COUNSELOR
from bot.enrolment import buttons, invites
from bot.enrolment.invites import CohortError
from bot.platform.callbacks import Stale
from bot.platform.content import Content, Html
from handlers import common
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import Button, answer, edit, reply


async def cohort_cmd(update: Update, ctx: Ctx) -> None:
    if not await common.require_role(update, ctx, ADMIN):
        return
    c = ctx.hub.content
    args = list(ctx.args or [])
    sub = args[0].lower() if args else ""
    now = ctx.hub.clock.now()
    actor = common.user_id(update)
    try:
        if sub == "new" and len(args) > 1:
            async with ctx.hub.db.transaction() as s:
                info = await invites.create_cohort(s, " ".join(args[1:]), actor_id=actor, now=now)
            await reply(update, c.t("staff.cohort_created", ctx.lang, id=info.id, name=info.name))
        elif sub == "list":
            async with ctx.hub.db.transaction() as s:
                cohorts = await invites.list_cohorts(s)
                await audit(s, actor, "cohort.list", now=now)
            if not cohorts:
                await reply(update, c.t("staff.cohort_none", ctx.lang))
                return
            lines = [
                c.t("staff.cohort_line", ctx.lang, id=x.id, name=x.name, patients=x.patients,
                    archived=Html(c.t("staff.cohort_archived_mark", ctx.lang)) if x.archived else "")
                for x in cohorts
            ]
            await reply(update, "\n".join(lines))
        elif sub == "rename" and len(args) > 2 and args[1].removeprefix("#").isdigit():
            async with ctx.hub.db.transaction() as s:
                info = await invites.rename_cohort(s, _small_int(args[1]), " ".join(args[2:]), actor_id=actor, now=now)
            await reply(update, c.t("staff.cohort_renamed", ctx.lang, id=info.id, name=info.name))
        elif sub == "archive" and len(args) == 2 and args[1].removeprefix("#").isdigit():
            async with ctx.hub.db.transaction() as s:
                info = await invites.archive_cohort(s, _small_int(args[1]), actor_id=actor, now=now)
            await reply(update, c.t("staff.cohort_archived", ctx.lang, id=info.id, name=info.name))
        else:
            await reply(update, c.t("staff.cohort_usage", ctx.lang))
    except CohortError as exc:
        await reply(update, c.t(_cohort_error_key(exc.reason), ctx.lang))


def _small_int(text: str) -> int:
    digits = text.removeprefix("#")
    return int(digits) if digits.isdigit() and len(digits) < 10 else 0


def _cohort_error_key(reason: str) -> str:
    return {
        "exists": "staff.cohort_exists",
        "unknown": "staff.cohort_unknown",
        "archived": "staff.cohort_is_archived",
        "empty": "staff.cohort_name_bad",
        "too_long": "staff.cohort_name_bad",
    }.get(reason, "staff.cohort_usage")


async def invite_cmd(update: Update, ctx: Ctx) -> None:
    if not await common.require_role(update, ctx, COUNSELOR):
        return
    chat = update.effective_chat
    if chat is None:
        return
    c = ctx.hub.content
    args = list(ctx.args or [])
    reusable = bool(args) and args[-1].lower() == "reusable"
    if reusable:
        args = args[:-1]
    ref = " ".join(args).strip()
    now = ctx.hub.clock.now()
    try:
        async with ctx.hub.db.transaction() as s:
            found = await invites.find_cohort(s, ref) if ref else None
            if ref and found is None:
                raise CohortError("unknown")
            inv = await invites.create_invite(
                s, created_by=common.user_id(update), now=now, cohort_id=found.id if found else None, reusable=reusable
            )
    except CohortError as exc:
        await reply(update, await _invite_usage(ctx, exc.reason))
        return
    link = invites.invite_link(ctx.bot.username, inv.code)
    caption = c.t(
        "staff.invite_created", ctx.lang,
        cohort=Html(c.t("staff.invite_cohort", ctx.lang, name=inv.cohort_name)) if inv.cohort_name else "",
        kind=c.t("staff.invite_reusable", ctx.lang) if inv.reusable else c.t("staff.invite_single", ctx.lang),
        expires=inv.expires_at.strftime("%Y-%m-%d %H:%M"),
        link=link,
    )
    await ctx.bot.send_photo(
        chat.id, photo=InputFile(invites.qr_png(link), filename="invite.png"), caption=caption, parse_mode=ParseMode.HTML
    )


async def _invite_usage(ctx: Ctx, reason: str) -> str:
    """Why no invite was made (no cohort given, or one that does not exist or is archived) and
    how to ask: one line, with the open cohorts to choose from."""
    c, lang = ctx.hub.content, ctx.lang
    async with ctx.hub.db.session() as s:
        cohorts = await invites.list_cohorts(s, include_archived=False)
    if not cohorts:
        return c.t("staff.invite_no_cohorts", lang)
    names = ", ".join(c.t("staff.invite_usage_cohort", lang, id=x.id, name=x.name) for x in cohorts)
    lead = {"unknown": "staff.invite_unknown", "archived": "staff.invite_archived"}.get(reason)
    usage = c.t("staff.invite_usage", lang, cohorts=Html(names), example=cohorts[0].id)
    return (c.t(lead, lang) + " " + usage) if lead else usage


def _invites_view(c: Content, lang: str, items: list[invites.InviteInfo]) -> tuple[str, list[list[Button]]]:
    if not items:
        return c.t("staff.invites_none", lang), []
    lines = [c.t("staff.invites_title", lang)]
    rows: list[list[Button]] = []
    for inv in items[:30]:
        lines.append(
            c.t(
                "staff.invites_line",
                lang,
                id=inv.id,
                cohort=Html(c.t("staff.invite_cohort", lang, name=inv.cohort_name)) if inv.cohort_name else "",
                kind=c.t("staff.invite_reusable", lang) if inv.reusable else c.t("staff.invite_single", lang),
                uses=inv.uses,
                expires=inv.expires_at.strftime("%Y-%m-%d"),
            )
        )
        rows.append([(c.t("staff.invite_revoke_btn", lang, id=inv.id), buttons.REVOKE.pack(inv.id))])
    return "\n".join(lines), rows


async def invites_cmd(update: Update, ctx: Ctx) -> None:
    if not await common.require_role(update, ctx, COUNSELOR):
        return
    if ctx.args:
        await reply(update, ctx.hub.content.t("staff.invites_usage", ctx.lang))
        return
    now = ctx.hub.clock.now()
    async with ctx.hub.db.transaction() as s:
        items = await invites.list_invites(s, now)
        await audit(s, common.user_id(update), "invite.list", now=now)
    text, rows = _invites_view(ctx.hub.content, ctx.lang, items)
    await reply(update, text, rows or None)


async def invites_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    if q is None:
        return
    try:
        (invite_id,) = buttons.REVOKE.parse(q.data)
    except Stale:
        await common.expired_button(update, ctx)
        return
    if not await common.require_role(update, ctx, COUNSELOR):
        return
    c = ctx.hub.content
    now = ctx.hub.clock.now()
    async with ctx.hub.db.transaction() as s:
        done = await invites.revoke_invite(s, invite_id, actor_id=common.user_id(update), now=now)
        items = await invites.list_invites(s, now)
    await answer(q, c.t("staff.invite_revoked", ctx.lang, id=invite_id) if done else c.t("staff.invite_already_revoked", ctx.lang))
    text, rows = _invites_view(c, ctx.lang, items)
    await edit(q, text, rows or None)


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("cohort", cohort_cmd))
    app.add_handler(CommandHandler("invite", invite_cmd))
    app.add_handler(CommandHandler("invites", invites_cmd))
    app.add_handler(CallbackQueryHandler(invites_button, pattern=buttons.INVITES.pattern))
