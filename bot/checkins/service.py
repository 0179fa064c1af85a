"""The daily check-in (DESIGN §2.2): prompts, the item-by-item conversation, the closing reply.

One entry per patient and local date. `start` opens today's entry (or resumes it where it
stopped, or reopens a finished one so a second check-in updates it); each answer is written at
once with its time, so an abandoned check-in survives a restart. `finish` applies the clinic's
rules from `content/rules/checkin.yaml` through `bot.checkins.rules`: the closing reply, the flags, the
lapse flow.

Prompts go through the sweeper: kind `checkin_prompt` with key `checkin:<patient>:<local date>`,
one per local day (DST-safe), the next one scheduled when one fires; kind `checkin_reminder`
once a few hours later if the check-in is not done.

Screens are plain values (`bot.core.conversation`); the handlers render them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, delete, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments import service as assessments
from bot.checkins import buttons, lapse, sobriety
from bot.checkins.models import CheckinEntry
from bot.checkins.rules import CheckinAnswers, checkin_content_for, checkin_outcome
from bot.checkins.rules import silent_days_flag as _silent_rule
from bot.core import state
from bot.core.clinical import FlagRequest, Instrument, Item, flag_category
from bot.core.conversation import Result, Row, Screen
from bot.core.lifecycle import Lifecycle
from bot.core.models import Patient
from bot.core.people import PatientInfo
from bot.core.rules_loader import instruments_for
from bot.escalation import service as escalation
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_rule_flag
from bot.platform.clock import ensure_utc, local_date, local_datetime, next_local_due
from bot.platform.content import Content, Html
from bot.platform.keyboards import inline_keyboard
from bot.platform.models import ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.platform.scheduler import cancel, schedule
from bot.recovery import buttons as recovery_buttons
from bot.safety import service as safety

log = logging.getLogger(__name__)

PROMPT = "checkin_prompt"
REMINDER = "checkin_reminder"
NOTE_STATE = "checkins:note"
RECENT_DAYS = 31

def _instrument(content: Content, lang: str) -> Instrument:
    return instruments_for(content).checkin(lang)


def _visible(inst: Instrument, mat: bool) -> list[Item]:
    return inst.visible_items({"mat"} if mat else set())


# How often a patient in medication-assisted treatment takes their medication (asked in
# onboarding and /settings). Daily: the medication item is in every check-in. Weekly or
# monthly (an injection): it is asked in the week's (Monday to Sunday) or the month's check-ins
# until it is answered with one of `_DOSE_ANSWERED` (the item's option values: "not yet" asks
# again next time), with its own wording (`texts.medication_<schedule>` of the instrument).
_DOSE_ANSWERED = ("taken", "not_taken")


def medication_period_start(schedule: str | None, day: date) -> date | None:
    """The first day of the period the medication item asks about (None: every day)."""
    if schedule == "weekly":
        return day - timedelta(days=day.weekday())
    if schedule == "monthly":
        return day.replace(day=1)
    return None


async def _medication_due(session: AsyncSession, patient: PatientInfo, day: date) -> bool:
    """Whether the medication item belongs in this patient's check-in of `day`."""
    if not patient.mat:
        return False
    since = medication_period_start(patient.medication_schedule, day)
    if since is None:
        return True
    row = (await session.execute(_DOSE_DONE, {"patient_id": patient.id, "since": since, "before": day})).first()
    return row is None


async def _items(session: AsyncSession, inst: Instrument, patient: PatientInfo, day: date) -> list[Item]:
    """The items of this patient's check-in of `day`, in order."""
    return _visible(inst, await _medication_due(session, patient, day))


def _worded(inst: Instrument, patient: PatientInfo, item: Item) -> Item:
    """The item as this patient reads it (the medication item follows their schedule)."""
    if item.only_if != "mat" or patient.medication_schedule not in ("weekly", "monthly"):
        return item
    prompt = inst.texts.get(f"medication_{patient.medication_schedule}")
    return item.model_copy(update={"prompt": prompt}) if prompt else item


def _stamp(value: Any, now: datetime) -> dict[str, Any]:
    return {"v": value, "at": ensure_utc(now).isoformat()}


# ---------------------------------------------------------------------------------------------
# Screens
# ---------------------------------------------------------------------------------------------


def _chunks(buttons: list[tuple[str, str]], columns: int) -> list[Row]:
    return [buttons[i : i + columns] for i in range(0, len(buttons), columns)]


def question_screen(
    content: Content, lang: str, inst: Instrument, items: list[Item], item: Item, draft: dict[str, Any],
    *, intro: str | None = None, clear_note: bool = True,
) -> Screen:
    c = content
    n = next(i for i, it in enumerate(items) if it.id == item.id) + 1
    head = c.t("checkins.step", lang, title=Html(inst.title), n=n, total=len(items))
    parts = [p for p in (intro, head, item.prompt) if p]
    choices: list[tuple[str, str]] = []
    if item.kind == "multi":
        chosen = set(draft.get(item.id, {}).get("v") or [])
        mark = c.t("checkins.selected_mark", lang)
        for o in item.options:
            label = f"{mark}{o.label}" if o.value in chosen else o.label
            choices.append((label, buttons.TOGGLE.pack(item.id, str(o.value))))
        rows = _chunks(choices, item.columns or 2)
        rows.append([(item.done_label or "OK", buttons.DONE.pack(item.id))])
    elif item.kind == "text":
        rows = [[(item.skip_label or "Skip", buttons.SKIP.pack(item.id))]]
    else:
        choices = [(o.label, buttons.ANSWER.pack(item.id, str(o.value))) for o in item.options]
        rows = _chunks(choices, item.columns or len(choices))
    controls: Row = []
    if n > 1:
        controls.append((c.t("checkins.back_button", lang), buttons.BACK.pack()))
    controls.append((c.t("checkins.cancel_button", lang), buttons.CANCEL.pack()))
    rows.append(controls)
    return Screen("\n\n".join(parts), rows)


# ---------------------------------------------------------------------------------------------
# The conversation
# ---------------------------------------------------------------------------------------------


# Today's entry is read and written as table columns, with statements built once: every
# check-in button press does this, and it is the hot path of the bot (no ORM unit of work).
_E = CheckinEntry.__table__.c
_ENTRY = (
    select(_E.id, _E.local_date, _E.step, _E.draft, _E.completed_at)
    .where(_E.patient_id == bindparam("patient_id"), _E.local_date == bindparam("day"))
    .with_for_update()
)
# A weekly or monthly medication dose already answered in the period (see `_medication_due`).
_DOSE_DONE = (
    select(_E.id)
    .where(
        _E.patient_id == bindparam("patient_id"),
        _E.local_date >= bindparam("since"),
        _E.local_date < bindparam("before"),
        _E.completed_at.is_not(None),
        _E.medication.in_([literal(v) for v in _DOSE_ANSWERED]),
    )
    .limit(1)
)
_SAVE = (
    update(CheckinEntry.__table__)
    .where(_E.id == bindparam("entry_id"))
    .values(step=bindparam("step"), draft=bindparam("draft"), updated_at=bindparam("now"))
)


@dataclass(slots=True)
class Today:
    """Today's entry as the conversation sees it; changes are written with `_save`."""

    id: int
    local_date: date
    step: str | None
    draft: dict[str, Any] | None
    completed_at: datetime | None


async def _entry(session: AsyncSession, patient_id: int, day: date) -> Today | None:
    row = (await session.execute(_ENTRY, {"patient_id": patient_id, "day": day})).first()
    return None if row is None else Today(*row)


async def _save(session: AsyncSession, entry: Today, now: datetime) -> None:
    """Write the entry's step and draft (the conversation's state) as of `now`."""
    await session.execute(_SAVE, {"entry_id": entry.id, "step": entry.step, "draft": entry.draft, "now": now})


async def _open_entry(session: AsyncSession, patient: PatientInfo, now: datetime) -> Today | None:
    """Today's entry if a check-in is in progress."""
    entry = await _entry(session, patient.id, local_date(now, patient.timezone))
    return entry if entry is not None and entry.step is not None else None


async def _ask(
    session: AsyncSession, content: Content, patient: PatientInfo, entry: Today, now: datetime,
    *, intro: str | None = None, clear_note: bool = True,
) -> Screen:
    """The question `entry.step` names (the first one if it is not shown to this patient).
    Moves `entry.step` there; the caller saves the entry."""
    inst = _instrument(content, patient.language)
    items = await _items(session, inst, patient, entry.local_date)
    item = next((i for i in items if i.id == entry.step), items[0])
    entry.step = item.id
    if item.kind == "text":
        await state.set_(session, patient.telegram_id, NOTE_STATE, {"entry": entry.id, "item": item.id}, now)
    elif clear_note:
        await state.clear(session, patient.telegram_id, NOTE_STATE)
    return question_screen(
        content, patient.language, inst, items, _worded(inst, patient, item), dict(entry.draft or {}), intro=intro
    )


async def start(session: AsyncSession, content: Content, patient: PatientInfo, now: datetime) -> Result:
    """Begin today's check-in, resume it where it stopped, or reopen it to update today's entry."""
    c = content
    lang = patient.language
    inst = _instrument(content, lang)
    today = local_date(now, patient.timezone)
    items = await _items(session, inst, patient, today)
    await schedule_next_prompt(session, patient.id, now)
    entry = await _entry(session, patient.id, today)
    if entry is None:
        res = await session.execute(
            insert(CheckinEntry.__table__).values(
                patient_id=patient.id, local_date=today, started_at=now, updated_at=now, step=items[0].id, draft={}
            )
        )
        new_id = res.inserted_primary_key[0]
        entry = Today(new_id, today, items[0].id, {}, None)
        intro = inst.intro
    elif entry.step is not None:
        intro = _resume_intro(c, inst, lang)
    else:
        entry.step = items[0].id
        entry.draft = {}
        intro = c.t("checkins.update_today", lang) if entry.completed_at is not None else inst.intro
    screen = await _ask(session, content, patient, entry, now, intro=intro)
    await _save(session, entry, now)
    return Result([screen])


def _resume_intro(content: Content, inst: Instrument, lang: str) -> str:
    return inst.texts.get("resume") or content.t("checkins.resume", lang)


async def resume(session: AsyncSession, content: Content, patient: PatientInfo, now: datetime) -> Result | None:
    """The check-in in progress, at the question it is on; None when none is in progress.

    For a button of a question the check-in has moved past: the screen it was on was never
    replaced (the bot restarted after recording the answer, before showing the next question),
    or is an older one. The patient goes on where the check-in is, never to a dead end."""
    entry = await _open_entry(session, patient, now)
    if entry is None:
        return None
    inst = _instrument(content, patient.language)
    screen = await _ask(session, content, patient, entry, now, intro=_resume_intro(content, inst, patient.language))
    await _save(session, entry, now)
    return Result([screen])


def _advance(items: list[Item], current: str) -> Item | None:
    ids = [i.id for i in items]
    pos = ids.index(current) if current in ids else -1
    return items[pos + 1] if pos + 1 < len(items) else None


async def _current(
    session: AsyncSession, content: Content, patient: PatientInfo, item_id: str, now: datetime,
    kinds: tuple[str, ...] | None = None,
) -> tuple[Today, Instrument, list[Item], Item] | None:
    """Today's entry, its instrument and the item a button is for; None when the button is
    stale (not the current question) or for another kind of item than `kinds`."""
    entry = await _open_entry(session, patient, now)
    if entry is None or entry.step != item_id:
        return None
    inst = _instrument(content, patient.language)
    items = await _items(session, inst, patient, entry.local_date)
    item = next((i for i in items if i.id == item_id), None)
    if item is None or (kinds is not None and item.kind not in kinds):
        return None
    return entry, inst, items, item


def _option(item: Item, raw: str) -> Any:
    for o in item.options:
        if str(o.value) == raw:
            return o.value
    return None


async def _next_or_finish(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, entry: Today, items: list[Item],
    current: str, now: datetime,
) -> Result:
    nxt = _advance(items, current)
    if nxt is None:
        return await finish(session, wf, content, patient, entry, now)
    entry.step = nxt.id
    # Moving forward from a button answer: no note is awaited (leaving the note item, by
    # skipping it or writing it, clears that where it happens).
    screen = await _ask(session, content, patient, entry, now, clear_note=False)
    await _save(session, entry, now)
    return Result([screen])


async def answer(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, item_id: str, raw: str, now: datetime
) -> Result | None:
    """A single-choice answer. None when the button is stale (not today's current question)."""
    cur = await _current(session, content, patient, item_id, now, ("scale", "choice"))
    if cur is None:
        return None
    entry, _inst, items, item = cur
    value = _option(item, raw)
    if value is None:
        return None
    draft = dict(entry.draft or {})
    draft[item.id] = _stamp(value, now)
    entry.draft = draft
    return await _next_or_finish(session, wf, content, patient, entry, items, item.id, now)


async def toggle(
    session: AsyncSession, content: Content, patient: PatientInfo, item_id: str, raw: str, now: datetime
) -> Result | None:
    """Tick or untick one option of a multi-select item (an exclusive option clears the others)."""
    cur = await _current(session, content, patient, item_id, now, ("multi",))
    if cur is None:
        return None
    entry, inst, items, item = cur
    value = _option(item, raw)
    if value is None:
        return None
    draft = dict(entry.draft or {})
    chosen: list[Any] = list(draft.get(item.id, {}).get("v") or [])
    exclusive = {o.value for o in item.options if o.exclusive}
    if value in chosen:
        chosen.remove(value)
    elif value in exclusive:
        chosen = [value]
    else:
        chosen = [v for v in chosen if v not in exclusive] + [value]
    order = [o.value for o in item.options]
    draft[item.id] = _stamp(sorted(chosen, key=order.index), now)
    entry.draft = draft
    await _save(session, entry, now)
    return Result([question_screen(content, patient.language, inst, items, item, draft)])


async def multi_done(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, item_id: str, now: datetime
) -> Result | None:
    cur = await _current(session, content, patient, item_id, now, ("multi",))
    if cur is None:
        return None
    entry, _inst, items, item = cur
    draft = dict(entry.draft or {})
    if item.id not in draft:
        draft[item.id] = _stamp([], now)
    else:
        draft[item.id] = _stamp(draft[item.id].get("v") or [], now)
    entry.draft = draft
    return await _next_or_finish(session, wf, content, patient, entry, items, item.id, now)


async def skip(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, item_id: str, now: datetime
) -> Result | None:
    """Skip an optional item (the note)."""
    cur = await _current(session, content, patient, item_id, now)
    if cur is None or not cur[3].optional:
        return None
    entry, _inst, items, item = cur
    draft = dict(entry.draft or {})
    draft[item.id] = _stamp(None, now)
    entry.draft = draft
    await state.clear(session, patient.telegram_id, NOTE_STATE)
    return await _next_or_finish(session, wf, content, patient, entry, items, item.id, now)


async def note(
    session: AsyncSession,
    wf: Workflow,
    detection: safety.Detection,
    content: Content,
    patient: PatientInfo,
    text: str,
    now: datetime,
) -> Result | None:
    """The typed note: stored, passed to the risk detector, then the check-in is finished."""
    entry = await _open_entry(session, patient, now)
    if entry is None:
        await state.clear(session, patient.telegram_id, NOTE_STATE)
        return None
    inst = _instrument(content, patient.language)
    items = await _items(session, inst, patient, entry.local_date)
    item = next((i for i in items if i.id == entry.step), None)
    if item is None or item.kind != "text":
        return None
    text = text.strip()
    draft = dict(entry.draft or {})
    draft[item.id] = _stamp(text or None, now)
    entry.draft = draft
    await state.clear(session, patient.telegram_id, NOTE_STATE)
    if text:
        await _check_risk(session, wf, detection, patient.id, text, now)
    return await _next_or_finish(session, wf, content, patient, entry, items, item.id, now)


async def _check_risk(
    session: AsyncSession, wf: Workflow, detection: safety.Detection, patient_id: int, text: str, now: datetime
) -> None:
    """Screen the note for risk as every free text is (a failure never costs the check-in)."""
    try:
        async with session.begin_nested():
            await safety.check_text(session, wf, detection, patient_id, text, source="checkin_note", now=now)
    except Exception:
        log.exception("checkin: the risk detector failed on a note")


async def back(session: AsyncSession, content: Content, patient: PatientInfo, now: datetime) -> Result | None:
    entry = await _open_entry(session, patient, now)
    if entry is None:
        return None
    inst = _instrument(content, patient.language)
    items = await _items(session, inst, patient, entry.local_date)
    ids = [i.id for i in items]
    pos = ids.index(entry.step) if entry.step in ids else 0
    entry.step = ids[max(0, pos - 1)]
    screen = await _ask(session, content, patient, entry, now)
    await _save(session, entry, now)
    return Result([screen])


async def cancel_checkin(session: AsyncSession, content: Content, patient: PatientInfo, now: datetime) -> Result | None:
    """Stop the check-in in progress; a finished entry of today keeps its answers."""
    entry = await _open_entry(session, patient, now)
    await state.clear(session, patient.telegram_id, NOTE_STATE)
    if entry is None:
        return None
    if entry.completed_at is None:
        await session.execute(delete(CheckinEntry.__table__).where(_E.id == entry.id))
    else:
        entry.step = None
        entry.draft = None
        await _save(session, entry, now)
    return Result([Screen(content.t("checkins.cancelled", patient.language))])


# The answers the check-in rules look back on, as table columns (one statement, no objects).
_ANSWER_COLUMNS = ("mood", "craving", "use", "sleep", "medication", "halt")
_RECENT = select(_E.local_date, *[_E[c] for c in _ANSWER_COLUMNS]).where(
    _E.patient_id == bindparam("patient_id"),
    _E.completed_at.is_not(None),
    _E.local_date < bindparam("before"),
    _E.local_date >= bindparam("since"),
)


async def recent_answers(session: AsyncSession, patient_id: int, before: date, days: int = RECENT_DAYS) -> list[CheckinAnswers]:
    rows = await session.execute(_RECENT, {"patient_id": patient_id, "before": before, "since": before - timedelta(days=days)})
    return [
        CheckinAnswers(day, {k: v for k, v in zip(_ANSWER_COLUMNS, values, strict=True) if v is not None})
        for day, *values in rows
    ]


async def finish(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, entry: Today, now: datetime
) -> Result:
    c = content
    lang = patient.language
    checkin = checkin_content_for(content)
    inst = instruments_for(content).checkin(lang)
    draft = dict(entry.draft or {})
    values = {k: v.get("v") for k, v in draft.items()}
    # No note is awaited any more: every way off the note item (skip, the note itself) cleared it.
    await session.execute(
        update(CheckinEntry.__table__)
        .where(_E.id == entry.id)
        .values(
            answers=draft, mood=values.get("mood"), craving=values.get("craving"), use=values.get("use"),
            sleep=values.get("sleep"), medication=values.get("medication"), halt=values.get("halt"),
            completed_at=now, updated_at=now, step=None, draft=None,
        )
    )
    entry.step, entry.draft, entry.completed_at = None, None, now

    texts = {i.id: values.get(i.id) for i in inst.items if i.kind == "text"}
    rule_values = {k: v for k, v in values.items() if k not in texts and v is not None}
    # A typed note is a fact the closing can reflect (`note_written`), never its words.
    rule_values.update({f"{k}_written": True for k, v in texts.items() if isinstance(v, str) and v.strip()})
    recent = await recent_answers(session, patient.id, entry.local_date)
    outcome = checkin_outcome(checkin.rules, CheckinAnswers(entry.local_date, rule_values), recent)
    for f in outcome.flags:
        await raise_rule_flag(session, wf, patient.id, f, source="checkin", now=now)

    rows: list[Row] = []
    milestone: int | None = None
    lapsed = outcome.reply == "lapse"
    if lapsed:
        # The lapse flow (the same as for a lapse in the patient's own words): the counter
        # restarts today, non-shaming lines, what happened, the next right step.
        note = " ".join(v for v in texts.values() if isinstance(v, str)) or None
        reply = await lapse.record(
            session, content, patient, now, day=entry.local_date, words=note,
            missed_dose=values.get("medication") == "not_taken",
        )
        numbers = reply.numbers
        parts = [reply.text]
        rows += [list(r) for r in reply.rows]
    else:
        numbers, milestone = await sobriety.counter(session, patient.id, checkin.milestones, entry.local_date, now)
        default = outcome.reply == checkin.rules.closing[-1].reply
        reflections = [inst.notes[n] for n in outcome.reflections if n in inst.notes]
        if default and reflections:
            # The closing reflects the answers (low mood, loneliness, ...) instead of one line.
            parts = [c.t("checkins.thanks", lang), *reflections]
        else:
            reply_text = inst.replies.get(outcome.reply) or inst.replies.get("default") or c.t("checkins.thanks", lang)
            parts = [reply_text, *reflections]
    parts += [inst.notes[n] for n in outcome.notes if n in inst.notes]
    if not lapsed and outcome.reply == "default" and numbers is not None and numbers.current_days > 0:
        streak = inst.texts.get("streak")
        if streak:
            parts.append(streak.format(days=numbers.current_days))
    if outcome.offer_urge_tools and not lapsed:  # the lapse flow has its own tools
        rows.append([(c.t("checkins.urge_button", lang), recovery_buttons.OPEN.pack())])
    screens = [Screen("\n\n".join(parts), rows)]

    if milestone is not None:
        screens.append(milestone_screen(content, lang, milestone))

    if not lapsed:
        # Not right after a lapse: "your assessment is due" can wait for the next check-in.
        screens += await assessments.offers(session, content, patient, entry.local_date)
    return Result(screens, finished=True, flags=tuple(flag_category(f.category) for f in outcome.flags))


def milestone_screen(content: Content, lang: str, days: int) -> Screen:
    milestones = checkin_content_for(content)
    msgs = milestones.milestone_messages(lang)
    return Screen(
        milestones.milestone_text(days, lang),
        [[(msgs.share_label, buttons.MILESTONE.pack(days, "y")), (content.t("checkins.share_no", lang), buttons.MILESTONE.pack(days, "n"))]],
    )


async def talk_request(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, wanted: bool, now: datetime
) -> Screen:
    """The lapse flow's question: would they like a counselor to reach out?"""
    if wanted:
        await escalation.talk_request(session, wf, patient.id, now, source="checkin_lapse")
        return Screen(content.t("checkins.talk_sent", patient.language))
    return Screen(content.t("checkins.talk_declined", patient.language))


async def share_milestone(
    session: AsyncSession, content: Content, patient: PatientInfo, days: int, share: bool, now: datetime
) -> Screen:
    await sobriety.set_share(session, patient.id, days, share, now)
    key = "checkins.share_yes_done" if share else "checkins.share_no_done"
    return Screen(content.t(key, patient.language))


# ---------------------------------------------------------------------------------------------
# Prompts and reminders (the sweeper)
# ---------------------------------------------------------------------------------------------


def prompt_key(patient_id: int, day: date) -> str:
    return f"checkin:{patient_id}:{day.isoformat()}"


def reminder_key(patient_id: int, day: date) -> str:
    return f"checkin_reminder:{patient_id}:{day.isoformat()}"


async def _put(session: AsyncSession, kind: str, key: str, due: datetime, payload: dict[str, Any]) -> bool:
    """Schedule or move a pending occurrence; an occurrence that already ran is kept as it is."""
    if await schedule(session, kind, key, due, payload, replace=True):
        return True
    res = await session.execute(
        update(ScheduledItem)
        .where(ScheduledItem.key == key, ScheduledItem.status == "cancelled")
        .values(status="pending", due_at=due, payload=payload, attempts=0, claimed_at=None)
    )
    return bool(res.rowcount)


async def schedule_next_prompt(
    session: AsyncSession, patient_id: int, after: datetime, *, statuses: tuple[str, ...] = ("active",)
) -> datetime | None:
    """Schedule the next daily prompt strictly after `after` (one per local date)."""
    p = await session.get(Patient, patient_id)
    if p is None or p.status not in statuses or p.checkin_time is None:
        return None
    due = after
    for _ in range(3):
        due = next_local_due(p.checkin_time, p.timezone, due)
        day = local_date(due, p.timezone)
        if await _put(session, PROMPT, prompt_key(patient_id, day), due, {"patient_id": patient_id, "date": day.isoformat()}):
            return due
    return None


async def on_activated(session: AsyncSession, patient_id: int, now: datetime) -> None:
    await schedule_next_prompt(session, patient_id, now)


async def on_settings_changed(session: AsyncSession, patient_id: int, now: datetime) -> None:
    """Move the pending prompt to the new time or zone (a prompt already sent today stays the only one)."""
    await cancel(session, key_prefix=f"checkin:{patient_id}:")
    await schedule_next_prompt(session, patient_id, now)


async def ensure_prompts(session: AsyncSession, now: datetime) -> int:
    """Schedule the next prompt of every active patient who has none pending (a safety net run
    at start-up: patients activated while the area was not installed, or re-activated)."""
    pending = (
        select(ScheduledItem.id)
        .where(
            ScheduledItem.kind == PROMPT,
            ScheduledItem.status.in_(("pending", "running")),
            ScheduledItem.key.like(literal("checkin:") + cast(Patient.id, String) + literal(":%")),
        )
        .exists()
    )
    q = select(Patient.id).where(Patient.status == "active", Patient.checkin_time.is_not(None), ~pending)
    ids = list((await session.execute(q)).scalars())
    for pid in ids:
        await schedule_next_prompt(session, pid, now)
    return len(ids)


def _prompt_rows(content: Content, lang: str, resume: bool) -> list[Row]:
    label = content.t("checkins.resume_button" if resume else "checkins.start_button", lang)
    return [[(label, buttons.START.pack())]]


async def _entry_state(session: AsyncSession, patient_id: int, day: date) -> str:
    q = select(CheckinEntry.completed_at, CheckinEntry.step).where(
        CheckinEntry.patient_id == patient_id, CheckinEntry.local_date == day
    )
    row = (await session.execute(q)).first()
    if row is None:
        return "none"
    if row[0] is not None and row[1] is None:
        return "done"
    return "open"


async def days_silent(session: AsyncSession, p: Patient, day: date) -> int:
    """Whole local days without a check-in before `day` (since the last one, or since joining)."""
    q = select(CheckinEntry.local_date).where(
        CheckinEntry.patient_id == p.id, CheckinEntry.completed_at.is_not(None), CheckinEntry.local_date < day
    ).order_by(CheckinEntry.local_date.desc()).limit(1)
    last = (await session.execute(q)).scalar_one_or_none()
    if last is None:
        joined = p.consented_at or p.created_at
        if joined is None:
            return 0
        last = local_date(joined, p.timezone)
    return max(0, (day - last).days - 1)


async def check_silence(
    session: AsyncSession, wf: Workflow, content: Content, p: Patient, day: date, now: datetime
) -> FlagRequest | None:
    """Raise the 'no check-in for N days' flag on the day the silence reaches a rule's length."""
    rules = checkin_content_for(content).rules
    silent = await days_silent(session, p, day)
    if silent not in {r.after_days for r in rules.silent}:
        return None
    flag = _silent_rule(rules, silent)
    if flag is not None:
        await raise_rule_flag(session, wf, p.id, flag, source="checkin_silence", now=now)
    return flag


async def on_prompt(session: AsyncSession, wf: Workflow, item: ScheduledItem, now: datetime, content: Content) -> None:
    payload = item.payload or {}
    pid = int(payload["patient_id"])
    day = date.fromisoformat(payload["date"])
    p = await session.get(Patient, pid)
    if p is None or p.status not in ("active", "inactive"):
        return
    # A patient who blocked the bot keeps the chain of prompts (nothing is sent meanwhile).
    await schedule_next_prompt(session, pid, max(now, item.due_at), statuses=("active", "inactive"))
    if p.status != "active":
        return
    if local_date(now, p.timezone) != day:
        return  # the bot was away for the whole day: no late prompt tomorrow
    await check_silence(session, wf, content, p, day, now)
    status = await _entry_state(session, pid, day)
    if status == "done":
        return
    lang = p.language or "en"
    text = content.t("checkins.prompt", lang)
    await enqueue(
        session,
        Outgoing(p.telegram_id, text, reply_markup=_keyboard(_prompt_rows(content, lang, status == "open"))),
        now=now,
        dedup_key=item.key,
        ref=f"checkin:{pid}",
    )
    remind_at = reminder_due(item.due_at, day, p.timezone, checkin_content_for(content).rules.reminder_delay)
    if remind_at is not None:
        await schedule(session, REMINDER, reminder_key(pid, day), remind_at, {"patient_id": pid, "date": day.isoformat()})


LATEST_REMINDER = time(23, 30)


def reminder_due(prompt_at: datetime, day: date, zone: str, delay: timedelta) -> datetime | None:
    """The reminder's time: `delay` after the prompt, but still on the same local day (a
    reminder after midnight would ask about a day that is over); None when no time is left."""
    latest = local_datetime(day, LATEST_REMINDER, zone)
    due = min(prompt_at + delay, latest)
    return due if due - prompt_at >= timedelta(minutes=30) else None


async def on_reminder(session: AsyncSession, item: ScheduledItem, now: datetime, content: Content) -> None:
    payload = item.payload or {}
    pid = int(payload["patient_id"])
    day = date.fromisoformat(payload["date"])
    p = await session.get(Patient, pid)
    if p is None or p.status != "active" or local_date(now, p.timezone) != day:
        return
    status = await _entry_state(session, pid, day)
    if status == "done":
        return
    lang = p.language or "en"
    inst = _instrument(content, lang)
    text = inst.texts.get("reminder") or content.t("checkins.prompt", lang)
    await enqueue(
        session,
        Outgoing(p.telegram_id, text, reply_markup=_keyboard(_prompt_rows(content, lang, status == "open"))),
        now=now,
        dedup_key=item.key,
        ref=f"checkin:{pid}",
    )


def _keyboard(rows: list[Row]) -> dict[str, Any]:
    return inline_keyboard(rows)


def setup(sweeper: Any, content: Content, lifecycle: Lifecycle, workflow: Callable[[], Workflow]) -> None:
    """Register the sweeper kinds and the life-cycle hooks. `workflow`: escalation's, for the
    flags a silence raises (asked for when a prompt is due: that area is installed later)."""

    async def prompt(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        await on_prompt(session, workflow(), item, now, content)

    async def reminder(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        await on_reminder(session, item, now, content)

    if PROMPT not in sweeper.kinds:
        sweeper.register(PROMPT, prompt)
    if REMINDER not in sweeper.kinds:
        sweeper.register(REMINDER, reminder)
    lifecycle.on_activated(on_activated)
    lifecycle.on_settings_changed(on_settings_changed)
