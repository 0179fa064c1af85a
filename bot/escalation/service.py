"""Escalation flags: the one service every source raises flags through (DESIGN §2.6).

`raise_flag` keeps one open flag per patient and category: a new trigger adds an event and may
raise the severity; it never opens a second flag. Posting to the counselors' group goes through
the outbox in the same transaction (rendering.py). The lifecycle is open → claimed → resolved,
one table of moves (lifecycle.py), each step with its timestamp and an event (who, when);
re-notification and the follow-up run through the sweeper (renotify.py). Details, history and the open flags are read here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments.models import AssessmentResult
from bot.checkins.models import CheckinEntry
from bot.core.audit import audit
from bot.core.clinical import FlagRequest, flag_category
from bot.core.models import Patient, StaffRole
from bot.core.vocabulary import FLAG_SEVERITIES, Category, FlagStatus, Severity
from bot.escalation import lifecycle
from bot.escalation.lifecycle import Move
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rendering import (
    DETAILS_TRIGGERS,
    edit_posts,
    notify_new_trigger,
    plain_alert,
    publish,
    split_reason,
    view,
    why_fields,
)
from bot.escalation.renotify import (
    restart_renotify,
    schedule_followup,
    schedule_renotify,
    stop_renotify,
)
from bot.escalation.rules import (
    ASSESSMENT_SOURCE,
    SOURCES,
    Workflow,
)
from bot.escalation.values import (
    CheckinInfo,
    FlagDetails,
    FlagInfo,
    ScoreInfo,
    Trigger,
    flag_info,
    locked,
    patient_code,
)
from bot.platform.clock import ensure_utc
from bot.platform.content import Content
from bot.platform.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlagResult:
    flag_id: int
    created: bool  # False: the trigger joined an open flag
    severity: str  # the flag's severity after this trigger
    escalated: bool  # True: the severity went up


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    reason: str | None  # not_found, or why the lifecycle refused the move (lifecycle.REFUSALS)
    flag: FlagInfo | None


@dataclass(frozen=True)
class EventInfo:
    at: datetime
    kind: str
    actor_id: int | None
    source: str | None
    severity: str | None
    reason: str | None
    detail: dict[str, Any] | None


# -- raising ---------------------------------------------------------------------------------------


async def raise_flag(
    session: AsyncSession,
    wf: Workflow,
    *,
    patient_id: int,
    category: str,
    severity: str,
    reason: str,
    source: str,
    now: datetime,
    evidence: str | None = None,
    actor_id: int | None = None,
) -> FlagResult:
    """Open a flag, or add this trigger to the open flag of the same patient and category.

    `reason` is a rule id or a short reason and is shown to counselors (never patient text);
    `evidence` holds the patient's words, if any (encrypted, shown only in Details).
    """
    if severity not in FLAG_SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    if not Category.known(category):
        raise ValueError(f"unknown category {category!r}")
    # Lock the patient first: two triggers at once for the same patient never open two flags.
    await session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update())
    q = (
        select(Flag)
        .where(Flag.patient_id == patient_id, Flag.category == category, Flag.status != FlagStatus.RESOLVED)
        .order_by(Flag.id)
        .with_for_update()
    )
    flag = (await session.execute(q)).scalars().first()
    created = flag is None
    escalated = False
    if flag is None:
        flag = Flag(
            patient_id=patient_id,
            category=category,
            severity=severity,
            source=source,
            renotify_stage=0,
            rev=0,
        )
        lifecycle.open_flag(flag, now)
        session.add(flag)
        await session.flush()
    elif Severity(severity) > flag.severity:
        flag.severity = severity
        flag.rev = (flag.rev or 0) + 1
        escalated = True
    if source not in SOURCES and not source.startswith(ASSESSMENT_SOURCE) and source not in _unknown_sources:
        _unknown_sources.add(source)
        log.warning("flags: trigger source %r is not in flags.SOURCES (it has no label)", source)
    event = FlagEvent(
        flag_id=flag.id,
        at=now,
        kind="trigger",
        actor_id=actor_id,
        source=source,
        severity=severity,
        reason=reason[:200],
        evidence=evidence,
    )
    session.add(event)
    await session.flush()
    if created or escalated:
        log_flag("raised" if created else "escalated", flag, source=source)
    try:
        await _explain(session, wf, flag, event)
    except Exception as exc:  # the why is for counselors' convenience; the flag stands without it
        log.error("flags: why flag %s stands could not be worked out (%s)", flag.id, type(exc).__name__)
    try:
        await _after_raise(session, wf, flag, created, escalated, now, event)
    except Exception as exc:
        # A bug or a gap in the words must not cost the flag and the answers that raised it: the
        # group gets a plain alert instead (a database failure still fails the whole unit).
        log.error("flags: flag %s could not be announced as usual (%s); sending a plain alert", flag.id, type(exc).__name__)
        await plain_alert(session, wf, flag, event, now)
    return FlagResult(flag.id, created, flag.severity, escalated)


_unknown_sources: set[str] = set()


async def raise_rule_flag(
    session: AsyncSession, wf: Workflow, patient_id: int, flag: FlagRequest, *, source: str, now: datetime
) -> None:
    """Raise the flag a content rule asks for (a rule naming an unknown category is logged, so a
    content mistake never loses the patient's answers)."""
    category = flag_category(flag.category)
    if not Category.known(category):
        log.error("rule %s names unknown flag category %r; no flag raised", flag.rule_id, flag.category)
        return
    await raise_flag(
        session,
        wf,
        patient_id=patient_id,
        category=category,
        severity=flag.severity,
        reason=f"{flag.rule_id}: {flag.reason}",
        source=source,
        now=now,
    )


async def talk_request(
    session: AsyncSession,
    wf: Workflow,
    patient_id: int,
    now: datetime,
    *,
    source: str = "talk",
    severity: str | None = None,
    reason: str | None = None,
) -> FlagResult:
    """A patient asks a counselor to reach out: the one way every source asks (/talk, /sos, the
    lapse check-in, a conversation whose counselor left the team). The talk flag has the severity
    and reason of `talk` in content/rules/escalation.yaml unless the source has its own rule."""
    rule = wf.rules.talk
    return await raise_flag(
        session,
        wf,
        patient_id=patient_id,
        category="talk_request",
        severity=severity or rule.severity,
        reason=reason or rule.reason,
        source=source,
        now=now,
    )


def log_flag(what: str, flag: Flag, *, source: str | None = None) -> None:
    """One INFO line when a flag is raised, escalated, claimed or resolved: its number, severity,
    category and source only (no code, name, Telegram id or patient words: logs hold no personal
    data)."""
    log.info(
        "flags: flag %s %s (severity %s, category %s, source %s)",
        flag.id, what, flag.severity, flag.category, source or flag.source,
    )


async def _after_raise(
    session: AsyncSession, wf: Workflow, flag: Flag, created: bool, escalated: bool, now: datetime, event: FlagEvent
) -> None:
    announced = await publish(session, wf, flag, created, escalated, now)
    # A new high or crisis trigger on a flag that is already open or claimed reaches the group
    # again (a reply to the flag's post), and re-notification starts over from it.
    urgent = not created and not announced and event.severity is not None and Severity(event.severity) >= Severity.HIGH
    renewed = urgent and await notify_new_trigger(session, wf, flag, event, escalated, now)
    if not created and flag.status == FlagStatus.CLAIMED and flag.claimed_by is not None:
        # The counselor who holds the flag hears about every new trigger (no words, no name).
        info, text, kb = await view(session, wf, flag)
        await enqueue(
            session,
            Outgoing(
                flag.claimed_by,
                wf.content.t("flags.new_trigger", wf.lang, id=flag.id, code=info.patient_code) + "\n\n" + text,
                reply_markup=kb,
            ),
            now=now,
            ref=f"flag:{flag.id}:{flag.rev or 0}:t",
        )
    if renewed and flag.status in (FlagStatus.OPEN, FlagStatus.CLAIMED):
        # A claimed flag's round runs only while its holder has not acted on it since.
        await restart_renotify(session, wf, flag, now, event)
    elif flag.status == FlagStatus.OPEN and (created or escalated):
        await schedule_renotify(session, wf, flag, now)


# -- why a flag stands: the answers behind it (rendering.why_text words it) ------------------------


async def _facts(session: AsyncSession, patient_id: int, source: str, at: datetime, wanted: set[str]) -> dict[str, Any]:
    """The answers behind a trigger that its readable reason names: an assessment's items
    (`q9`), `total` and `domain_<name>`; a check-in's `mood`, `craving`, `use`, `sleep`,
    `medication`; the `days` without a check-in."""
    if not wanted:
        return {}
    found: dict[str, Any] = {}
    if source.startswith(ASSESSMENT_SOURCE):
        row = (
            await session.execute(
                select(AssessmentResult)
                .where(
                    AssessmentResult.patient_id == patient_id,
                    AssessmentResult.instrument == source[len(ASSESSMENT_SOURCE):],
                    AssessmentResult.started_at <= at,
                )
                .order_by(AssessmentResult.started_at.desc(), AssessmentResult.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if row is not None:
            for item, answer in (row.answers or {}).items():
                found[str(item)] = answer.get("v") if isinstance(answer, dict) else answer
            found["total"] = row.total
            for domain, value in (row.domains or {}).items():
                found[f"domain_{domain}"] = value
    elif source == "checkin":
        entry = (
            await session.execute(
                select(CheckinEntry)
                .where(CheckinEntry.patient_id == patient_id, CheckinEntry.completed_at <= at)
                .order_by(CheckinEntry.completed_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if entry is not None:
            found.update(mood=entry.mood, craving=entry.craving, use=entry.use, sleep=entry.sleep, medication=entry.medication)
    elif source == "checkin_silence":
        last = (
            await session.execute(
                select(func.max(CheckinEntry.completed_at)).where(
                    CheckinEntry.patient_id == patient_id, CheckinEntry.completed_at <= at
                )
            )
        ).scalar_one_or_none()
        if last is None:
            last = (await session.execute(select(Patient.created_at).where(Patient.id == patient_id))).scalar_one_or_none()
        if last is not None:
            found["days"] = (ensure_utc(at) - (_as_utc(last) or ensure_utc(at))).days
    return {k: v for k, v in found.items() if k in wanted and isinstance(v, int | float | str) and not isinstance(v, bool)}


async def _explain(session: AsyncSession, wf: Workflow, flag: Flag, event: FlagEvent) -> None:
    """Keep `flag.why`: the first trigger that brought the flag to its highest severity, with the
    answers its readable reason names. It changes only when the severity rises (and the post is
    edited then). A failure here is logged and never costs the flag."""
    try:
        severity = event.severity or flag.severity
        current = flag.why or None
        if current is not None and current.get("severity") in FLAG_SEVERITIES and Severity(severity) <= current["severity"]:
            return
        rule, text = split_reason(event.reason)
        facts = await _facts(session, flag.patient_id, event.source or "", event.at, why_fields(wf.content, wf.lang, rule) or set())
        flag.why = {
            "source": event.source,
            "severity": severity,
            "rule": rule,
            "reason": text[:200],
            "facts": facts,
            "at": ensure_utc(event.at).isoformat(),
        }
    except Exception as exc:
        log.warning("flags: why flag %s was raised is not recorded (%s)", flag.id, type(exc).__name__)


# -- claim, resolve, details, history --------------------------------------------------------------


async def claim(
    session: AsyncSession, wf: Workflow, flag_id: int, *, actor_id: int, actor_name: str | None, now: datetime
) -> ActionResult:
    flag = await locked(session, flag_id)
    if flag is None:
        return ActionResult(False, "not_found", None)
    code = await patient_code(session, flag.patient_id)
    try:
        moved = await lifecycle.move(session, flag, Move.CLAIM, actor_id=actor_id, actor_name=actor_name, now=now)
    except lifecycle.Refused as refused:
        return ActionResult(False, refused.reason, flag_info(flag, code))
    if moved:  # (a second tap by its holder changes nothing)
        log_flag("claimed", flag)
        await stop_renotify(session, flag.id)
        await session.flush()
        await edit_posts(session, wf, flag, now)
    return ActionResult(True, None, flag_info(flag, code))


async def resolve(
    session: AsyncSession, wf: Workflow, flag_id: int, *, actor_id: int, actor_name: str | None, note: str, now: datetime
) -> ActionResult:
    """Resolve with a short outcome note (stored encrypted; never posted to the group)."""
    flag = await locked(session, flag_id)
    if flag is None:
        return ActionResult(False, "not_found", None)
    code = await patient_code(session, flag.patient_id)
    try:
        await lifecycle.move(session, flag, Move.RESOLVE, actor_id=actor_id, actor_name=actor_name, now=now)
    except lifecycle.Refused as refused:
        return ActionResult(False, refused.reason, flag_info(flag, code))
    flag.outcome = note.strip()[:2000]
    log_flag("resolved", flag)
    await stop_renotify(session, flag.id)
    await session.flush()
    await edit_posts(session, wf, flag, now)
    if flag.severity in wf.rules.followup.severities:
        await schedule_followup(session, wf, flag, now)
    return ActionResult(True, None, flag_info(flag, code))


async def get_flag(session: AsyncSession, flag_id: int) -> FlagInfo | None:
    flag = await session.get(Flag, flag_id)
    return None if flag is None else flag_info(flag, await patient_code(session, flag.patient_id))


async def open_flags(session: AsyncSession, limit: int = 50) -> list[FlagInfo]:
    """Open and claimed flags, the most recent trigger first (a flag opened hours ago that just
    had a new trigger is at the top), each with the time of that latest trigger."""
    latest = (
        select(FlagEvent.flag_id, func.max(FlagEvent.at).label("at"))
        .where(FlagEvent.kind == "trigger")
        .group_by(FlagEvent.flag_id)
        .subquery()
    )
    last_at = func.coalesce(latest.c.at, Flag.opened_at)
    rows = (
        await session.execute(
            select(Flag, Patient.code, last_at)
            .join(Patient, Patient.id == Flag.patient_id)
            .outerjoin(latest, latest.c.flag_id == Flag.id)
            .where(Flag.status != FlagStatus.RESOLVED)
            .order_by(last_at.desc(), Flag.id.desc())
            .limit(limit)
        )
    ).all()
    return [replace(flag_info(f, code), last_trigger_at=_as_utc(at) or f.opened_at) for f, code, at in rows]


def _as_utc(value: Any) -> datetime | None:
    """A timestamp from an aggregate (SQLite gives it back as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return ensure_utc(value)


async def history(session: AsyncSession, flag_id: int) -> list[EventInfo]:
    """Every trigger and action on a flag, oldest first (no patient text)."""
    rows = (
        await session.execute(select(FlagEvent).where(FlagEvent.flag_id == flag_id).order_by(FlagEvent.at, FlagEvent.id))
    ).scalars()
    return [EventInfo(e.at, e.kind, e.actor_id, e.source, e.severity, e.reason, e.detail) for e in rows]


async def details(session: AsyncSession, wf: Workflow, flag_id: int, *, actor_id: int, now: datetime) -> FlagDetails | None:
    """What one counselor needs to act, for their DM: name, the triggers with their readable
    reasons and words, questionnaires, the patient's other open flags, their plan, MAT and the
    last check-ins. Audited."""
    flag = await session.get(Flag, flag_id)
    if flag is None:
        return None
    patient = await session.get(Patient, flag.patient_id)
    if patient is None:
        return None
    c, lang = wf.content, wf.lang
    events = list(
        (
            await session.execute(
                select(FlagEvent).where(FlagEvent.flag_id == flag_id, FlagEvent.kind == "trigger").order_by(FlagEvent.at, FlagEvent.id)
            )
        ).scalars()
    )
    triggers = []
    for i, e in enumerate(events):
        facts: dict[str, Any] = {}
        if i >= len(events) - DETAILS_TRIGGERS:
            rule, _text = split_reason(e.reason)
            facts = await _facts(session, patient.id, e.source or "", e.at, why_fields(c, lang, rule) or set())
        triggers.append(Trigger(e.at, e.source, e.severity, e.reason, e.evidence, facts))
    others = (
        await session.execute(
            select(Flag)
            .where(Flag.patient_id == patient.id, Flag.status != FlagStatus.RESOLVED, Flag.id != flag.id)
            .order_by(Flag.opened_at.desc(), Flag.id.desc())
        )
    ).scalars()
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="details", actor_id=actor_id))
    await audit(session, actor_id, "flag.details", f"flag:{flag.id}", {"patient": patient.code}, now=now)
    return FlagDetails(
        flag_info(flag, patient.code),
        patient.first_name,
        patient.telegram_id,
        patient.language,
        triggers,
        scores=await _scores(session, c, lang, patient.id),
        other_flags=[flag_info(f, patient.code) for f in others],
        plan=await _plan_summary(session, patient.id),
        mat=bool(patient.mat),
        medication_schedule=getattr(patient, "medication_schedule", None),
        recent=await _recent_checkins(session, patient.id),
        at=now,
    )


DETAILS_INSTRUMENTS = ("phq9", "gad7")


async def _scores(session: AsyncSession, c: Content, lang: str, patient_id: int) -> list[ScoreInfo]:
    """The latest PHQ-9 and GAD-7 (finished, or started and not finished), with item 9."""
    out: list[ScoreInfo] = []
    try:
        from bot.core.rules_loader import load_instruments

        instruments = load_instruments(c.root)
    except Exception as exc:
        log.warning("flags: questionnaire wording unavailable (%s)", type(exc).__name__)
        instruments = None
    for name in DETAILS_INSTRUMENTS:
        row = (
            await session.execute(
                select(AssessmentResult)
                .where(
                    AssessmentResult.patient_id == patient_id,
                    AssessmentResult.instrument == name,
                    AssessmentResult.status != "cancelled",
                )
                .order_by(AssessmentResult.started_at.desc(), AssessmentResult.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if row is None:
            continue
        title, band = name.upper(), row.band
        if instruments is not None:
            try:
                inst = instruments.instrument(name, lang)
                title, band = str(inst.title), inst.band_label(row.band) or row.band
            except Exception:
                pass
        answer = (row.answers or {}).get("q9") if name == "phq9" else None
        item9 = answer.get("v") if isinstance(answer, dict) else answer
        done = row.status == "done"
        out.append(
            ScoreInfo(
                name, title, row.total if done else None, band if done else None,
                item9 if isinstance(item9, int) and not isinstance(item9, bool) else None,
                ensure_utc(row.completed_at or row.started_at), done,
            )
        )
    return out


async def _plan_summary(session: AsyncSession, patient_id: int) -> dict[str, list[str]]:
    """The patient's plan, section by section (people to call first)."""
    try:
        from bot.recovery.plans import SOS_ORDER, entry_line_plain, get_plan

        plan = await get_plan(session, patient_id)
    except Exception as exc:
        log.info("flags: plan unavailable (%s)", type(exc).__name__)
        return {}
    order = ("people", "professionals", *(s for s in SOS_ORDER if s not in ("people", "professionals")))
    return {s: [entry_line_plain(e) for e in plan.section(s)] for s in order if plan.section(s)}


async def _recent_checkins(session: AsyncSession, patient_id: int, n: int = 7) -> list[CheckinInfo]:
    rows = (
        await session.execute(
            select(CheckinEntry)
            .where(CheckinEntry.patient_id == patient_id, CheckinEntry.completed_at.is_not(None))
            .order_by(CheckinEntry.completed_at.desc())
            .limit(n)
        )
    ).scalars()
    return [CheckinInfo(ensure_utc(r.completed_at), r.mood, r.craving, r.use, r.medication) for r in rows if r.completed_at]


async def staff_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    """Display names of staff, as recorded with their role or on the flags they handled."""
    out: dict[int, str] = {}
    if not ids:
        return out
    q = select(StaffRole.telegram_id, StaffRole.display_name).where(StaffRole.telegram_id.in_(ids))
    for uid, name in (await session.execute(q)).all():
        if name:
            out[uid] = name
    for col_id, col_name in ((Flag.claimed_by, Flag.claimed_by_name), (Flag.resolved_by, Flag.resolved_by_name)):
        for uid, name in (await session.execute(select(col_id, col_name).where(col_id.in_(ids)).distinct())).all():
            if name and uid not in out:
                out[uid] = name
    return out
