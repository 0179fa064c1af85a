"""/sos, /urge and /plan: the Telegram side of relapse prevention (DESIGN §2.5).

Thin: parse the button or text, call `bot.recovery.sos` / `bot.recovery.plans`, render the reply. Buttons:
`sos:open` (from the check-in), `sos:menu`, `sos:x:<exercise>:<step>`, `sos:c:<exercise>:<step>:<n>`,
`sos:r:<exercise>:<step>:<0-10>`, `sos:plan`, `sos:call`, `sos:helped`, `sos:talk`,
`sos:f:<urge session>:<0-10>`; `pl:menu`, `pl:show`, `pl:s:<section>`, `pl:add:<section>`,
`pl:k:<section>`, `pl:e:<entry>`, `pl:d:<entry>`, `pl:dy:<entry>`, `pl:cancel`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from telegram import CallbackQuery, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.core import state
from bot.core.hub import Hub
from bot.core.people import PatientInfo, active_patient_info
from bot.core.state import Awaiting
from bot.escalation.rules import Workflow
from bot.platform.callbacks import Pressed, Stale
from bot.platform.content import Html
from bot.recovery import buttons, plans, sos, tips
from bot.recovery.plans import SECTIONS, PlanError
from bot.recovery.rules import SosRules
from bot.safety import service as safety
from handlers.common import require_patient
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.ui import answer, close_question, edit, reply

log = logging.getLogger(__name__)

PLAN_STATE = "sos:plan_entry"
REFLECT_STATE = "sos:reflect"
# A typed plan entry is only taken this long after the question was asked.
PLAN_STATE_TTL = timedelta(hours=1)
REFLECT_TTL = timedelta(minutes=30)

Rows = list[list[tuple[str, str]]]


# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------


async def sos_cmd(update: Update, ctx: Ctx) -> None:
    user = update.effective_user
    if user is None:
        return
    async with ctx.hub.db.session() as s:
        patient = await active_patient_info(s, user.id)
    if patient is None:
        # Not enrolled, but maybe in a hard moment: where to find help right now.
        await reply(update, sos.not_enrolled(ctx.hub.content, ctx.lang))
        return
    source = "urge" if (update.effective_message and (update.effective_message.text or "").startswith("/urge")) else "sos"
    await _open(ctx, patient, source)
    text, rows = sos.toolbox(ctx.hub.content, ctx.lang)
    await reply(update, text, rows)


async def tip_cmd(update: Update, ctx: Ctx) -> None:
    """/tip: the next tip of the rotation, on demand."""
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    hub = ctx.hub
    async with hub.db.transaction() as s:
        tip = await tips.tip_on_demand(s, hub.content, patient.id, hub.clock.now())
    if tip is None:
        await reply(update, hub.content.t("common.not_enrolled", ctx.lang))
        return
    await reply(update, hub.content.t("sos.tip.on_demand", ctx.lang, tip=Html(tip.text)))


async def _open(ctx: Ctx, patient: PatientInfo, source: str) -> None:
    hub = ctx.hub
    async with hub.db.transaction() as s:
        await state.clear(s, patient.telegram_id, PLAN_STATE)
        await sos.open_session(s, hub.get(SosRules), patient.id, hub.clock.now(), source)


async def plan_cmd(update: Update, ctx: Ctx) -> None:
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    async with ctx.hub.db.transaction() as s:
        await state.clear(s, patient.telegram_id, PLAN_STATE)
        plan = await plans.get_plan(s, patient.id)
    await _send_plan(update, ctx, patient, plan, _menu_rows(ctx, ctx.lang))


async def _send_plan(
    update: Update, ctx: Ctx, patient: PatientInfo, plan: plans.Plan, rows: Rows, *, hard_moment: bool = False
) -> None:
    order = plans.SOS_ORDER if hard_moment else plans.SECTIONS
    parts = plans.render_plan(ctx.hub.content, ctx.lang, plan, order=order)
    for i, part in enumerate(parts):
        await reply(update, part, rows if i == len(parts) - 1 else None)


def _menu_rows(ctx: Ctx, lang: str) -> Rows:
    c = ctx.hub.content
    sections = [(c.t(f"plan.sections.{s}.button", lang), buttons.PLAN_SECTION.pack(s)) for s in SECTIONS]
    rows: Rows = [sections[i : i + 2] for i in range(0, len(sections), 2)]
    return rows


# ---------------------------------------------------------------------------------------
# /sos buttons
# ---------------------------------------------------------------------------------------


async def on_sos(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    if q is None:
        return
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    note: str | None = None
    try:
        note = await _sos_action(update, ctx, q, patient, buttons.SOS.parse(q.data))
    except Stale:
        note = ctx.hub.content.t("common.button_expired", ctx.lang)
    await answer(q, note)


async def _sos_action(update: Update, ctx: Ctx, q: CallbackQuery, patient: PatientInfo, pressed: Pressed) -> str | None:
    hub = ctx.hub
    c = hub.content
    lang = ctx.lang
    now = hub.clock.now()
    codec, values = pressed.codec, pressed.values
    if codec in (buttons.OPEN, buttons.MENU):
        async with hub.db.transaction() as s:
            if codec is buttons.OPEN or await sos.current_session(s, patient.id, now) is None:
                await sos.open_session(s, hub.get(SosRules), patient.id, now, "checkin" if codec is buttons.OPEN else "sos")
        text, rows = sos.toolbox(c, lang)
        await reply(update, text, rows)
        return None
    if codec is buttons.STEP:
        ex_id, index = values
        ratings: dict[str, int] = {}
        async with hub.db.transaction() as s:
            if index == 0:
                await sos.note_tool(s, patient.id, ex_id, now)
            current = await sos.current_session(s, patient.id, now)
            if current is not None:
                ratings = current.ratings
            view = sos.exercise_view(c, lang, ex_id, index, ratings=ratings)
            if view is None:
                raise Stale
            await _track_reflect(s, patient, view[1], now)
        if index == 0:
            await reply(update, *view)
        else:
            await edit(q, *view)
        return None
    if codec is buttons.CHOICE:
        ex_id, index, choice = values
        view = sos.exercise_view(c, lang, ex_id, index, choice=choice)
        if view is None:
            raise Stale
        await edit(q, *view)
        return None
    if codec is buttons.RATE:
        ex_id, index, value = values
        key = sos.rating_key(c, lang, ex_id, index, value)
        if key is None:
            raise Stale
        async with hub.db.transaction() as s:
            info = await sos.record_rating(s, patient.id, key, value, now)
            view = sos.exercise_view(c, lang, ex_id, index + 1, ratings=info.ratings)
            if view is None:
                raise Stale
            await _track_reflect(s, patient, view[1], now)
        await edit(q, *view)
        return None
    if codec is buttons.SHOW_PLAN:
        async with hub.db.transaction() as s:
            await sos.note_tool(s, patient.id, "plan", now)
            plan = await plans.get_plan(s, patient.id)
        if plan.is_empty:
            await reply(update, c.t("sos.plan_invite", lang), [[(c.t("sos.button.start_plan", lang), buttons.PLAN_MENU.pack())]])
        else:
            rows: Rows = [
                [(c.t("sos.button.edit_plan", lang), buttons.PLAN_MENU.pack())],
                [(c.t("sos.button.more_tools", lang), buttons.MENU.pack())],
            ]
            await _send_plan(update, ctx, patient, plan, rows, hard_moment=True)
        return None
    if codec is buttons.CALL:
        async with hub.db.transaction() as s:
            await sos.note_tool(s, patient.id, "call", now)
            plan = await plans.get_plan(s, patient.id)
        rows = [
            [(c.t("plan.sections.people.button", lang), buttons.PLAN_SECTION.pack("people"))],
            [(c.t("sos.button.more_tools", lang), buttons.MENU.pack())],
        ]
        await reply(update, plans.render_people(c, lang, plan), rows)
        return None
    if codec is buttons.HELPED:
        async with hub.db.session() as s:
            plan = await plans.get_plan(s, patient.id)
        entries = plan.section("coping") + plan.section("reasons")
        if entries:
            text = c.t("sos.helped.title", lang) + "\n" + "\n".join(f"• {plans.entry_line(e)}" for e in entries)
        else:
            text = c.t("sos.helped.none", lang)
        rows = [
            [(c.t("plan.sections.coping.button", lang), buttons.PLAN_SECTION.pack("coping"))],
            [(c.t("sos.button.more_tools", lang), buttons.MENU.pack())],
        ]
        await reply(update, text, rows)
        return None
    if codec is buttons.TALK:
        async with hub.db.transaction() as s:
            res = await sos.request_talk(s, hub.get(Workflow), hub.get(SosRules), patient.id, now)
            # When a counselor will reach out (or the one talking with them right now).
            line = await safety.counselor_lead(s, hub.get(Workflow), patient, now, crisis=False)
        hub.sender.wake()
        text = "\n\n".join(
            [c.t("sos.talk.sent" if res.created else "sos.talk.already", lang), line, c.t("sos.talk.urgent", lang)]
        )
        await reply(update, text, [[(c.t("sos.button.more_tools", lang), buttons.MENU.pack())]])
        return None
    if codec is buttons.FOLLOWUP:
        session_id, value = values
        async with hub.db.transaction() as s:
            result = await sos.answer_followup(s, hub.get(Workflow), hub.get(SosRules), patient.id, session_id, value, now)
        hub.sender.wake()
        if result.status == "unknown":
            raise Stale
        text, rows = sos.followup_reply(c, lang, result)
        await edit(q, text, rows or None)
        return None
    raise Stale


async def _track_reflect(s: Any, patient: PatientInfo, rows: Rows, now: datetime) -> None:
    """While an exercise is open, typed thoughts are welcomed (not stored); its end closes that."""
    if buttons.MENU.pack() in [d for row in rows for _, d in row]:
        await state.clear(s, patient.telegram_id, REFLECT_STATE)
    else:
        await state.set_(s, patient.telegram_id, REFLECT_STATE, {"at": now.isoformat()}, now)


# ---------------------------------------------------------------------------------------
# /plan buttons and typed entries
# ---------------------------------------------------------------------------------------


async def on_plan(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    if q is None:
        return
    patient = await require_patient(update, ctx)
    if patient is None:
        return
    try:
        note = await _plan_action(update, ctx, q, patient, buttons.PLAN.parse(q.data))
    except Stale:
        await answer(q, ctx.hub.content.t("common.button_expired", ctx.lang))
        return
    await answer(q, note, alert=note is not None)


def _section_view(ctx: Ctx, lang: str, section: str, plan: plans.Plan, prefix: str | None = None) -> tuple[str, Rows]:
    c = ctx.hub.content
    entries = plan.section(section)
    lines = [prefix] if prefix else []
    lines.append(c.t(f"plan.sections.{section}.title", lang))
    lines += [f"{i}. {plans.entry_line(e)}" for i, e in enumerate(entries, 1)]
    if section == "professionals":
        lines.append(f"• {c.t('plan.always_988', lang)}")
    if entries:
        lines += ["", c.t("plan.section.hint", lang)]
    elif section != "professionals":
        lines.append(c.t("plan.section.empty", lang))
    rows: Rows = [[(c.t("plan.button.add", lang), buttons.PLAN_ADD.pack(section))]]
    for i, e in enumerate(entries, 1):
        rows.append([(c.t("plan.button.edit", lang, n=i), buttons.PLAN_EDIT.pack(e.id)), (c.t("plan.button.remove", lang, n=i), buttons.PLAN_REMOVE.pack(e.id))])
    rows.append([(c.t("plan.button.back", lang), buttons.PLAN_MENU.pack())])
    return "\n".join(lines), rows


async def _plan_action(update: Update, ctx: Ctx, q: CallbackQuery, patient: PatientInfo, pressed: Pressed) -> str | None:
    hub = ctx.hub
    c = hub.content
    lang = ctx.lang
    now = hub.clock.now()
    codec, values = pressed.codec, pressed.values
    if codec is buttons.PLAN_MENU:
        rows = [*_menu_rows(ctx, lang), [(c.t("plan.button.show", lang), buttons.PLAN_SHOW.pack())]]
        await _show(update, q, c.t("plan.view.title", lang) + "\n" + c.t("plan.menu", lang), rows)
        return None
    if codec is buttons.PLAN_SHOW:
        async with hub.db.session() as s:
            plan = await plans.get_plan(s, patient.id)
        text = "\n\n".join(plans.render_plan(c, lang, plan))
        await _show(update, q, text, _menu_rows(ctx, lang))
        return None
    if codec in (buttons.PLAN_SECTION, buttons.PLAN_KEEP):
        async with hub.db.session() as s:
            plan = await plans.get_plan(s, patient.id)
        await _show(update, q, *_section_view(ctx, lang, values[0], plan))
        return None
    if codec is buttons.PLAN_ADD:
        (section,) = values
        limit = hub.get(SosRules).plan.max_entries_per_section
        async with hub.db.transaction() as s:
            if await plans.count(s, patient.id, section) >= limit:
                return c.t("plan.full_note", lang, limit=limit)
            await state.set_(s, patient.telegram_id, PLAN_STATE, {"section": section, "at": now.isoformat()}, now)
        await _show(update, q, c.t(f"plan.sections.{section}.prompt", lang), _cancel_rows(ctx, lang))
        return None
    if codec is buttons.PLAN_EDIT:
        (entry_id,) = values
        async with hub.db.transaction() as s:
            entry = await plans.get_entry(s, patient.id, entry_id)
            if entry is None:
                raise Stale
            await state.set_(s, patient.telegram_id, PLAN_STATE, {"entry_id": entry_id, "at": now.isoformat()}, now)
        text = c.t("plan.edit_prompt", lang, current=plans.entry_line_plain(entry))
        await _show(update, q, text, _cancel_rows(ctx, lang))
        return None
    if codec is buttons.PLAN_REMOVE:
        (entry_id,) = values
        async with hub.db.session() as s:
            entry = await plans.get_entry(s, patient.id, entry_id)
        if entry is None:
            raise Stale
        rows = [[(c.t("plan.button.yes_remove", lang), buttons.PLAN_REMOVE_YES.pack(entry.id)), (c.t("plan.button.keep", lang), buttons.PLAN_KEEP.pack(entry.section))]]
        await edit(q, c.t("plan.confirm_remove", lang, entry=plans.entry_line_plain(entry)), rows)
        return None
    if codec is buttons.PLAN_REMOVE_YES:
        (entry_id,) = values
        async with hub.db.transaction() as s:
            entry = await plans.get_entry(s, patient.id, entry_id)
            if entry is None:
                raise Stale
            await plans.remove_entry(s, patient.id, entry_id)
            plan = await plans.get_plan(s, patient.id)
        await edit(q, *_section_view(ctx, lang, entry.section, plan, prefix=c.t("plan.removed", lang)))
        return None
    if codec is buttons.PLAN_CANCEL:
        async with hub.db.transaction() as s:
            await state.clear(s, patient.telegram_id, PLAN_STATE)
        await edit(q, c.t("plan.cancelled", lang), [[(c.t("plan.button.back", lang), buttons.PLAN_MENU.pack())]])
        return None
    raise Stale


def _is_plan_message(q: CallbackQuery) -> bool:
    """The pressed message is one of /plan's own screens (all its buttons are plan buttons)."""
    markup = getattr(q.message, "reply_markup", None)
    data = [b.callback_data for row in (markup.inline_keyboard if markup is not None else ()) for b in row]
    return bool(data) and all(buttons.PLAN.owns(d) for d in data)


async def _show(update: Update, q: CallbackQuery, text: str, rows: Rows) -> None:
    """/plan is one message edited in place; a plan button on another message (a lapse reply,
    the /sos toolbox) keeps that message and opens the plan in a new one."""
    if _is_plan_message(q):
        await edit(q, text, rows)
    else:
        await reply(update, text, rows)


def _cancel_rows(ctx: Ctx, lang: str) -> Rows:
    return [[(ctx.hub.content.t("plan.button.cancel", lang), buttons.PLAN_CANCEL.pack())]]


async def plan_text(update: Update, ctx: Ctx, awaiting: Awaiting, typed: str | None = None) -> None:
    """A typed plan entry (new, or the new text of an existing one)."""
    hub = ctx.hub
    c = hub.content
    msg = update.effective_message
    user = update.effective_user
    if msg is None or user is None:
        return
    async with hub.db.session() as s:
        patient = await active_patient_info(s, user.id)
    if patient is None:
        async with hub.db.transaction() as s:
            await state.clear(s, user.id, PLAN_STATE)
        await reply(update, c.t("common.not_enrolled", ctx.lang))
        return
    lang = ctx.lang
    now = hub.clock.now()
    data = awaiting.data
    if _stale(data.get("at"), now):
        async with hub.db.transaction() as s:
            await state.clear(s, user.id, PLAN_STATE)
        await reply(update, c.t("plan.expired", lang))
        return
    section: str | None = data.get("section")
    raw = typed if typed is not None else msg.text
    try:
        async with hub.db.transaction() as s:
            if data.get("entry_id") is not None:
                entry = await plans.edit_entry(s, hub.get(SosRules).plan, patient.id, int(data["entry_id"]), raw, now)
            elif section is not None:
                entry = await plans.add_entry(s, hub.get(SosRules).plan, patient.id, section, raw, now)
            else:
                raise PlanError("unknown_section")
            await state.clear(s, user.id, PLAN_STATE)
            plan = await plans.get_plan(s, patient.id)
    except PlanError as exc:
        await close_question(update, buttons.PLAN)  # the answer below carries the buttons that still apply
        keep = exc.code not in ("not_found", "full", "unknown_section")
        if not keep:
            async with hub.db.transaction() as s:
                await state.clear(s, user.id, PLAN_STATE)
        rows = _cancel_rows(ctx, lang) if keep else [[(c.t("plan.button.back", lang), buttons.PLAN_MENU.pack())]]
        await reply(update, c.t(f"plan.error.{exc.code}", lang, **exc.kwargs), rows)
        return
    await close_question(update, buttons.PLAN)  # the entry is taken: the prompt's Cancel goes
    await reply(update, *_section_view(ctx, lang, entry.section, plan, prefix=c.t("plan.saved", lang)))


async def on_contact(update: Update, ctx: Ctx) -> None:
    """A contact shared from the phone book while adding a person to the plan."""
    hub = ctx.hub
    msg = update.effective_message
    user = update.effective_user
    if msg is None or user is None or msg.contact is None:
        return
    async with hub.db.session() as s:
        awaiting = await state.get(s, user.id)
    data = awaiting.data if awaiting is not None and awaiting.kind == PLAN_STATE else {}
    if data.get("section") not in plans.PHONE_SECTIONS:
        await reply(update, hub.content.t("common.text_only", ctx.lang))
        return
    contact = msg.contact
    number = contact.phone_number.strip()
    if number.isdigit() and len(number) >= 11:
        number = "+" + number  # the app shares numbers in international form without the +
    name = " ".join(x for x in (contact.first_name, contact.last_name) if x)
    await plan_text(update, ctx, Awaiting(PLAN_STATE, data), f"{name} {number}")


async def reflect_text(update: Update, ctx: Ctx, awaiting: Awaiting) -> None:
    """Something typed during an exercise (e.g. playing the tape forward): acknowledged."""
    hub = ctx.hub
    user = update.effective_user
    if user is None:
        return
    now = hub.clock.now()
    async with hub.db.session() as s:
        patient = await active_patient_info(s, user.id)
    lang = ctx.lang
    if patient is None or _stale(awaiting.data.get("at"), now, REFLECT_TTL):
        async with hub.db.transaction() as s:
            await state.clear(s, user.id, REFLECT_STATE)
        await reply(update, hub.content.t("common.free_text", lang))
        return
    await reply(update, hub.content.t("sos.exercise.reflect", lang))


def _stale(at: Any, now: datetime, ttl: timedelta = PLAN_STATE_TTL) -> bool:
    if not isinstance(at, str):
        return False
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return False
    return now - when > ttl


# ---------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler(["sos", "urge"], sos_cmd, filters=private))
    app.add_handler(CommandHandler("plan", plan_cmd, filters=private))
    app.add_handler(CommandHandler("tip", tip_cmd, filters=private))
    app.add_handler(CallbackQueryHandler(on_sos, pattern=buttons.SOS.pattern))
    app.add_handler(CallbackQueryHandler(on_plan, pattern=buttons.PLAN.pattern))
    app.add_handler(MessageHandler(filters.CONTACT & private, on_contact))
    router.on(PLAN_STATE, plan_text)
    router.on(REFLECT_STATE, reflect_text)
