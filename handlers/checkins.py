"""Telegram adapters for check-ins, assessments, /days, /progress and /patient (thin)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Message, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from bot.assessments import buttons as assessment_buttons
from bot.assessments import service as assessments
from bot.checkins import buttons, progress, sobriety
from bot.checkins import service as checkins
from bot.checkins.rules import checkin_content_for
from bot.core import people
from bot.core.conversation import Result
from bot.core.hub import Hub
from bot.core.people import PatientInfo
from bot.core.roles import COUNSELOR
from bot.core.state import Awaiting
from bot.escalation.rules import Workflow
from bot.platform.callbacks import Pressed, Stale
from bot.platform.clock import local_date
from bot.privacy import erasure
from bot.safety.service import Detection
from handlers.common import expired_button, not_enrolled, require_patient, require_role
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import answer, close_question, edit, keyboard, replied, reply, reply_in, sent_in

PRIVATE = filters.ChatType.PRIVATE
log = logging.getLogger(__name__)


async def _queue(s: AsyncSession, hub: Hub, update: Update, result: Result | None, now: datetime) -> list[int] | None:
    """A result that must arrive (`Result.must_arrive`) goes to the outbox in the transaction that
    recorded it, the crisis lane first (handlers/ui.py `reply_in`); None for any other."""
    if result is None or not result.must_arrive:
        return None
    screens = [(screen.text, screen.rows or None) for screen in result.screens]
    return await reply_in(s, hub.inbox, update, screens, now=now, urgent=result.crisis)


async def _show(update: Update, result: Result) -> None:
    """The first screen replaces the pressed message (or answers the command); the rest follow."""
    q = update.callback_query
    for i, screen in enumerate(result.screens):
        if i == 0 and q is not None:
            await edit(q, screen.text, screen.rows or None)
        else:
            await reply(update, screen.text, screen.rows or None)


async def checkin_cmd(update: Update, ctx: Ctx) -> None:
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    hub = ctx.hub
    async with hub.db.transaction() as s:
        result = await checkins.start(s, hub.content, patient, hub.clock.now())
    await _show(update, result)


async def _step(s: AsyncSession, hub: Hub, patient: PatientInfo, pressed: Pressed | None) -> Result | None:
    """The check-in step a button asks for; None when the button is stale or malformed."""
    if pressed is None:
        return None
    now = hub.clock.now()
    c, wf = hub.content, hub.get(Workflow)
    codec, values = pressed.codec, pressed.values
    if codec is buttons.START:
        return await checkins.start(s, c, patient, now)
    if codec is buttons.ANSWER:
        return await checkins.answer(s, wf, c, patient, *values, now)
    if codec is buttons.TOGGLE:
        return await checkins.toggle(s, c, patient, *values, now)
    if codec is buttons.DONE:
        return await checkins.multi_done(s, wf, c, patient, *values, now)
    if codec is buttons.SKIP:
        return await checkins.skip(s, wf, c, patient, *values, now)
    if codec is buttons.BACK:
        return await checkins.back(s, c, patient, now)
    if codec is buttons.CANCEL:
        return await checkins.cancel_checkin(s, c, patient, now)
    if codec is buttons.TALK:
        return Result([await checkins.talk_request(s, wf, c, patient, values[0] == "y", now)])
    if codec is buttons.MILESTONE:
        days, share = values
        return Result([await checkins.share_milestone(s, c, patient, days, share == "y", now)])
    return None


# The buttons of a check-in question (answer, tick, done, skip, back).
_QUESTION = frozenset({buttons.ANSWER, buttons.TOGGLE, buttons.DONE, buttons.SKIP, buttons.BACK})


async def checkin_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    if q is None or q.data is None:
        return
    hub = ctx.hub
    if replied(hub.inbox, update):
        await answer(q)
        return
    try:
        pressed: Pressed | None = buttons.CHECKIN.parse(q.data)
    except Stale:
        pressed = None
    # One unit of work per press: who is pressing, and the step (the hot path of the bot).
    async with hub.db.transaction() as s:
        patient = await people.active_patient_info(s, q.from_user.id)
        result = None if patient is None else await _step(s, hub, patient, pressed)
        if result is None and patient is not None and pressed is not None and pressed.codec in _QUESTION:
            # A question the check-in has moved past (its screen was not replaced, e.g. the bot
            # restarted just after recording the answer): go on where the check-in is.
            result = await checkins.resume(s, hub.content, patient, hub.clock.now())
        queued = await _queue(s, hub, update, result, hub.clock.now())
    if patient is None:
        await not_enrolled(update, ctx)
        return
    if result is None or pressed is None:
        await expired_button(update, ctx)
        return
    await answer(q)
    if pressed.codec in (buttons.TALK, buttons.MILESTONE):
        # Keep the closing words and any other buttons (the urge tools); add the confirmation.
        msg = q.message
        markup = getattr(msg, "reply_markup", None)
        rows = [
            [(b.text, b.callback_data) for b in row if isinstance(b.callback_data, str) and not pressed.codec.made(b.callback_data)]
            for row in (markup.inline_keyboard if markup is not None else ())
        ]
        rows = [r for r in rows if r]
        try:
            await q.edit_message_reply_markup(keyboard(rows) if rows else None)
        except TelegramError:
            pass
        await reply(update, result.screens[0].text)
        return
    if queued is not None:
        sent_in(update, queued)
        return
    await _show(update, result)


async def note_text(update: Update, ctx: Ctx, awaiting: Awaiting) -> None:
    msg = update.effective_message
    patient = await require_patient(update, ctx)
    if patient is None or msg is None or msg.text is None:
        return
    hub = ctx.hub
    if replied(hub.inbox, update):
        return
    async with hub.db.transaction() as s:
        result = await checkins.note(
            s, hub.get(Workflow), hub.get(Detection), hub.content, patient, msg.text, hub.clock.now()
        )
        queued = await _queue(s, hub, update, result, hub.clock.now())
    if result is None:
        await reply(update, hub.content.t("common.free_text", ctx.lang))
        return
    if queued is not None:
        sent_in(update, queued)
    await close_question(update, buttons.CHECKIN)  # the note question's Skip and Back go, as a press would take them
    if queued is not None:
        return
    await _show(update, result)
    hub.sender.wake()


async def assessment_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    if q is None or q.data is None:
        return
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    hub = ctx.hub
    if replied(hub.inbox, update):
        await answer(q)
        return
    try:
        pressed = assessment_buttons.ASSESSMENT.parse(q.data)
    except Stale:
        await expired_button(update, ctx)
        return
    async with hub.db.transaction() as s:
        result = await _assessment_step(s, hub, patient, pressed)
        if result is None and pressed.codec in _ASSESSMENT_QUESTION:
            # A question the questionnaire has moved past: go on where it is.
            result = await assessments.carry_on(s, hub.content, patient, pressed.values[0], hub.clock.now())
        queued = await _queue(s, hub, update, result, hub.clock.now())
    if result is None:
        await expired_button(update, ctx)
        return
    if queued is not None:
        sent_in(update, queued)  # first: what it says must not wait for the answer to the press
        await answer(q)
        return
    await answer(q)
    await _show(update, result)
    hub.sender.wake()


# The buttons of a questionnaire's question (answer, the follow-up's yes or no, back).
_ASSESSMENT_QUESTION = frozenset({assessment_buttons.ANSWER, assessment_buttons.FOLLOWUP, assessment_buttons.BACK})


async def _assessment_step(s: AsyncSession, hub: Hub, patient: PatientInfo, pressed: Pressed) -> Result | None:
    """The questionnaire step a button asks for; None when the button is stale."""
    now = hub.clock.now()
    c = hub.content
    codec, values = pressed.codec, pressed.values
    if codec is assessment_buttons.START:
        return await assessments.start(s, c, patient, *values, now)
    if codec is assessment_buttons.ANSWER:
        return await assessments.answer(s, hub.get(Workflow), c, patient, *values, now)
    if codec is assessment_buttons.RESUME:
        return await assessments.resume(s, c, patient, *values, now)
    if codec is assessment_buttons.FOLLOWUP:
        return await assessments.followup_answer(s, hub.get(Workflow), c, patient, *values, now)
    if codec is assessment_buttons.BACK:
        return await assessments.back(s, c, patient, *values, now)
    if codec is assessment_buttons.CANCEL:
        return await assessments.cancel(s, c, patient, *values, now)
    return None


async def days_cmd(update: Update, ctx: Ctx) -> None:
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    hub = ctx.hub
    c = hub.content
    lang = ctx.lang
    now = hub.clock.now()
    today = local_date(now, patient.timezone)
    async with hub.db.transaction() as s:
        nums, milestone = await sobriety.counter(s, patient.id, checkin_content_for(c).milestones, today, now)
    if nums is None:
        await reply(update, c.t("checkins.days_no_date", lang))
        return
    text = c.t(
        "checkins.days",
        lang,
        current=nums.current_days,
        since=nums.streak_start.strftime("%b %d, %Y"),
        longest=nums.longest_days,
        total=nums.total_days,
    )
    if nums.lapses:
        text += "\n\n" + c.t("checkins.days_lapses", lang, lapses=nums.lapses)
    await reply(update, text)
    if milestone is not None:
        screen = checkins.milestone_screen(c, lang, milestone)
        await reply(update, screen.text, screen.rows)


async def progress_cmd(update: Update, ctx: Ctx) -> None:
    user = update.effective_user
    if ctx.args and user is not None and await ctx.hub.roles.has(user.id, COUNSELOR):
        # `/progress <code>` from a counselor: the counselor view of that patient.
        await patient_cmd(update, ctx)
        return
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    hub = ctx.hub
    async with hub.db.session() as s:
        p = await progress.progress(s, hub.content, patient, hub.clock.now())
    await _photo(update, p.chart, hub.content.t("progress.caption", ctx.lang))
    await reply(update, p.summary)


async def _photo(update: Update, data: bytes, caption: str) -> Message | None:
    chat = update.effective_chat
    if chat is None:
        return None
    return await chat.get_bot().send_photo(chat.id, photo=data, caption=caption, filename="progress.png")


async def patient_cmd(update: Update, ctx: Ctx) -> None:
    if not await require_role(update, ctx, COUNSELOR):
        return
    hub = ctx.hub
    c = hub.content
    chat = update.effective_chat
    user = update.effective_user
    if chat is None or user is None:
        return
    if chat.type != ChatType.PRIVATE:
        await reply(update, c.t("progress.dm_only", ctx.lang))
        return
    args: list[Any] = list(ctx.args or [])
    if len(args) != 1 or len(str(args[0])) > 16:
        await reply(update, c.t("progress.usage", ctx.lang))
        return
    async with hub.db.transaction() as s:
        view = await progress.counselor_view(s, c, str(args[0]), user.id, hub.clock.now(), zone=hub.settings.default_timezone)
    if view is None:
        await reply(update, c.t("progress.not_found", ctx.lang))
        return
    shown = [await reply(update, view.text), await _photo(update, view.chart, c.t("progress.staff_caption", ctx.lang, code=view.code))]
    # Remembered, so the patient's erasure takes the view back from this chat.
    async with hub.db.transaction() as s:
        await erasure.remember(
            s, view.patient_id, chat.id, [m.message_id for m in shown if m is not None], hub.clock.now(),
            removed=erasure.removed_text(c, hub.settings.default_language),
        )
    hub.sender.wake()


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("checkin", checkin_cmd, filters=PRIVATE))
    app.add_handler(CommandHandler("days", days_cmd, filters=PRIVATE))
    app.add_handler(CommandHandler("progress", progress_cmd, filters=PRIVATE))
    app.add_handler(CommandHandler("patient", patient_cmd))
    app.add_handler(CallbackQueryHandler(checkin_button, pattern=buttons.CHECKIN.pattern))
    app.add_handler(CallbackQueryHandler(assessment_button, pattern=assessment_buttons.ASSESSMENT.pattern))
    router.on(checkins.NOTE_STATE, note_text)
