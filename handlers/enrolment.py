"""Enrolment: onboarding, /start and /settings, the Telegram side (DESIGN §1, §2.1). Thin: parse,
authorise, call a service in a unit of work, render the result.

Callback data:
- `ob:<step>:<value>` onboarding answers (age, con, tz, tm, sob, mat, med: d | w | m)
- `st:<what>[:<value>]` settings
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from telegram import KeyboardButton, ReplyKeyboardMarkup, ReplyKeyboardRemove, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.core import state, timefmt
from bot.core.hub import Hub
from bot.core.lifecycle import Lifecycle
from bot.core.people import PatientInfo, active_patient_info
from bot.core.state import Awaiting
from bot.enrolment import buttons, onboarding
from bot.enrolment import settings as settings_service
from bot.enrolment.buttons import Answers
from bot.enrolment.onboarding import (
    AGE,
    CHECKIN_TIME,
    CONSENT,
    MAT,
    MAT_SCHEDULE,
    SOBRIETY,
    TIMEZONE,
    DateProblem,
    Progress,
)
from bot.enrolment.timezones import COMMON_ZONES, parse_zone, zone_at
from bot.enrolment.timezones import label as zone_label
from bot.platform.callbacks import Codec, Stale
from bot.platform.clock import local_date
from bot.platform.content import Content, Html
from handlers import common
from handlers.context import Ctx
from handlers.router import TextRouter
from handlers.staff import refresh_menu
from handlers.ui import Button, answer, close_question, edit, reply

SETTING_KIND = "onboarding:setting"
# In chat state data: a reply keyboard (share location) is showing and must be removed later.
KEYBOARD_SHOWN = "kb"
_STEPS: dict[Codec, str] = {
    buttons.AGE: AGE, buttons.CONSENT: CONSENT, buttons.ONBOARDING.timezone: TIMEZONE, buttons.ONBOARDING.time: CHECKIN_TIME,
    buttons.ONBOARDING.sobriety: SOBRIETY, buttons.ONBOARDING.mat: MAT, buttons.ONBOARDING.schedule: MAT_SCHEDULE,
}
# How often the MAT medication is taken, as a button's value.
_SCHEDULE_CODES = {"d": "daily", "w": "weekly", "m": "monthly"}
_SETTING_FIELDS = {"tz": "timezone", "tm": "checkin_time", "sob": "sobriety_date"}
_ASK_KEY = {
    AGE: "onboarding.ask_age",
    TIMEZONE: "onboarding.ask_timezone",
    CHECKIN_TIME: "onboarding.ask_checkin_time",
    SOBRIETY: "onboarding.ask_sobriety",
    MAT: "onboarding.ask_mat",
    MAT_SCHEDULE: "onboarding.ask_mat_schedule",
}


def _now(ctx: Ctx) -> datetime:
    return ctx.hub.clock.now()


# Questions -------------------------------------------------------------------------------------


def time_buttons(c: Content, lang: str) -> list[tuple[str, str]]:
    """The offered check-in times: (HH:MM, label in the language's clock format)."""
    out = []
    for v in c.raw("onboarding_data.time_buttons", lang):
        t = time.fromisoformat(str(v))
        out.append((t.strftime("%H:%M"), timefmt.clock(c, lang, t)))
    return out


def time_label(c: Content, t: time | None, lang: str) -> str:
    return c.t("settings.not_set", lang) if t is None else timefmt.clock(c, lang, t)


def storage_line(c: Content, lang: str, encrypted: bool) -> str:
    """How free text is stored, as it really is here (never claims encryption that is off)."""
    return c.t("privacy.storage_encrypted" if encrypted else "privacy.storage_plain", lang)


def consent_text(c: Content, lang: str, *, encrypted: bool = False) -> tuple[str, str]:
    """The consent in the person's language, and its version. `encrypted`: whether free text is
    encrypted at rest here (ENCRYPTION_KEY); the consent says only what is true."""
    doc = c.data("consent.yaml", lang)
    facts = {"{storage}": storage_line(c, lang, encrypted), "{retention}": c.t("privacy.retention", lang)}
    parts = [f"<b>{doc['title']}</b>"]
    for sec in doc["sections"]:
        text = str(sec["text"])
        for placeholder, fact in facts.items():
            text = text.replace(placeholder, fact)
        parts.append(c.t("onboarding.consent_heading", lang, heading=str(sec["heading"])) + "\n" + text)
    parts.append(str(doc["question"]))
    return "\n\n".join(parts), str(doc["version"])


def question(
    c: Content, step: str, lang: str, answers: Answers = buttons.ONBOARDING, *, encrypted: bool = False
) -> tuple[str, list[list[Button]]]:
    """The text and buttons asking for one step (`answers`: onboarding's or settings')."""
    if step == AGE:
        return c.t(_ASK_KEY[AGE], lang), [
            [(c.t("onboarding.age_yes", lang), buttons.AGE.pack("y"))],
            [(c.t("onboarding.age_no", lang), buttons.AGE.pack("n"))],
        ]
    if step == CONSENT:
        text, _ = consent_text(c, lang, encrypted=encrypted)
        return text, [[(c.t("onboarding.consent_yes", lang), buttons.CONSENT.pack("y")), (c.t("onboarding.consent_no", lang), buttons.CONSENT.pack("n"))]]
    if step == TIMEZONE:
        zones = [(lbl, answers.timezone.pack(str(i))) for i, (lbl, _z) in enumerate(COMMON_ZONES)]
        rows = [zones[i : i + 2] for i in range(0, len(zones), 2)]
        rows.append([(c.t("onboarding.other_zone", lang), answers.timezone.pack("other"))])
        return c.t(_ASK_KEY[TIMEZONE], lang), rows
    if step == CHECKIN_TIME:
        btns = [(lbl, answers.time.pack(v.replace(":", ""))) for v, lbl in time_buttons(c, lang)]
        return c.t(_ASK_KEY[CHECKIN_TIME], lang), [btns[i : i + 4] for i in range(0, len(btns), 4)]
    if step == SOBRIETY:
        rows = [[(c.t("onboarding.skip", lang), answers.sobriety.pack("skip"))]]
        if answers is buttons.SETTINGS:
            rows.insert(0, [(c.t("settings.btn_clear_sobriety", lang), answers.sobriety.pack("clear"))])
        return c.t(_ASK_KEY[SOBRIETY], lang), rows
    if step == MAT:
        return c.t(_ASK_KEY[MAT], lang), [[(c.t("onboarding.btn_yes", lang), answers.mat.pack("y")), (c.t("onboarding.btn_no", lang), answers.mat.pack("n"))]]
    if step == MAT_SCHEDULE:
        return c.t(_ASK_KEY[MAT_SCHEDULE], lang), [
            [(c.t(f"onboarding.schedule.{name}", lang), answers.schedule.pack(code))] for code, name in _SCHEDULE_CODES.items()
        ]
    raise ValueError(step)


def sobriety_echo(c: Content, lang: str, d: date, answers: Answers) -> tuple[str, list[list[Button]]]:
    """A typed sobriety date read back for confirmation: yes (saves it) / change (asks again)."""
    change = answers.sobriety.pack("change") if answers is buttons.ONBOARDING else buttons.OPEN_SOBRIETY.pack()
    return c.t("onboarding.confirm_sobriety", lang, date=timefmt.day(c, lang, d)), [
        [(c.t("onboarding.sobriety_yes", lang), answers.sobriety.pack(f"d{d:%Y%m%d}")), (c.t("onboarding.sobriety_change", lang), change)]
    ]


def echoed_date(value: str, zone: str, now: datetime) -> date | None:
    """The date of a confirm button (`d20260115`), if it is still a valid sobriety date."""
    if len(value) != 9 or value[0] != "d" or not value[1:].isdigit():
        return None
    try:
        return onboarding.parse_past_date(f"{value[1:5]}-{value[5:7]}-{value[7:]}", local_date(now, zone))
    except DateProblem:
        return None


def location_keyboard(c: Content, lang: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        [[KeyboardButton(c.t("onboarding.share_location", lang), request_location=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


async def ask_step(update: Update, ctx: Ctx, step: str | None, lang: str, *, before: str | None = None) -> None:
    c = ctx.hub.content
    if step is None:
        return
    text, rows = question(c, step, lang, encrypted=ctx.hub.settings.encryption_key is not None)
    if before:
        text = before + "\n\n" + text
    await reply(update, text, rows)


async def _answered(update: Update, ctx: Ctx, step: str, lang: str, label: str) -> None:
    """Show the answer on the question's message (its buttons go away)."""
    q = update.callback_query
    if q is None:
        return
    c = ctx.hub.content
    shown = getattr(q.message, "text_html", None) if q.message is not None else None
    text = shown if isinstance(shown, str) and shown else question(c, step, lang)[0]
    await edit(q, c.t("onboarding.answered", lang, question=Html(text), answer=label))


# /start and onboarding -------------------------------------------------------------------------


async def start_cmd(update: Update, ctx: Ctx) -> None:
    user = update.effective_user
    if user is None:
        return
    payload = ctx.args[0] if ctx.args else None
    c = ctx.hub.content
    async with ctx.hub.db.transaction() as s:
        prog = await onboarding.start(s, user.id, payload, _now(ctx), language=ctx.lang)
    ctx.hub.languages.forget(user.id)  # a patient (with this language) may have been created
    lang = ctx.lang
    if prog.kind == "active":
        assert prog.patient is not None
        await reply(update, c.t("onboarding.already_enrolled", lang, code=prog.patient.code))
    elif prog.kind == "step":
        fresh = prog.step == AGE and bool(payload)
        before = c.t("onboarding.welcome", lang) if fresh else c.t("onboarding.welcome_back", lang)
        await ask_step(update, ctx, prog.step, lang, before=before)
    elif prog.kind == "invite":
        await reply(update, c.t(f"onboarding.invite_{prog.invite_status}", lang))
    else:
        if await ctx.hub.roles.is_staff(user.id):
            await refresh_menu(ctx, user.id)
        await common.start_fallback(update, ctx)


async def onboarding_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    user = update.effective_user
    if q is None:
        return
    chat = update.effective_chat
    if user is None or q.message is None or chat is None or chat.type != "private":
        await common.expired_button(update, ctx)
        return
    try:
        pressed = buttons.ONBOARDING.family.parse(q.data)
    except Stale:
        await common.expired_button(update, ctx)
        return
    step = _STEPS[pressed.codec]
    (value,) = pressed.values
    c = ctx.hub.content
    now = _now(ctx)
    async with ctx.hub.db.session() as s:
        prog = await onboarding.current(s, user.id)
    lang = ctx.lang
    label = _button_label(q.message, q.data or "")
    if prog.kind == "step" and prog.step is not None and prog.step != step:
        # A question onboarding has moved past (the next one never reached the screen, e.g. the
        # bot restarted just after recording the answer): ask the one it is on.
        await answer(q)
        await ask_step(update, ctx, prog.step, lang, before=c.t("onboarding.welcome_back", lang))
        return
    if prog.kind != "step" or prog.step != step:
        await common.expired_button(update, ctx)
        return
    if step == SOBRIETY and value == "change":
        await answer(q)
        await edit(q, *question(c, SOBRIETY, lang))
        return
    if step == TIMEZONE and value == "other":
        async with ctx.hub.db.transaction() as s:
            await state.set_(s, user.id, onboarding.STATE_KIND, {KEYBOARD_SHOWN: True}, now)
        await answer(q)
        await reply(update, c.t("onboarding.type_zone", lang), markup=location_keyboard(c, lang))
        return
    shown = False
    try:
        async with ctx.hub.db.transaction() as s:
            waiting = await state.get(s, user.id)
            shown = waiting is not None and bool(waiting.data.get(KEYBOARD_SHOWN))
            zone = prog.patient.timezone if prog.patient is not None else ctx.hub.settings.default_timezone
            prog = await _apply_button(
                s, user.id, user.first_name, step, value, c, lang, now, zone, ctx.hub.lifecycle
            )
    except ValueError:
        prog = Progress("stale")
    if prog.kind == "stale":
        await common.expired_button(update, ctx)
        return
    await answer(q)
    await _answered(update, ctx, step, lang, label)
    if step == TIMEZONE and shown and prog.patient is not None:
        await reply(update, c.t("onboarding.zone_set", lang, zone=prog.patient.timezone), markup=ReplyKeyboardRemove())
    await _after_step(update, ctx, prog, lang)


async def _apply_button(
    s: Any,
    user_id: int,
    first_name: str | None,
    step: str,
    value: str,
    c: Content,
    lang: str,
    now: datetime,
    zone: str,
    lifecycle: Lifecycle,
) -> Progress:
    if step == AGE and value in ("y", "n"):
        return await onboarding.answer_age(s, user_id, value == "y", now)
    if step == CONSENT and value in ("y", "n"):
        _, version = consent_text(c, lang)
        return await onboarding.answer_consent(
            s, user_id, value == "y", version=version, first_name=first_name, now=now
        )
    if step == TIMEZONE and value.isdigit() and int(value) < len(COMMON_ZONES):
        return await onboarding.answer_timezone(s, user_id, COMMON_ZONES[int(value)][1], now)
    if step == CHECKIN_TIME:
        t = _button_time(value)
        if t is not None:
            return await onboarding.answer_checkin_time(s, user_id, t, now)
    if step == SOBRIETY and value == "skip":
        return await onboarding.answer_sobriety(s, user_id, None, now)
    if step == SOBRIETY and (d := echoed_date(value, zone, now)) is not None:
        return await onboarding.answer_sobriety(s, user_id, d, now)
    if step == MAT and value in ("y", "n"):
        return await onboarding.answer_mat(s, user_id, value == "y", now, lifecycle=lifecycle)
    if step == MAT_SCHEDULE and value in _SCHEDULE_CODES:
        return await onboarding.answer_mat_schedule(s, user_id, _SCHEDULE_CODES[value], now, lifecycle=lifecycle)
    return Progress("stale")


def _button_time(value: str) -> time | None:
    if len(value) != 4 or not value.isdigit():
        return None
    h, m = int(value[:2]), int(value[2:])
    return time(h, m) if h < 24 and m < 60 else None


def _button_label(message: Any, data: str) -> str:
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()) or ():
        for b in row:
            if getattr(b, "callback_data", None) == data:
                return str(b.text)
    return ""


async def _after_step(update: Update, ctx: Ctx, prog: Progress, lang: str, *, before: str | None = None) -> None:
    """What to say once a step was answered: the next question, a goodbye, or the tour."""
    c = ctx.hub.content
    if prog.kind in ("erased", "invite"):
        ctx.hub.languages.forget(common.user_id(update))  # their stored language went with them
    if prog.kind == "erased":
        key = "onboarding.under_age" if prog.step == AGE else "onboarding.declined"
        await reply(update, c.t(key, lang))
    elif prog.kind == "invite":
        await reply(update, c.t(f"onboarding.invite_{prog.invite_status}", lang))
    elif prog.kind == "done":
        assert prog.patient is not None
        ctx.hub.sender.wake()
        await reply(update, c.t("onboarding.done", lang, time=time_label(c, prog.patient.checkin_time, lang)))
    elif prog.kind == "step":
        if prog.step == TIMEZONE and prog.patient is not None:
            before = c.t("onboarding.consented", lang, code=prog.patient.code)
        await ask_step(update, ctx, prog.step, lang, before=before)


async def onboarding_text(update: Update, ctx: Ctx, awaiting: Awaiting) -> None:
    """Typed answers during onboarding: a zone, a time, a date; anything else re-asks."""
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.text is None:
        return
    c = ctx.hub.content
    now = _now(ctx)
    async with ctx.hub.db.session() as s:
        prog = await onboarding.current(s, user.id)
    lang = ctx.lang
    if prog.kind != "step":
        async with ctx.hub.db.transaction() as s:
            await state.clear(s, user.id, onboarding.STATE_KIND)
        await common.start_fallback(update, ctx)
        return
    await _typed_step(update, ctx, prog, msg.text, lang, now, c)


async def _typed_step(
    update: Update, ctx: Ctx, prog: Progress, text: str, lang: str, now: datetime, c: Content
) -> None:
    user_id = update.effective_user.id if update.effective_user else 0
    step = prog.step
    new: Progress | None = None
    if step == TIMEZONE:
        zone = parse_zone(text)
        if zone is None:
            await reply(update, c.t("onboarding.bad_zone", lang))
            return
        await close_question(update, buttons.ONBOARDING.family)
        async with ctx.hub.db.transaction() as s:
            new = await onboarding.answer_timezone(s, user_id, zone, now)
        await reply(update, c.t("onboarding.zone_set", lang, zone=zone), markup=ReplyKeyboardRemove())
    elif step == CHECKIN_TIME:
        t = onboarding.parse_time(text)
        await close_question(update, buttons.ONBOARDING.family)  # taken, or asked again below with its buttons
        if t is None:
            await ask_step(update, ctx, step, lang, before=c.t("onboarding.bad_time", lang))
            return
        async with ctx.hub.db.transaction() as s:
            new = await onboarding.answer_checkin_time(s, user_id, t, now)
    elif step == SOBRIETY:
        zone = prog.patient.timezone if prog.patient else ctx.hub.settings.default_timezone
        await close_question(update, buttons.ONBOARDING.family)  # taken, or asked again below with its buttons
        if text.strip().lower() != c.t("onboarding.skip", lang).lower():
            try:
                d = onboarding.parse_past_date(text, local_date(now, zone))
            except DateProblem as exc:
                await ask_step(update, ctx, step, lang, before=c.t(f"onboarding.date_{exc.reason}", lang))
                return
            await reply(update, *sobriety_echo(c, lang, d, buttons.ONBOARDING))  # saved once confirmed
            return
        async with ctx.hub.db.transaction() as s:
            new = await onboarding.answer_sobriety(s, user_id, None, now)
    else:
        await close_question(update, buttons.ONBOARDING.family)
        await ask_step(update, ctx, step, lang, before=c.t("onboarding.use_buttons", lang))
        return
    if new is not None and new.kind != "stale":
        await _after_step(update, ctx, new, lang)


async def location_msg(update: Update, ctx: Ctx) -> None:
    """A shared location answers a time-zone question; it is used once and not stored."""
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.location is None:
        return
    async with ctx.hub.db.session() as s:
        waiting = await state.get(s, user.id)
        prog = await onboarding.current(s, user.id)
    c = ctx.hub.content
    lang = ctx.lang
    in_onboarding = waiting is not None and waiting.kind == onboarding.STATE_KIND and prog.step == TIMEZONE
    in_settings = waiting is not None and waiting.kind == SETTING_KIND and waiting.data.get("field") == "timezone"
    if not (in_onboarding or in_settings):
        await common.non_text(update, ctx)
        return
    zone = zone_at(msg.location.latitude, msg.location.longitude)
    if zone is None:
        await reply(update, c.t("onboarding.bad_zone", lang))
        return
    if in_onboarding:
        await _typed_step(update, ctx, prog, zone, lang, _now(ctx), c)
    else:
        await _save_setting(update, ctx, "timezone", zone, typed=True)


# /settings -------------------------------------------------------------------------------------


async def enrolled_patient(update: Update, ctx: Ctx) -> PatientInfo | None:
    """The enrolled patient; someone halfway through onboarding is taken back to their step."""
    user = update.effective_user
    if user is not None:
        async with ctx.hub.db.session() as s:
            prog = await onboarding.current(s, user.id)
        if prog.kind == "step":
            lang = ctx.lang
            await ask_step(update, ctx, prog.step, lang, before=ctx.hub.content.t("onboarding.finish_first", lang))
            return None
    return await common.require_patient(update, ctx)


def mat_label(c: Content, p: PatientInfo) -> str:
    """Medication-assisted treatment as /settings shows it: no, or yes and how often."""
    if not p.mat:
        return c.t("onboarding.btn_no", p.language)
    schedule = p.medication_schedule or "daily"
    return c.t("settings.mat_yes", p.language, schedule=c.t(f"settings.mat_schedule.{schedule}", p.language))


def settings_view(c: Content, p: PatientInfo) -> tuple[str, list[list[Button]]]:
    lang = p.language
    on, off = c.t("settings.state_on", lang), c.t("settings.state_off", lang)
    name_key = f"settings.language_names.{p.language}"
    text = c.t("settings.title", lang) + "\n" + c.t(
        "settings.summary",
        lang,
        zone=zone_label(p.timezone),
        time=time_label(c, p.checkin_time, lang),
        sobriety=timefmt.day(c, lang, p.sobriety_date) if p.sobriety_date else c.t("settings.not_set", lang),
        mat=mat_label(c, p),
        tips=on if p.tips_enabled else off,
        language=c.t(name_key, lang) if c.has(name_key, lang) else p.language,
    )
    rows: list[list[Button]] = [
        [(c.t("settings.btn_timezone", lang), buttons.OPEN_TIMEZONE.pack()), (c.t("settings.btn_time", lang), buttons.OPEN_TIME.pack())],
        [(c.t("settings.btn_sobriety", lang), buttons.OPEN_SOBRIETY.pack()), (c.t("settings.btn_mat", lang), buttons.OPEN_MAT.pack())],
        [
            (c.t("settings.btn_tips_off", lang), buttons.TIPS.pack("0"))
            if p.tips_enabled
            else (c.t("settings.btn_tips_on", lang), buttons.TIPS.pack("1")),
            (c.t("settings.btn_language", lang), buttons.OPEN_LANGUAGE.pack()),
        ],
    ]
    return text, rows


async def settings_cmd(update: Update, ctx: Ctx) -> None:
    p = await enrolled_patient(update, ctx)
    if p is None:
        return
    text, rows = settings_view(ctx.hub.content, p)
    await reply(update, text, rows)


async def settings_button(update: Update, ctx: Ctx) -> None:
    q = update.callback_query
    user = update.effective_user
    if q is None:
        return
    if user is None or q.message is None or update.effective_chat is None or update.effective_chat.type != "private":
        await common.expired_button(update, ctx)
        return
    async with ctx.hub.db.session() as s:
        p = await active_patient_info(s, user.id)
    if p is None:
        await common.expired_button(update, ctx)
        return
    c = ctx.hub.content
    lang = ctx.lang
    try:
        pressed = buttons.SETTINGS.family.parse(q.data)
    except Stale:
        await common.expired_button(update, ctx)
        return
    what = pressed.codec.tag
    value: str | None = pressed.values[0] if pressed.values else None
    now = _now(ctx)
    if value is None and what in ("tz", "tm", "sob", "mat"):
        step = {"tz": TIMEZONE, "tm": CHECKIN_TIME, "sob": SOBRIETY, "mat": MAT}[what]
        if what in _SETTING_FIELDS:
            async with ctx.hub.db.transaction() as s:
                await state.set_(s, user.id, SETTING_KIND, {"field": _SETTING_FIELDS[what]}, now)
        await answer(q)
        text, rows = question(c, step, lang, buttons.SETTINGS)
        await edit(q, text, rows)
        return
    if value is None and what == "lang":
        await answer(q)
        rows = [[(c.t(f"settings.language_names.{code}", lang) if c.has(f"settings.language_names.{code}", ctx.lang) else code, buttons.LANGUAGE.pack(code))] for code in c.languages]
        await edit(q, c.t("settings.ask_language", lang), rows)
        return
    field, parsed = _setting_value(what, value, c)
    if what == "sob" and value is not None and value.startswith("d"):
        parsed = echoed_date(value, p.timezone, now)
        field = "sobriety_date" if parsed is not None else None
    if field is None:
        await common.expired_button(update, ctx)
        return
    await answer(q)
    await _save_setting(update, ctx, field, parsed, typed=False)


def _setting_value(what: str, value: str | None, c: Content) -> tuple[str | None, Any]:
    if value is None:
        return None, None
    if what == "tz" and value == "other":
        return "tz_other", None
    if what == "tz" and value.isdigit() and int(value) < len(COMMON_ZONES):
        return "timezone", COMMON_ZONES[int(value)][1]
    if what == "tm":
        t = _button_time(value)
        return ("checkin_time", t) if t is not None else (None, None)
    if what == "sob" and value == "clear":
        return "sobriety_date", None
    if what == "sob" and value == "skip":
        return "keep", None
    if what == "mat" and value in ("y", "n"):
        return "mat", value == "y"
    if what == "med" and value in _SCHEDULE_CODES:
        return "medication_schedule", _SCHEDULE_CODES[value]
    if what == "tips" and value in ("0", "1"):
        return "tips_enabled", value == "1"
    if what == "lang" and value in c.languages:
        return "language", value
    return None, None


async def _save_setting(update: Update, ctx: Ctx, field: str, value: Any, *, typed: bool) -> None:
    user = update.effective_user
    if user is None:
        return
    c = ctx.hub.content
    now = _now(ctx)
    if field == "tz_other":
        async with ctx.hub.db.transaction() as s:
            p = await active_patient_info(s, user.id)
            await state.set_(s, user.id, SETTING_KIND, {"field": "timezone", KEYBOARD_SHOWN: True}, now)
        lang = ctx.lang
        await reply(update, c.t("onboarding.type_zone", lang), markup=location_keyboard(c, lang))
        return
    async with ctx.hub.db.transaction() as s:
        waiting = await state.get(s, user.id)
        shown = waiting is not None and bool(waiting.data.get(KEYBOARD_SHOWN))
        await state.clear(s, user.id, SETTING_KIND)
        if field == "keep":
            p = await active_patient_info(s, user.id)
        else:
            p = await settings_service.change(
                s, user.id, field, value, now=now, lifecycle=ctx.hub.lifecycle, languages=c.languages
            )
    ctx.hub.sender.wake()
    if p is None:
        await reply(update, c.t("common.not_enrolled", ctx.lang))
        return
    if field == "language":
        ctx.hub.languages.forget(user.id)
        ctx.lang = p.language  # the confirmation is in the language just chosen
    if field == "mat" and p.mat and update.callback_query is not None:
        # In medication-assisted treatment: how often the medication is taken comes next.
        await edit(update.callback_query, *question(c, MAT_SCHEDULE, ctx.lang, buttons.SETTINGS))
        return
    text, rows = settings_view(c, p)
    text = c.t("settings.saved", ctx.lang) + "\n\n" + text
    q = update.callback_query
    if field == "timezone" and (typed or shown):
        await reply(update, c.t("onboarding.zone_set", ctx.lang, zone=p.timezone), markup=ReplyKeyboardRemove())
    if typed or q is None:
        await reply(update, text, rows)
    else:
        await edit(q, text, rows)


async def settings_text(update: Update, ctx: Ctx, awaiting: Awaiting) -> None:
    user = update.effective_user
    msg = update.effective_message
    if user is None or msg is None or msg.text is None:
        return
    c = ctx.hub.content
    async with ctx.hub.db.session() as s:
        p = await active_patient_info(s, user.id)
    if p is None:
        async with ctx.hub.db.transaction() as s:
            await state.clear(s, user.id, SETTING_KIND)
        await reply(update, c.t("common.not_enrolled", ctx.lang))
        return
    lang = ctx.lang
    field = awaiting.data.get("field")
    text = msg.text
    if field == "timezone":
        zone = parse_zone(text)
        if zone is None:
            await reply(update, c.t("onboarding.bad_zone", lang))
            return
        await close_question(update, buttons.SETTINGS.family)
        await _save_setting(update, ctx, "timezone", zone, typed=True)
    elif field == "checkin_time":
        t = onboarding.parse_time(text)
        if t is None:
            await reply(update, c.t("onboarding.bad_time", lang))
            return
        await close_question(update, buttons.SETTINGS.family)
        await _save_setting(update, ctx, "checkin_time", t, typed=True)
    elif field == "sobriety_date":
        try:
            d = onboarding.parse_past_date(text, local_date(_now(ctx), p.timezone))
        except DateProblem as exc:
            await reply(update, c.t(f"onboarding.date_{exc.reason}", lang))
            return
        await close_question(update, buttons.SETTINGS.family)
        await reply(update, *sobriety_echo(c, lang, d, buttons.SETTINGS))  # saved once confirmed
    else:
        async with ctx.hub.db.transaction() as s:
            await state.clear(s, user.id, SETTING_KIND)
        await reply(update, c.t("common.free_text", lang))


# Registration ----------------------------------------------------------------------------------


def register(app: Application, hub: Hub, router: TextRouter) -> None:  # type: ignore[type-arg]
    private = filters.ChatType.PRIVATE
    app.add_handler(CommandHandler("start", start_cmd, filters=private))
    app.add_handler(CommandHandler("settings", settings_cmd, filters=private))
    app.add_handler(CallbackQueryHandler(onboarding_button, pattern=buttons.ONBOARDING.family.pattern))
    app.add_handler(CallbackQueryHandler(settings_button, pattern=buttons.SETTINGS.family.pattern))
    app.add_handler(MessageHandler(filters.LOCATION & private, location_msg))
    router.on(onboarding.STATE_KIND, onboarding_text)
    router.on(SETTING_KIND, settings_text)
