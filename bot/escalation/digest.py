"""The daily digest for the counselors' group (no names): open flags, the low flags posted
nowhere else, the last 24 hours, follow-ups due and trends. Run by the sweeper every clinic
morning (kind registered in area.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments.models import AssessmentResult
from bot.core.models import Patient
from bot.core.vocabulary import FlagStatus, Severity
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rendering import age_text, answer_text, flag_fields, why_text
from bot.escalation.renotify import KIND_FOLLOWUP
from bot.escalation.rules import DigestRules, Workflow
from bot.escalation.service import open_flags
from bot.escalation.values import FlagInfo, flag_info, patient_code
from bot.platform.clock import ensure_utc, local_date, local_text, next_local_due, zone_name
from bot.platform.content import Html
from bot.platform.models import ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.platform.scheduler import schedule
from bot.platform.text import split_text

log = logging.getLogger(__name__)


KIND_DIGEST = "flag_digest"


async def ensure_digest_scheduled(session: AsyncSession, wf: Workflow, now: datetime) -> None:
    due = next_local_due(wf.rules.digest.at, wf.zone, now)
    await schedule(session, KIND_DIGEST, f"flagdigest:{local_date(due, wf.zone).isoformat()}", due)


async def digest_item(session: AsyncSession, wf: Workflow, item: ScheduledItem, now: datetime) -> None:
    if wf.group is not None:
        for i, part in enumerate(split_text(await build_digest(session, wf, now))):
            await enqueue(session, Outgoing(wf.group, part), now=now, dedup_key=item.key if i == 0 else f"{item.key}:{i}")
    await ensure_digest_scheduled(session, wf, now)


async def build_digest(session: AsyncSession, wf: Workflow, now: datetime) -> str:
    """The daily digest for the group, no names: open flags, the low flags (posted nowhere else),
    the last 24 hours (crisis or high flags, PHQ-9 item 9 above zero, resolved flags), follow-ups
    due, and trends (silent patients, rising craving, PHQ-9 band up)."""
    c, lang, z, rules = wf.content, wf.lang, wf.zone, wf.rules
    since = now - DIGEST_WINDOW
    parts = [c.t("flags.digest_title", lang)]

    def flag_line(f: FlagInfo) -> str:
        return c.t("flags.digest_flag", lang, **flag_fields(c, lang, f), age=age_text(c, lang, now - f.opened_at))

    open_all = await open_flags(session, limit=200)
    posted = [f for f in open_all if f.severity != Severity.LOW]
    low = [f for f in open_all if f.severity == Severity.LOW]
    if posted:
        parts.append(c.t("flags.digest_open", lang, n=len(posted)) + "\n" + "\n".join(flag_line(f) for f in posted))
    elif not low:
        parts.append(c.t("flags.digest_none_open", lang))
    if low:
        parts.append(c.t("flags.digest_low", lang, n=len(low)) + "\n" + "\n".join(flag_line(f) for f in low))

    urgent = await _urgent_since(session, since)
    if urgent:
        lines = [
            c.t(
                "flags.digest_urgent_flag",
                lang,
                **flag_fields(c, lang, f),
                why=Html(why_text(f.why, source=f.source, content=c, lang=lang)),
            )
            for f in urgent
        ]
        parts.append(c.t("flags.digest_urgent", lang) + "\n" + "\n".join(lines))
    item9 = await _item9_since(session, since)
    if item9:
        codes = ", ".join(
            c.t("flags.digest_item9_code", lang, code=code, value=Html(answer_text(c, lang, "phq9", "q9", value)))
            for code, value in item9
        )
        parts.append(c.t("flags.digest_item9", lang, codes=Html(codes)))
    resolved = await _resolved_since(session, since)
    if resolved:
        lines = [
            c.t(
                "flags.digest_resolved_flag",
                lang,
                **flag_fields(c, lang, f),
                name=f.resolved_by_name or "?",
                time=local_text(f.resolved_at or now, z),
            )
            for f in resolved
        ]
        parts.append(c.t("flags.digest_resolved", lang, n=len(resolved)) + "\n" + "\n".join(lines))
    followups = await _followups_due(session, now + DIGEST_WINDOW)
    if followups:
        lines = [c.t("flags.digest_followup", lang, code=code, id=fid, time=local_text(due, z)) for code, fid, due in followups]
        parts.append(c.t("flags.digest_followups", lang) + "\n" + "\n".join(lines))

    silent, rising, phq = await _trends(session, now, rules.digest)
    if silent:
        parts.append(c.t("flags.digest_silent", lang, days=rules.digest.silent_days, codes=", ".join(silent)))
    if rising:
        parts.append(c.t("flags.digest_craving", lang, codes=", ".join(rising)))
    if phq:
        parts.append(c.t("flags.digest_phq9", lang, codes=", ".join(phq)))
    if not (urgent or item9 or silent or rising or phq):
        parts.append(c.t("flags.digest_no_trends", lang))
    if resolved or followups:
        parts.append(c.t("flags.digest_times", lang, zone=zone_name(z, now)))
    return "\n\n".join(parts)


DIGEST_WINDOW = timedelta(hours=24)  # "the last 24 hours": the time since the previous digest


async def _urgent_since(session: AsyncSession, since: datetime) -> list[FlagInfo]:
    """Flags with a crisis or high trigger since `since` (open or not), most severe first."""
    ids = select(FlagEvent.flag_id).where(
        FlagEvent.kind == "trigger", FlagEvent.severity.in_((Severity.CRISIS, Severity.HIGH)), FlagEvent.at >= since
    )
    rows = (
        await session.execute(
            select(Flag, Patient.code).join(Patient, Patient.id == Flag.patient_id).where(Flag.id.in_(ids)).order_by(Flag.id)
        )
    ).all()
    return sorted((flag_info(f, code) for f, code in rows), key=lambda i: (-Severity(i.severity).rank(), i.id))


async def _resolved_since(session: AsyncSession, since: datetime) -> list[FlagInfo]:
    rows = (
        await session.execute(
            select(Flag, Patient.code)
            .join(Patient, Patient.id == Flag.patient_id)
            .where(Flag.status == FlagStatus.RESOLVED, Flag.resolved_at >= since)
            .order_by(Flag.resolved_at, Flag.id)
        )
    ).all()
    return [flag_info(f, code) for f, code in rows]


async def _item9_since(session: AsyncSession, since: datetime) -> list[tuple[str, int]]:
    """(patient code, item 9 answer) for PHQ-9s answered since `since` with item 9 above zero."""
    rows = (
        await session.execute(
            select(AssessmentResult, Patient.code)
            .join(Patient, Patient.id == AssessmentResult.patient_id)
            .where(
                AssessmentResult.instrument == "phq9",
                AssessmentResult.status != "cancelled",
                or_(AssessmentResult.started_at >= since, AssessmentResult.completed_at >= since),
            )
            .order_by(AssessmentResult.started_at, AssessmentResult.id)
        )
    ).all()
    best: dict[str, int] = {}
    for row, code in rows:
        answer = (row.answers or {}).get("q9")
        value = answer.get("v") if isinstance(answer, dict) else answer
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            best[code] = max(best.get(code, 0), value)
    return sorted(best.items())


async def _followups_due(session: AsyncSession, until: datetime) -> list[tuple[str, int, datetime]]:
    """(patient code, flag id, when) for the check-ins after a resolved flag due before `until`."""
    items = (
        await session.execute(
            select(ScheduledItem)
            .where(ScheduledItem.kind == KIND_FOLLOWUP, ScheduledItem.status == "pending", ScheduledItem.due_at <= until)
            .order_by(ScheduledItem.due_at)
        )
    ).scalars()
    out: list[tuple[str, int, datetime]] = []
    for item in items:
        payload = item.payload or {}
        code = await patient_code(session, int(payload.get("patient_id", 0)))
        out.append((code, int(payload.get("flag_id", 0)), ensure_utc(item.due_at)))
    return out


async def _trends(session: AsyncSession, now: datetime, rules: DigestRules) -> tuple[list[str], list[str], list[str]]:
    """Patient codes: silent for N days, rising craving, PHQ-9 band up (best effort)."""
    silent: list[str] = []
    rising: list[str] = []
    phq: list[str] = []
    patients = (await session.execute(select(Patient.id, Patient.code, Patient.created_at).where(Patient.status == "active"))).all()
    try:
        from bot.checkins.models import CheckinEntry

        last = dict(
            (
                await session.execute(
                    select(CheckinEntry.patient_id, func.max(CheckinEntry.completed_at)).group_by(CheckinEntry.patient_id)
                )
            ).all()
        )
        cutoff = now - timedelta(days=rules.silent_days)
        for pid, code, created in patients:
            seen = last.get(pid) or created
            if seen is not None and ensure_utc(seen) < cutoff:
                silent.append(code)
        w = rules.craving_window
        for pid, code, _created in patients:
            vals = list(
                (
                    await session.execute(
                        select(CheckinEntry.craving)
                        .where(CheckinEntry.patient_id == pid, CheckinEntry.completed_at.is_not(None), CheckinEntry.craving.is_not(None))
                        .order_by(CheckinEntry.local_date.desc())
                        .limit(2 * w)
                    )
                ).scalars()
            )
            if len(vals) >= 2 * w and sum(vals[:w]) / w - sum(vals[w:]) / w >= rules.craving_rise:
                rising.append(code)
    except Exception as exc:
        log.info("digest: check-in trends unavailable (%s)", type(exc).__name__)
    try:
        from bot.assessments.models import AssessmentResult

        for pid, code, _created in patients:
            totals = list(
                (
                    await session.execute(
                        select(AssessmentResult.total, AssessmentResult.band)
                        .where(AssessmentResult.patient_id == pid, AssessmentResult.instrument == "phq9", AssessmentResult.status == "done")
                        .order_by(AssessmentResult.completed_at.desc())
                        .limit(2)
                    )
                ).all()
            )
            if len(totals) == 2:
                (t1, b1), (t0, b0) = totals
                if t1 is not None and t0 is not None and t1 > t0 and b1 != b0:
                    phq.append(code)
    except Exception as exc:
        log.info("digest: assessment trends unavailable (%s)", type(exc).__name__)
    return silent, rising, phq
