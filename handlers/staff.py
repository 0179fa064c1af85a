"""Staff administration: /grant, /revoke and /staff (admins), the Telegram side, and each staff
member's command menu (DESIGN §2.1). Thin: parse, authorise, call a service in a unit of work,
render the result.
"""

from __future__ import annotations

import logging

from telegram import BotCommandScopeChat, Update
from telegram.ext import Application, CommandHandler

from bot.core import staff
from bot.core.audit import audit
from bot.core.hub import Hub
from bot.core.roles import ADMIN
from handlers import common, set_staff_commands
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import reply

log = logging.getLogger(__name__)


def _grant_args(args: list[str]) -> tuple[int, str] | None:
    if len(args) != 2 or not args[0].isdigit() or len(args[0]) > 15:
        return None
    role = staff.parse_role(args[1])
    uid = int(args[0])
    return (uid, role) if role and uid > 0 else None


async def refresh_menu(ctx: Ctx, user_id: int) -> None:
    async with ctx.hub.db.session() as s:
        roles = await staff.roles_in_db(s, user_id)
    if ctx.hub.settings.is_admin(user_id):
        roles.add(ADMIN)
    if roles:
        await set_staff_commands(ctx.application, ctx.hub, user_id, roles)
        return
    try:
        await ctx.bot.delete_my_commands(scope=BotCommandScopeChat(user_id))
    except Exception as exc:
        log.info("staff menu not removed for one user (%s)", type(exc).__name__)


async def grant_cmd(update: Update, ctx: Ctx) -> None:
    await _grant_or_revoke(update, ctx, grant=True)


async def revoke_cmd(update: Update, ctx: Ctx) -> None:
    await _grant_or_revoke(update, ctx, grant=False)


async def _grant_or_revoke(update: Update, ctx: Ctx, *, grant: bool) -> None:
    if not await common.require_role(update, ctx, ADMIN):
        return
    c = ctx.hub.content
    args = list(ctx.args or [])
    if len(args) == 2 and args[1].lower() == ADMIN:
        await reply(update, c.t("staff.admin_fixed", ctx.lang))
        return
    parsed = _grant_args(args)
    if parsed is None:
        await reply(update, c.t("staff.grant_usage" if grant else "staff.revoke_usage", ctx.lang))
        return
    uid, role = parsed
    now = ctx.hub.clock.now()
    async with ctx.hub.db.transaction() as s:
        if grant:
            changed = await staff.grant(s, actor_id=common.user_id(update), telegram_id=uid, role=role, now=now)
        else:
            changed = await staff.revoke(s, actor_id=common.user_id(update), telegram_id=uid, role=role, now=now)
    if grant:
        key = "staff.granted" if changed else "staff.already_granted"
    else:
        key = "staff.revoked" if changed else "staff.not_granted"
    if not grant:
        ctx.hub.roles.forget(uid)
        await ctx.hub.roles.settle_access(uid)
    await reply(update, c.t(key, ctx.lang, user=str(uid), role=role))
    await refresh_menu(ctx, uid)


async def staff_cmd(update: Update, ctx: Ctx) -> None:
    if not await common.require_role(update, ctx, ADMIN):
        return
    c = ctx.hub.content
    if ctx.args:
        await reply(update, c.t("staff.staff_usage", ctx.lang))
        return
    now = ctx.hub.clock.now()
    async with ctx.hub.db.transaction() as s:
        members = await staff.list_staff(s, ctx.hub.settings.admin_user_ids)
        await audit(s, common.user_id(update), "staff.list", now=now)
    lines = [c.t("staff.staff_title", ctx.lang)]
    for m in members:
        lines.append(
            c.t("staff.staff_line", ctx.lang, user=str(m.telegram_id), name=f" ({m.display_name})" if m.display_name else "", roles=", ".join(m.roles))
        )
    if not members:
        lines.append(c.t("staff.staff_none", ctx.lang))
    if ctx.hub.settings.counselor_chat_id is not None:
        lines.append(c.t("staff.staff_group_note", ctx.lang))
    await reply(update, "\n".join(lines))


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    for name, fn in (("grant", grant_cmd), ("revoke", revoke_cmd), ("staff", staff_cmd)):
        app.add_handler(CommandHandler(name, fn))
