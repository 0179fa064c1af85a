"""Assessments (DESIGN §2.3): the weekly recovery check, PHQ-9 and GAD-7.

Cadence, bands and flag rules are data (`content/rules/assessments.yaml`), applied through
`bot.clinical`. Answers are stored item by item with their time. After every answer the partial
score is checked, so PHQ-9 item 9 above zero starts the crisis path at once: the crisis
resources go to the patient and a crisis flag is raised, before the questionnaire goes on.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.checkins import Result, Row, Screen, clinical_for, raise_rule_flag
from bot.clinical import AssessmentScore, Instrument, Item, next_assessment_date, score_assessment
from bot.clock import ensure_utc, local_date
from bot.content import Content, Html
from bot.models import AssessmentResult
from bot.people import PatientInfo

log = logging.getLogger(__name__)

INSTRUMENTS = ("weekly", "phq9", "gad7")
CRISIS_REGION = "us"


@dataclass(frozen=True)
class LatestScore:
    instrument: str
    title: str
    day: date
    total: int
    band: str | None
    band_label: str | None
    domains: dict[str, int]


def _instrument(content: Content, instrument: str, lang: str) -> Instrument:
    return clinical_for(content).instrument(instrument, lang)


# Each instrument's last completion; asked at the end of every check-in.
_R = AssessmentResult.__table__.c
_LAST_COMPLETED = (
    select(_R.instrument, func.max(_R.local_date))
    .where(_R.patient_id == bindparam("patient_id"), _R.status == "done")
    .group_by(_R.instrument)
)


async def due(session: AsyncSession, content: Content, patient_id: int, today: date) -> list[str]:
    """Instruments due today or overdue, by their cadence in the rules."""
    rules = clinical_for(content).assessment_rules
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
                [[(content.t("assessments.start_button", patient.language), f"as:start:{name}")]],
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


def _question(content: Content, lang: str, inst: Instrument, item: Item, *, first: bool) -> Screen:
    n = [i.id for i in inst.items].index(item.id) + 1
    parts: list[str] = []
    if first:
        parts += [p for p in (inst.intro, inst.attribution and f"<i>{inst.attribution}</i>") if p]
    parts.append(content.t("assessments.step", lang, title=Html(inst.title), n=n, total=len(inst.items)))
    if inst.stem and item.scored:
        parts.append(inst.stem)
    parts.append(f"<b>{item.prompt}</b>")
    buttons = [(o.label, f"as:a:{inst.id}:{item.id}:{o.value}") for o in item.options]
    cols = item.columns or 1
    rows: list[Row] = [buttons[i : i + cols] for i in range(0, len(buttons), cols)]
    controls: Row = []
    if n > 1:
        controls.append((content.t("checkins.back_button", lang), f"as:back:{inst.id}"))
    controls.append((content.t("checkins.cancel_button", lang), f"as:cancel:{inst.id}"))
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
    item = next((i for i in inst.items if i.id == row.step), inst.items[0])
    return Result([_question(content, lang, inst, item, first=True)])


def _values(row: AssessmentResult) -> dict[str, Any]:
    return {k: v["v"] for k, v in (row.answers or {}).items()}


async def answer(
    session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, item_id: str, raw: str,
    now: datetime,
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
    if partial.crisis and row.crisis_at is None:
        row.crisis_at = now
        for f in partial.triggered:
            if f.crisis:
                await raise_rule_flag(session, patient.id, f, source=f"assessment_{instrument}", now=now)
        screens.append(Screen(await crisis_text(session, content, patient, now)))
    ids = [i.id for i in inst.items]
    pos = ids.index(item.id)
    if pos + 1 < len(ids):
        row.step = ids[pos + 1]
        # The crisis reply (if any) replaces the question just answered; the next one follows.
        screens.append(_question(content, lang, inst, inst.items[pos + 1], first=False))
        return Result(screens)
    score = score_assessment(inst, _values(row))
    row.status = "done"
    row.step = None
    row.completed_at = now
    row.local_date = local_date(now, patient.timezone)
    row.total = score.total
    row.band = score.band
    row.domains = dict(score.domains)
    for f in score.flags:
        if f.crisis and row.crisis_at is not None and f.rule_id in {t.rule_id for t in partial.triggered if t.crisis}:
            continue
        await raise_rule_flag(session, patient.id, f, source=f"assessment_{instrument}", now=now)
    screens.append(Screen(inst.closing or content.t("assessments.thanks", lang)))
    return Result(screens, finished=True, flags=tuple(f.category for f in score.flags))


async def back(session: AsyncSession, content: Content, patient: PatientInfo, instrument: str, now: datetime) -> Result | None:
    if instrument not in INSTRUMENTS:
        return None
    row = await _open(session, patient.id, instrument)
    if row is None:
        return None
    inst = _instrument(content, instrument, patient.language)
    ids = [i.id for i in inst.items]
    pos = ids.index(row.step) if row.step in ids else 0
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


async def crisis_text(session: AsyncSession, content: Content, patient: PatientInfo, now: datetime) -> str:
    """The crisis reply: the escalation area's message (resources, the patient's plan, when a
    counselor will answer) when installed, else the region's resource list."""
    try:
        crisis = importlib.import_module("bot.crisis")
        safety = importlib.import_module("bot.safety")
        from bot import flags

        workflow = getattr(flags, "workflow", None)
        wf = workflow() if workflow is not None else None
        settings = getattr(wf, "settings", None)
        lines = await safety.plan_lines(session, patient.id)
        text = crisis.crisis_message(
            patient.language,
            CRISIS_REGION,
            lines,
            getattr(settings, "office_hours", None),
            now,
            zone=patient.timezone,
            content=content,
        )
        if isinstance(text, str) and text:
            return text
    except Exception:
        log.exception("assessments: the crisis message failed; sending the resource list")
    clinical = clinical_for(content)
    parts = [content.t("assessments.crisis_intro", patient.language)]
    for r in clinical.resources(CRISIS_REGION, patient.language):
        parts.append(f"<b>{r.name}</b>: {r.how}. {r.description}")
    return "\n\n".join(parts)


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
