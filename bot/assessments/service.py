"""Assessments (DESIGN §2.3): the weekly recovery check, PHQ-9 and GAD-7.

Cadence, bands and flag rules are data (`content/rules/assessments.yaml`), applied through
`bot.assessments.rules`. Answers are stored item by item with their time. After every answer the partial
score is checked, so PHQ-9 item 9 above zero is acted on at once: a high flag reaches the
counselors, the questionnaire stops, and a short graded follow-up in the style of the Columbia
Protocol screener (`suicide_followup` in the rules) is asked with yes/no buttons. Its grade sets
the flag's severity and the reply: the crisis reply, or a counselor the same day and 988. The
answers so far are kept; the patient finishes the rest later (a button, or the offer after the
next check-in) without being asked the follow-up again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments import buttons
from bot.assessments.models import AssessmentResult
from bot.assessments.rules import (
    AssessmentScore,
    FollowupQuestion,
    Questionnaire,
    SuicideFollowup,
    assessment_content_for,
    next_assessment_date,
    score_assessment,
)
from bot.core.clinical import Item, flag_category
from bot.core.conversation import Result, Row, Screen
from bot.core.people import PatientInfo
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_flag, raise_rule_flag
from bot.platform.clock import ensure_utc, local_date
from bot.platform.content import Content, Html
from bot.safety import service as safety
from bot.safety.crisis import counselor_line, short_form

log = logging.getLogger(__name__)

INSTRUMENTS = ("weekly", "phq9", "gad7")
# Kept in `answers` next to the items (not item ids: those never start with "_").
FOLLOWUP = "_followup"  # {"value", "at", "a": {question id: bool}, "resume", "grade", "done_at"}
RAISED = "_raised"  # ids of the rules whose flag was raised before the last answer
FOLLOWUP_STEP = "f:"  # `step` while a follow-up question waits for its answer


@dataclass(frozen=True)
class LatestScore:
    instrument: str
    title: str
    day: date
    total: int
    band: str | None
    band_label: str | None
    domains: dict[str, int]


def _instrument(content: Content, instrument: str, lang: str) -> Questionnaire:
    return assessment_content_for(content).instrument(instrument, lang)


# Each instrument's last completion; asked at the end of every check-in.
_R = AssessmentResult.__table__.c
_LAST_COMPLETED = (
    select(_R.instrument, func.max(_R.local_date))
    .where(_R.patient_id == bindparam("patient_id"), _R.status == "done")
    .group_by(_R.instrument)
)


async def due(session: AsyncSession, content: Content, patient_id: int, today: date) -> list[str]:
    """Instruments due today or overdue, by their cadence in the rules."""
    rules = assessment_content_for(content).rules
    rows = await session.execute(_LAST_COMPLETED, {"patient_id": patient_id})
    completed: dict[str, date] = {name: day for name, day in rows}
    out = []
    for name in INSTRUMENTS:
        r = rules.for_instrument(name)
        if r is None:
            continue
        last = completed.get(name)
        if last == today:
            continue
        if next_assessment_date(r.cadence, last, today) <= today:
            out.append(name)
    return out


async def offers(session: AsyncSession, content: Content, patient: PatientInfo, today: date) -> list[Screen]:
    """An offer for the first instrument due (one a day is enough to ask), with a Start button."""
    screens = []
    for name in (await due(session, content, patient.id, today))[:1]:
        inst = _instrument(content, name, patient.language)
        screens.append(
            Screen(
                content.t("assessments.offer", patient.language, title=Html(inst.title)),
                [[(content.t("assessments.start_button", patient.language), buttons.START.pack(name))]],
            )
        )
    return screens


async def _open(session: AsyncSession, patient_id: int, instrument: str) -> AssessmentResult | None:
    q = (
        select(AssessmentResult)
        .where(
            AssessmentResult.patient_id == patient_id,
            AssessmentResult.instrument == instrument,
            AssessmentResult.status == "open",
        )
        .order_by(AssessmentResult.id.desc())
        .limit(1)
        .with_for_update()
    )
    return (await session.execute(q)).scalar_one_or_none()


def _question(content: Content, lang: str, inst: Questionnaire, item: Item, *, first: bool) -> Screen:
    n = [i.id for i in inst.items].index(item.id) + 1
    parts: list[str] = []
    if first:
        parts += [p for p in (inst.intro, inst.attribution and f"<i>{inst.attribution}</i>") if p]
    parts.append(content.t("assessments.step", lang, title=Html(inst.title), n=n, total=len(inst.items)))
    if inst.stem and item.scored:
        parts.append(inst.stem)
    parts.append(f"<b>{item.prompt}</b>")
    choices = [(o.label, buttons.ANSWER.pack(inst.id, item.id, str(o.value))) for o in item.options]
    cols = item.columns or 1
    rows: list[Row] = [choices[i : i + cols] for i in range(0, len(choices), cols)]
    controls: Row = []
    if n > 1:
        controls.append((content.t("checkins.back_button", lang), buttons.BACK.pack(inst.id)))
    controls.append((content.t("checkins.cancel_button", lang), buttons.CANCEL.pack(inst.id)))
    rows.append(controls)
    return Screen("\n\n".join(parts), rows)


async def start(
    session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, now: datetime
) -> Result | None:
    if instrument not in INSTRUMENTS:
        return None
    lang = patient.language
    inst = _instrument(content, instrument, lang)
    row = await _open(session, patient.id, instrument)
    if row is None:
        row = AssessmentResult(
            patient_id=patient.id,
            instrument=instrument,
            local_date=local_date(now, patient.timezone),
            status="open",
            step=inst.items[0].id,
            answers={},
            started_at=now,
        )
        session.add(row)
        await session.flush()
    pending = _pending_followup(inst, row)
    if pending is not None:
        # Stopped inside the follow-up: ask the question that waits, with its introduction.
        return Result([_followup_question(content, lang, inst, pending, first=True)])
    item = next((i for i in inst.items if i.id == row.step), inst.items[0])
    return Result([_question(content, lang, inst, item, first=True)])


async def resume(
    session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, now: datetime
) -> Result | None:
    """The "finish the questionnaire" button: where it stopped, or a word that it is finished
    (never a new questionnaire)."""
    if instrument not in INSTRUMENTS:
        return None
    if await _open(session, patient.id, instrument) is None:
        return Result([Screen(content.t("assessments.already_done", patient.language))])
    return await start(session, content, patient, instrument, now)


async def carry_on(
    session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, now: datetime
) -> Result | None:
    """The questionnaire in progress, at the question it is on; None when it is not in progress.
    For a button of a question it has moved past (the screen was not replaced: the bot restarted
    after recording the answer), so the patient goes on where it is, never to a dead end."""
    if instrument not in INSTRUMENTS or await _open(session, patient.id, instrument) is None:
        return None
    return await start(session, content, patient, instrument, now)


def _values(row: AssessmentResult) -> dict[str, Any]:
    return {k: v["v"] for k, v in (row.answers or {}).items() if not k.startswith("_")}


def _followup_rules(inst: Questionnaire) -> SuicideFollowup | None:
    return inst.rules.suicide_followup if inst.rules is not None else None


def _pending_followup(inst: Questionnaire, row: AssessmentResult) -> FollowupQuestion | None:
    """The follow-up question the row waits for, if it waits for one."""
    followup = _followup_rules(inst)
    if followup is None or not (row.step or "").startswith(FOLLOWUP_STEP):
        return None
    return followup.question((row.step or "")[len(FOLLOWUP_STEP) :])


def _followup_question(content: Content, lang: str, inst: Questionnaire, q: FollowupQuestion, *, first: bool) -> Screen:
    head = content.t("assessments.followup.intro" if first else "assessments.followup.header", lang)
    text = f"{head}\n\n<b>{content.t(f'assessments.followup.questions.{q.id}', lang)}</b>"
    return Screen(
        text,
        [[
            (content.t("assessments.followup.yes_button", lang), buttons.FOLLOWUP.pack(inst.id, q.id, "y")),
            (content.t("assessments.followup.no_button", lang), buttons.FOLLOWUP.pack(inst.id, q.id, "n")),
        ]],
    )


def _raised(row: AssessmentResult) -> list[str]:
    return list((row.answers or {}).get(RAISED) or [])


def _set(row: AssessmentResult, **meta: Any) -> None:
    """Replace keys of `answers` (a new dict, so the change is written)."""
    row.answers = {**(row.answers or {}), **meta}


async def answer(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, instrument: str, item_id: str,
    raw: str, now: datetime,
) -> Result | None:
    """Store one answer; None when the button is stale."""
    if instrument not in INSTRUMENTS:
        return None
    row = await _open(session, patient.id, instrument)
    if row is None or row.step != item_id:
        return None
    lang = patient.language
    inst = _instrument(content, instrument, lang)
    try:
        item = inst.item(item_id)
    except KeyError:
        return None
    value = next((o.value for o in item.options if str(o.value) == raw), None)
    if value is None:
        return None
    answers = dict(row.answers or {})
    answers[item.id] = {"v": value, "at": ensure_utc(now).isoformat()}
    row.answers = answers
    screens: list[Screen] = []
    partial = score_assessment(inst, _values(row), partial=True)
    source = f"assessment_{instrument}"
    ids = [i.id for i in inst.items]
    pos = ids.index(item.id)
    resume = ids[pos + 1] if pos + 1 < len(ids) else None
    followup = _followup_rules(inst)
    asks = next((f for f in partial.triggered if f.action == "suicide_followup"), None)
    if asks is not None and followup is not None and FOLLOWUP not in answers:
        # Item 9 above zero: the counselors hear of it now; the questionnaire stops for the
        # follow-up, whose grade sets the flag's severity.
        item_value = _values(row).get(followup.item, 0)
        row.crisis_at = row.crisis_at or now
        _set(
            row,
            **{
                FOLLOWUP: {"value": item_value, "at": ensure_utc(now).isoformat(), "a": {}, "resume": resume},
                RAISED: [*_raised(row), asks.rule_id],
            },
        )
        await raise_rule_flag(session, wf, patient.id, asks, source=source, now=now)
        first = followup.next_question({})
        assert first is not None  # the rules hold at least one question
        row.step = FOLLOWUP_STEP + first.id
        return Result([_followup_question(content, lang, inst, first, first=True)])
    if partial.crisis and row.crisis_at is None:
        row.crisis_at = now
        crisis = [f for f in partial.triggered if f.crisis]
        for f in crisis:
            await raise_rule_flag(session, wf, patient.id, f, source=source, now=now)
        _set(row, **{RAISED: [*_raised(row), *(f.rule_id for f in crisis)]})
        screens.append(Screen(await crisis_text(session, wf, patient, now)))
    crisis = bool(screens)
    if resume is not None:
        row.step = resume
        # The crisis reply (if any) replaces the question just answered; the next one follows.
        screens.append(_question(content, lang, inst, inst.items[pos + 1], first=False))
        return Result(screens, crisis=crisis)
    return replace(await _finish(session, wf, content, patient, inst, row, now, screens), crisis=crisis)


async def _raise_followup_flag(
    session: AsyncSession,
    wf: Workflow,
    patient_id: int,
    followup: SuicideFollowup,
    severity: str,
    item_value: int,
    said: dict[str, bool],
    source: str,
    now: datetime,
) -> None:
    await raise_flag(
        session,
        wf,
        patient_id=patient_id,
        category=flag_category(followup.category),
        severity=severity,
        reason=followup.describe(item_value, said),
        source=source,
        now=now,
    )


def _score_row(row: AssessmentResult, score: AssessmentScore) -> None:
    row.total = score.total
    row.band = score.band
    row.domains = dict(score.domains)


async def _finish(
    session: AsyncSession,
    wf: Workflow,
    content: Content,
    patient: PatientInfo,
    inst: Questionnaire,
    row: AssessmentResult,
    now: datetime,
    screens: list[Screen],
) -> Result:
    """The last answer: score, store, and raise the flags not raised already."""
    score = score_assessment(inst, _values(row))
    row.status = "done"
    row.step = None
    row.completed_at = now
    row.local_date = local_date(now, patient.timezone)
    _score_row(row, score)
    raised = set(_raised(row))
    for f in score.flags:
        if f.rule_id not in raised:
            await raise_rule_flag(session, wf, patient.id, f, source=f"assessment_{inst.id}", now=now)
    screens.append(Screen(inst.closing or content.t("assessments.thanks", patient.language)))
    return Result(screens, finished=True, flags=tuple(f.category for f in score.flags))


async def followup_answer(
    session: AsyncSession, wf: Workflow, content: Content, patient: PatientInfo, instrument: str, question_id: str,
    raw: str, now: datetime,
) -> Result | None:
    """Store one yes/no answer of the suicide follow-up; None when the button is stale.

    The last answer grades the follow-up: the flag gets its severity and reason, the patient the
    crisis reply or a counselor the same day, and the questionnaire stops with its answers kept.
    """
    if instrument not in INSTRUMENTS or raw not in ("y", "n"):
        return None
    row = await _open(session, patient.id, instrument)
    if row is None or row.step != FOLLOWUP_STEP + question_id:
        return None
    lang = patient.language
    inst = _instrument(content, instrument, lang)
    followup = _followup_rules(inst)
    record = dict((row.answers or {}).get(FOLLOWUP) or {})
    if followup is None or followup.question(question_id) is None or not record:
        return None
    said = {**(record.get("a") or {}), question_id: raw == "y"}
    record["a"] = said
    following = followup.next_question(said)
    if following is not None:
        _set(row, **{FOLLOWUP: record})
        row.step = FOLLOWUP_STEP + following.id
        return Result([_followup_question(content, lang, inst, following, first=False)])
    grade = followup.grade(said)
    record.update(grade=grade.id, done_at=ensure_utc(now).isoformat())
    _set(row, **{FOLLOWUP: record})
    source = f"assessment_{instrument}"
    await _raise_followup_flag(session, wf, patient.id, followup, grade.severity, int(record.get("value") or 0), said, source, now)
    # The last question becomes a thank-you; what to do now follows as a message of its own.
    screens = [Screen(content.t("assessments.followup.thanks", lang))]
    crisis = grade.reply == "crisis"
    if crisis:
        screens.append(Screen(await crisis_text(session, wf, patient, now, flag_category(followup.category))))
    else:
        screens.append(Screen(same_day_text(wf, content, patient, now)))
    resume = record.get("resume")
    if resume not in [i.id for i in inst.items]:
        return replace(await _finish(session, wf, content, patient, inst, row, now, screens), crisis=crisis)
    row.step = resume
    partial = score_assessment(inst, _values(row), partial=True)
    if partial.complete:
        # Every scored item is answered: the total's flags (e.g. severe depression) go now, not
        # only when the patient comes back for the questions that are not scored.
        _score_row(row, partial)
        raised = _raised(row)
        for f in partial.flags:
            if f.rule_id not in raised:
                await raise_rule_flag(session, wf, patient.id, f, source=source, now=now)
                raised.append(f.rule_id)
        _set(row, **{RAISED: raised})
    screens.append(
        Screen(
            content.t("assessments.followup.stopped", lang),
            [[(content.t("assessments.finish_button", lang), buttons.RESUME.pack(instrument))]],
        )
    )
    return Result(screens, flags=(flag_category(followup.category),), crisis=crisis)


def same_day_text(wf: Workflow, content: Content, patient: PatientInfo, now: datetime) -> str:
    """After a follow-up graded for same-day contact: when a counselor will reach out (the one
    wording, `crisis.counselor_line`: honest about office hours, never a promised time), and 988."""
    office_hours, zone = safety.clinic_hours(wf)
    lang = patient.language
    line = counselor_line(lang, office_hours, now, zone=zone, patient_zone=patient.timezone, content=content)
    return f"{line}\n\n{content.t('assessments.followup.lifeline', lang)}"


async def back(session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, now: datetime) -> Result | None:
    if instrument not in INSTRUMENTS:
        return None
    row = await _open(session, patient.id, instrument)
    if row is None:
        return None
    inst = _instrument(content, instrument, patient.language)
    ids = [i.id for i in inst.items]
    if row.step not in ids:
        return None  # inside the follow-up there is no way back
    pos = ids.index(row.step)
    row.step = ids[max(0, pos - 1)]
    return Result([_question(content, patient.language, inst, inst.items[max(0, pos - 1)], first=False)])


async def cancel(session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, now: datetime) -> Result | None:
    """Put the questionnaire aside; it resumes where it stopped on the next Start."""
    if instrument not in INSTRUMENTS:
        return None
    row = await _open(session, patient.id, instrument)
    if row is None:
        return None
    return Result([Screen(content.t("assessments.paused", patient.language))])


async def crisis_text(
    session: AsyncSession, wf: Workflow, patient: PatientInfo, now: datetime, category: str | None = None
) -> str:
    """The crisis reply (`bot.safety.service.crisis_reply`, the one every source sends); if it
    cannot be built, the short form with the emergency numbers."""
    try:
        return await safety.crisis_reply(session, wf, patient, now, category=category)
    except Exception:
        log.exception("assessments: the crisis reply failed; sending the short form")
        return short_form(wf.content, patient.language)


async def latest_scores(session: AsyncSession, content: Content, patient_id: int, lang: str = "en") -> list[LatestScore]:
    out = []
    for name in INSTRUMENTS:
        q = (
            select(AssessmentResult)
            .where(
                AssessmentResult.patient_id == patient_id,
                AssessmentResult.instrument == name,
                AssessmentResult.status == "done",
            )
            .order_by(AssessmentResult.completed_at.desc())
            .limit(1)
        )
        r = (await session.execute(q)).scalar_one_or_none()
        if r is None or r.total is None:
            continue
        inst = _instrument(content, name, lang)
        out.append(
            LatestScore(name, inst.title, r.local_date, r.total, r.band, inst.band_label(r.band), dict(r.domains or {}))
        )
    return out


def score(content: Content, instrument: str, answers: dict[str, int], lang: str = "en") -> AssessmentScore:
    """Score a full set of answers (for tests and reports)."""
    return score_assessment(_instrument(content, instrument, lang), answers)
