"""Progress (DESIGN §2.4): the 30-day chart data, its two-line summary, and the counselor view.

`/patient <code>` is a staff view of health data: every look is audited (an AuditEntry with the
patient code, never health data).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments import service as assessments
from bot.assessments.models import AssessmentResult
from bot.checkins import sobriety
from bot.checkins.charts import ChartDay, ChartLabels, render
from bot.checkins.models import CheckinEntry
from bot.core.audit import audit
from bot.core.models import Patient
from bot.core.people import PatientInfo
from bot.core.rules_loader import instruments_for
from bot.core.vocabulary import FlagStatus
from bot.escalation.models import Flag
from bot.escalation.rules import label as flag_label
from bot.platform.clock import ensure_utc, local_date, local_text, zone_name
from bot.platform.content import Content, Html

DAYS = 30


@dataclass(frozen=True)
class Progress:
    days: list[ChartDay]
    summary: str
    chart: bytes


@dataclass(frozen=True)
class CounselorView:
    code: str
    text: str
    chart: bytes
    patient_id: int  # whose view it is (an erasure takes the message back)


async def chart_days(session: AsyncSession, patient_id: int, today: date, days: int = DAYS) -> list[ChartDay]:
    first = today - timedelta(days=days - 1)
    q = select(CheckinEntry).where(
        CheckinEntry.patient_id == patient_id,
        CheckinEntry.completed_at.is_not(None),
        CheckinEntry.local_date >= first,
        CheckinEntry.local_date <= today,
    )
    by_day = {e.local_date: e for e in (await session.execute(q)).scalars()}
    lapses = set(await sobriety.lapse_dates(session, patient_id))
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        e = by_day.get(d)
        out.append(
            ChartDay(
                day=d,
                mood=e.mood if e else None,
                craving=e.craving if e else None,
                checked_in=e is not None,
                lapse=d in lapses or (e is not None and e.use == "used"),
            )
        )
    return out


def labels(content: Content, lang: str) -> ChartLabels:
    t = content.t
    return ChartLabels(
        title=t("progress.chart_title", lang),
        mood=t("progress.chart_mood", lang),
        craving=t("progress.chart_craving", lang),
        date=t("progress.chart_date", lang),
        checkin=t("progress.chart_checkin", lang),
        lapse=t("progress.chart_lapse", lang),
    )


def _avg(values: list[int]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else "–"


async def summary_text(
    session: AsyncSession, content: Content, patient_id: int, lang: str, days: list[ChartDay], today: date, now: datetime
) -> str:
    moods = [d.mood for d in days if d.mood is not None]
    cravings = [d.craving for d in days if d.craving is not None]
    checked = sum(1 for d in days if d.checked_in)
    line1 = content.t(
        "progress.summary_checkins", lang, checked=checked, total=len(days), mood=_avg(moods), craving=_avg(cravings)
    )
    nums = await sobriety.numbers(session, patient_id, today, now)
    if nums is None:
        line2 = content.t("progress.summary_no_date", lang)
    else:
        line2 = content.t(
            "progress.summary_streak", lang, current=nums.current_days, longest=nums.longest_days, total=nums.total_days
        )
    return f"{line1}\n{line2}"


async def progress(session: AsyncSession, content: Content, patient: PatientInfo, now: datetime) -> Progress:
    today = local_date(now, patient.timezone)
    days = await chart_days(session, patient.id, today)
    text = await summary_text(session, content, patient.id, patient.language, days, today, now)
    return Progress(days, text, render(days, labels(content, patient.language)))


async def counselor_view(
    session: AsyncSession, content: Content, code: str, actor_id: int, now: datetime, lang: str = "en", *, zone: str
) -> CounselorView | None:
    """The staff view of one patient by code; audited. None when no such patient.

    Every time is in one zone, the clinic's (`zone`: DEFAULT_TIMEZONE), named in the header."""
    code = code.strip().upper()
    p = (await session.execute(select(Patient).where(Patient.code == code))).scalar_one_or_none()
    if p is None or p.status == "deleted":
        await audit(session, actor_id, "patient.view_missing", code[:32], now=now)
        return None
    await audit(session, actor_id, "patient.view", p.code, {"via": "patient_command"}, now=now)
    t = content.t
    today = local_date(now, p.timezone)
    days = await chart_days(session, p.id, today)
    parts = [t("progress.staff_header", lang, code=p.code, status=p.status, zone=zone_name(zone, now))]
    parts.append(await summary_text(session, content, p.id, lang, days, today, now))

    q = (
        select(CheckinEntry)
        .where(CheckinEntry.patient_id == p.id, CheckinEntry.completed_at.is_not(None))
        .order_by(CheckinEntry.completed_at.desc())
        .limit(7)
    )
    recent = list((await session.execute(q)).scalars())
    checkin = instruments_for(content).checkin(lang)
    lines = [t("progress.staff_checkins", lang)]
    if not recent:
        lines.append(t("progress.staff_none", lang))
    for e in recent:
        lines.append(
            t(
                "progress.staff_checkin_line",
                lang,
                time=local_text(e.completed_at or e.updated_at, zone),
                mood="–" if e.mood is None else e.mood,
                craving="–" if e.craving is None else e.craving,
                use=checkin.answer_label("use", e.use),
                halt=checkin.answer_label("halt", e.halt or None),
            )
        )
    parts.append("\n".join(lines))

    scores = await assessments.latest_scores(session, content, p.id, lang)
    done_at = dict(
        (
            await session.execute(
                select(AssessmentResult.instrument, func.max(AssessmentResult.completed_at))
                .where(AssessmentResult.patient_id == p.id, AssessmentResult.status == "done")
                .group_by(AssessmentResult.instrument)
            )
        ).all()
    )
    lines = [t("progress.staff_scores", lang)]
    if not scores:
        lines.append(t("progress.staff_none", lang))
    for s in scores:
        band = s.band_label or ", ".join(f"{k} {v}" for k, v in s.domains.items())
        at = done_at.get(s.instrument)
        when = local_text(_utc(at), zone) if at is not None else s.day.isoformat()
        lines.append(t("progress.staff_score_line", lang, title=s.title, total=s.total, band=band, time=when))
    parts.append("\n".join(lines))

    fq = (
        select(Flag)
        .where(Flag.patient_id == p.id, Flag.status != FlagStatus.RESOLVED)
        .order_by(Flag.opened_at.desc())
    )
    flags = list((await session.execute(fq)).scalars())
    lines = [t("progress.staff_flags", lang)]
    if not flags:
        lines.append(t("progress.staff_none", lang))
    for f in flags:
        lines.append(
            t(
                "progress.staff_flag_line",
                lang,
                id=f.id,
                severity=Html(flag_label(content, lang, "severity", f.severity)),
                category=flag_label(content, lang, "category", f.category),
                status=flag_label(content, lang, "status", f.status),
                opened=local_text(f.opened_at, zone),
            )
        )
    parts.append("\n".join(lines))
    return CounselorView(p.code, "\n\n".join(parts), render(days, labels(content, lang)), p.id)


def _utc(value: datetime | str) -> datetime:
    """An aggregate's timestamp (SQLite gives it back as text)."""
    return ensure_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
