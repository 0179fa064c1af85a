"""Safety screening of every private free text, the crisis reply, /talk and the confirm buttons.

Group -50 sees each text (new, edited, photo captions) before any feature. On an explicit crisis
the crisis reply goes out at once, before and independently of any database work; then the flag
is raised. Other texts continue to the features, so conversation flows still receive them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.checkins import lapse
from bot.core import people, state
from bot.core.hub import Hub
from bot.core.vocabulary import Category
from bot.escalation import relay
from bot.escalation.rules import Workflow
from bot.escalation.service import talk_request
from bot.platform.callbacks import Stale
from bot.recovery import buttons as recovery_buttons
from bot.safety import buttons, crisis, signals
from bot.safety import service as safety
from bot.safety.screening import Screening
from bot.safety.service import NO_SIGNAL, Detection, Signal
from bot.safety.signals import SignalKeeper
from handlers.common import require_patient
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import answer, reply, reply_in, sent_in

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE
# Forwarded texts too: whoever wrote them, words of a crisis get the resources.
SCREENED = PRIVATE & (filters.TEXT | filters.CAPTION) & ~filters.COMMAND


def crisis_text(ctx: Ctx, lang: str, plan_lines: list[str] | None = None, category: str | None = None) -> str:
    """The crisis reply from content alone, with the resources for `category`; never raises."""
    hub = ctx.hub
    try:
        return crisis.crisis_message(
            lang,
            hub.get(Workflow).rules.default_region,
            plan_lines,
            hub.settings.office_hours,
            hub.clock.now(),
            zone=hub.settings.default_timezone,
            content=hub.content,
            care_team=False,  # said once we know a flag reached the care team
            category=category,
        )
    except Exception:
        log.exception("crisis: could not build the crisis reply; sending the short form")
        return crisis.short_form(hub.content, lang)


async def send_crisis(update: Update, ctx: Ctx, lang: str, category: str | None = None, kind: str | None = None) -> bool:
    """Reply with crisis resources for `category` now (no database), then the follow-up for
    what the words disclosed (`kind`, e.g. self-harm: wound care). False if Telegram refused it."""
    try:
        await reply(update, crisis_text(ctx, lang, category=category))
    except TelegramError as exc:
        log.warning("crisis: direct reply failed (%s); it goes through the outbox", type(exc).__name__)
        return False
    if kind is not None:
        await _send_followup(update, ctx, lang, kind)
    return True


def _tools_row(ctx: Ctx, lang: str) -> list[list[tuple[str, str]]]:
    return [[(ctx.hub.content.t("safety.sos_button", lang), recovery_buttons.MENU.pack())]]


async def _send_followup(update: Update, ctx: Ctx, lang: str, kind: str) -> None:
    try:
        await reply(update, safety.followup_text(ctx.hub.content, lang, kind), _tools_row(ctx, lang))
    except TelegramError as exc:
        log.info("safety: follow-up not delivered (%s)", type(exc).__name__)


def _known_staff(ctx: Ctx, user_id: int) -> bool:
    """Staff known without the database (configuration, or group membership seen recently)."""
    hub = ctx.hub
    if user_id in hub.settings.admin_user_ids:
        return True
    return hub.roles.known_member(user_id)


async def _is_staff(ctx: Ctx, user_id: int) -> bool:
    try:
        return bool(await ctx.hub.roles.is_staff(user_id))
    except Exception:
        return _known_staff(ctx, user_id)


def _source(update: Update) -> str:
    if update.edited_message is not None:
        return "edited_message"
    msg = update.effective_message
    if msg is not None and msg.text is None and msg.caption is not None:
        return "caption"
    return "message"


async def screen(update: Update, ctx: Ctx) -> None:
    msg = update.effective_message
    user = update.effective_user
    if msg is None or user is None or user.is_bot:
        return
    text = msg.text or msg.caption
    if not text:
        return
    hub = ctx.hub
    try:
        sig = hub.get(Screening).signal_for(text)  # screened once, before the update was let in
    except Exception:
        log.exception("safety: the risk detector failed")
        sig = NO_SIGNAL
    if not sig.any:
        return  # nothing to record: the features take the text
    lang = ctx.lang
    kind = safety.followup_kind(safety.kind_of(sig, hub.content.root), hub.content.root)
    # Handled again after the process died: what was recorded then (the flag, and the crisis
    # reply, sent or queued with it) is not done twice.
    again = RECORDED in hub.inbox.steps(update.update_id)
    replied = again
    if sig.explicit_crisis and not again and not _known_staff(ctx, user.id):
        replied = await send_crisis(update, ctx, lang, sig.resource_category, kind)
    try:
        outcome, listening, in_relay, queued = await _record(
            ctx, update, user.id, text, sig, replied, _source(update), again=again
        )
    except Exception as exc:
        log.error("safety: could not record a risk signal (%s)", type(exc).__name__)
        if sig.explicit_crisis and not replied:
            replied = await send_crisis(update, ctx, lang, sig.resource_category, kind)
        if not _known_staff(ctx, user.id):
            # Kept in memory and retried; the counselors hear of it now (bot/safety/signals.py).
            hub.get(SignalKeeper).hold(user.id, text, sig, source=_source(update), replied=replied)
        if sig.explicit_crisis:
            raise ApplicationHandlerStop from None
        return
    hub.sender.wake()
    if outcome is None:
        # Not a patient. Staff (e.g. a counselor writing to a patient) go on to their flows;
        # anyone else who writes of a crisis gets the resources.
        if sig.explicit_crisis:
            if await _is_staff(ctx, user.id):
                return
            if not replied:
                await send_crisis(update, ctx, lang, sig.resource_category, kind)
            raise ApplicationHandlerStop
        return
    if sig.explicit_crisis:
        if in_relay and not listening:
            return  # the relay passes it on to the counselor who is talking with them
        raise ApplicationHandlerStop
    if in_relay or listening in FREE_TEXT_KINDS:
        return  # the words belong to what they are writing (a note, a plan entry, a reply)
    if outcome.duplicate or outcome.check_id is not None:
        raise ApplicationHandlerStop  # handled already, or the question is on its way
    if outcome.flag is not None:
        sent_in(update, queued)  # the lapse reply or the acknowledgement, written with the flag
        raise ApplicationHandlerStop


# Conversations whose typed text is the patient's own words: a risk signal in them is recorded,
# and the words still go where the patient meant them.
FREE_TEXT_KINDS = frozenset({"checkins:note", "sos:plan_entry", "sos:reflect"})


# The step of an update (bot/platform/inbox.py) that says its risk signal was recorded, in the
# same transaction as its flag or question, after its crisis reply went out (or with it queued).
RECORDED = "safety"


async def _record(
    ctx: Ctx, update: Update, user_id: int, text: str, sig: Signal, replied: bool, source: str, *, again: bool
) -> tuple[safety.SafetyOutcome | None, str | None, bool, list[int]]:
    """The database part: flags, questions, the plan after a crisis reply, and the reply to a
    flag (`_answer_flag`, in the outbox with it); `again`: recorded already by an earlier run
    (nothing more is recorded, as for the same words a moment ago)."""
    hub = ctx.hub
    now = hub.clock.now()
    update_id = update.update_id
    async with hub.db.transaction() as s:
        patient = await people.active_patient_info(s, user_id)
        if patient is None:
            if replied and not again:  # not sent yet: the caller tries it once more, then and again
                await hub.inbox.note_step(s, update_id, RECORDED)
            return None, None, False, []
        if again:
            outcome = safety.SafetyOutcome(sig, sig.explicit_crisis, None, None, duplicate=True)
        else:
            await hub.inbox.note_step(s, update_id, RECORDED)
            outcome = await signals.record(
                s, hub.get(Workflow), hub.get(Detection), patient, text, sig, replied=replied, source=source, now=now
            )
        awaiting = await state.get(s, user_id)
        if awaiting is not None and awaiting.kind not in FREE_TEXT_KINDS and outcome.flag is not None:
            # A risk message is not an answer to a settings or onboarding question: drop the
            # question, so the acknowledgement below is the reply.
            await state.clear(s, user_id)
        listening = awaiting.kind if awaiting is not None else None
        in_relay = await relay.active_for_patient(s, user_id) is not None
        queued: list[int] = []
        answered_here = not (sig.explicit_crisis or in_relay or listening in FREE_TEXT_KINDS)
        if answered_here and outcome.flag is not None and not outcome.duplicate and outcome.check_id is None:
            queued = await _answer_flag(s, ctx, update, outcome.signal, text, now)
        return outcome, listening, in_relay, queued


async def _answer_flag(s: AsyncSession, ctx: Ctx, update: Update, sig: Signal, text: str, now: datetime) -> list[int]:
    """The reply to a risk message that raised a flag, written to the outbox in the flag's
    transaction (so it arrives once even if the process dies right after): the lapse flow for a
    lapse in the patient's words, else the acknowledgement for the severity (if content has one)."""
    hub, lang = ctx.hub, ctx.lang
    if sig.category == "use_disclosure":
        # The lapse flow, as after the check-in: the sober-day counter restarts, the reply
        # reads the patient's words (self-blame, an opioid, missed or extra MAT doses).
        user = update.effective_user
        told = None
        try:
            async with s.begin_nested():
                told = None if user is None else await lapse.typed(s, hub.content, user.id, text, now)
        except Exception:
            log.exception("lapse: could not record a typed lapse")
        body, rows = (told.text, told.rows) if told else lapse.lapse_message(lang, content=hub.content)
        return await reply_in(s, hub.inbox, update, [(body, rows)], now=now, urgent=True)
    key = f"safety.ack.{sig.severity}"
    if not hub.content.has(key, lang):
        return []
    return await reply_in(s, hub.inbox, update, [(hub.content.t(key, lang), None)], now=now, urgent=True)


async def talk_cmd(update: Update, ctx: Ctx) -> None:
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    hub = ctx.hub
    now = hub.clock.now()
    wf = hub.get(Workflow)
    async with hub.db.transaction() as s:
        await talk_request(s, wf, patient.id, now)
        line = await safety.counselor_lead(s, wf, patient, now, crisis=False)
    hub.sender.wake()
    c, lang = hub.content, ctx.lang
    await reply(update, "\n\n".join([c.t("safety.talk_done", lang), line, c.t("safety.talk_safety", lang)]))


_ANSWERS = {buttons.YES: "yes", buttons.YES_BARE: "yes", buttons.NO: "no", buttons.TALK: "talk"}


async def on_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    user = update.effective_user
    if q is None or user is None:
        return
    hub = ctx.hub
    c = hub.content
    try:
        pressed = buttons.SAFETY.parse(q.data)
    except Stale:
        await answer(q, c.t("common.button_expired", ctx.lang))
        return
    now = hub.clock.now()
    # sf:<y|n|t>:<check id>, and "yes" carries the category (sf:y:<id>:<category>).
    if pressed.codec in _ANSWERS:
        ans = _ANSWERS[pressed.codec]
        check_id: int = pressed.values[0]
        lang = ctx.lang
        category = pressed.values[1] if pressed.codec is buttons.YES and Category.known(pressed.values[1]) else None
        # Handled again after the process died: the answer and its crisis reply are in already.
        again = RECORDED in hub.inbox.steps(update.update_id)
        if ans == "yes":
            await answer(q)
            if not again:
                await send_crisis(update, ctx, lang, category)  # at once, before the database
        queued: list[int] = []
        try:
            async with hub.db.transaction() as s:
                await hub.inbox.note_step(s, update.update_id, RECORDED)
                wf = hub.get(Workflow)
                res = await safety.confirm_answer(
                    s, wf, hub.get(Detection), check_id, telegram_id=user.id, answer=ans, now=now
                )
                if res.status == "ok" and res.crisis and res.patient_id is not None:
                    await safety.enqueue_plan(s, wf, res.patient_id, now)
                if res.status == "ok" and ans != "yes":
                    # Sent with the answer it replies to, so it arrives even if the process dies
                    # right after (the crisis lane: it carries 988).
                    queued = await reply_in(
                        s, hub.inbox, update, [_confirm_reply(ctx, ans, res.kind)], now=now, urgent=True, in_place=False
                    )
        except Exception as exc:
            # Every answer reaches the care team: kept in memory and retried (bot/safety/signals.py).
            log.error("safety: could not record the answer to the safety question (%s)", type(exc).__name__)
            hub.get(SignalKeeper).hold_answer(user.id, check_id, ans, category=category)
            if ans != "yes":
                await answer(q)
                await reply(update, c.t("safety.confirm_no_reply" if ans == "no" else "safety.confirm_talk_reply", lang))
            return
        hub.sender.wake()
        if res.status == "not_found":
            if ans != "yes":
                await answer(q, c.t("common.button_expired", ctx.lang))
            return
        sent_in(update, queued)
        if ans != "yes":
            await answer(q, c.t("safety.confirm_done", ctx.lang) if res.status == "answered" else None)
        await _drop_buttons(q)
        return
    if pressed.codec is buttons.FOLLOWUP:
        flag_id, said = pressed.values
        async with hub.db.transaction() as s:
            status = await safety.followup_answer(s, hub.get(Workflow), flag_id, telegram_id=user.id, answer=said, now=now)
        hub.sender.wake()
        lang = ctx.lang
        if status == "not_found":
            await answer(q, c.t("common.button_expired", ctx.lang))
            return
        await answer(q, c.t("safety.confirm_done", lang) if status == "answered" else None)
        await _drop_buttons(q)
        if status == "ok":
            key = "safety.followup_ok_reply" if said == "ok" else "safety.followup_bad_reply"
            await reply(update, c.t(key, lang))
        return
    await answer(q, c.t("common.button_expired", ctx.lang))


def _confirm_reply(ctx: Ctx, ans: str, kind: str | None) -> tuple[str, list[list[tuple[str, str]]] | None]:
    """The reply to "no" (with the tools, in words for what was disclosed) or "talk"."""
    c, lang = ctx.hub.content, ctx.lang
    if ans == "no":
        key = f"safety.confirm_no_reply_{kind}" if kind else "safety.confirm_no_reply"
        if not c.has(key, lang):
            key = "safety.confirm_no_reply"
        return c.t(key, lang), _tools_row(ctx, lang)
    return c.t("safety.confirm_talk_reply", lang), None


async def _drop_buttons(q: CallbackQuery) -> None:
    """Remove the buttons of an answered question (only if it still has some)."""
    msg = q.message
    if msg is None or not getattr(msg, "reply_markup", None):
        return
    try:
        await q.edit_message_reply_markup(None)
    except TelegramError:
        pass


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    app.add_handler(MessageHandler(SCREENED, screen), group=-50)
    app.add_handler(CommandHandler("talk", talk_cmd, filters=PRIVATE))
    app.add_handler(CallbackQueryHandler(on_button, pattern=buttons.SAFETY.pattern))
