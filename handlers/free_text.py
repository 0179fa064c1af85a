"""Typed text that no conversation took (the router's default): the Telegram side of
`bot.safety.free_text`. The risk detector has seen the text already (handlers/safety.py, group -50)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application

from bot.core import people
from bot.core.hub import Hub
from bot.core.state import Awaiting
from bot.recovery import buttons
from bot.safety import free_text
from handlers.context import Ctx
from handlers.flags import staff_text
from handlers.router import TextRouter
from handlers.ui import reply


async def answer_text(update: Update, ctx: Ctx, _awaiting: Awaiting) -> None:
    msg = update.effective_message
    user = update.effective_user
    if msg is None or msg.text is None or user is None:
        return
    hub = ctx.hub
    c = hub.content
    async with hub.db.session() as s:
        patient = await people.active_patient_info(s, user.id)
        flow = None if patient is None else await free_text.waiting_flow(s, patient, hub.clock.now(), c.root)
    if patient is None:
        if await staff_text(update, ctx):
            return  # a counselor writing to the patient they are talking with
        staff = await hub.roles.is_staff(user.id)
        await reply(update, c.t("common.free_text_staff" if staff else "common.free_text", ctx.lang))
        return
    lang = ctx.lang
    reading = free_text.read(msg.text, c.root)
    if reading.kind == "distress":
        text = c.t(f"free_text.distress.{reading.group}", lang) + "\n\n" + c.t("free_text.distress_offer", lang)
        await reply(update, text, [[(c.t("free_text.sos_button", lang), buttons.MENU.pack())]])
    elif reading.kind == "thanks":
        await reply(update, c.t("free_text.thanks", lang))
    elif flow is not None:
        await reply(update, c.t(f"free_text.in_flow.{flow}", lang))
    else:
        await reply(update, c.t("common.free_text", lang))


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    router.default = answer_text
