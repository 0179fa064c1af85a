"""Patient onboarding (DESIGN §2.1): invite → 18+ → consent → time zone → check-in time →
sobriety date → medication-assisted treatment (and, if yes, how often: daily, weekly, monthly
injection) → active.

Before consent the patient row holds only the Telegram id, a patient code, the status and the
step; the invite being used waits in the chat state. Declining consent or being under 18 erases
both, so nothing about the person remains. Each step is stored, so onboarding resumes after a
restart. The parsers for typed answers (times, dates) live here too, shared with settings.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import yaml
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import state
from bot.core.audit import audit
from bot.core.lifecycle import Lifecycle
from bot.core.models import AuditEntry, ChatState, Patient
from bot.core.people import MEDICATION_SCHEDULES, PatientInfo, patient_by_telegram
from bot.enrolment import invites
from bot.enrolment.timezones import is_valid_zone

STATE_KIND = "onboarding:step"

AGE = "age"
CONSENT = "consent"
TIMEZONE = "timezone"
CHECKIN_TIME = "checkin_time"
SOBRIETY = "sobriety"
MAT = "mat"
MAT_SCHEDULE = "mat_schedule"
STEPS = (AGE, CONSENT, TIMEZONE, CHECKIN_TIME, SOBRIETY, MAT, MAT_SCHEDULE)

EARLIEST_SOBRIETY = date(1940, 1, 1)


@dataclass(frozen=True)
class Progress:
    """Where a person stands. kind: step | done | erased | stale | invite | active | none."""

    kind: str
    step: str | None = None
    patient: PatientInfo | None = None
    invite_status: str | None = None  # for kind "invite": unknown | expired | used | revoked


# Patient codes ---------------------------------------------------------------------------------


async def new_patient_code(session: AsyncSession, *, tries_per_length: int = 12) -> str:
    """A random, non-sequential code `P-####`, never given before in this installation.

    Four digits while there is room; five (then six…) once random picks keep colliding.
    """
    digits = 4
    while True:
        for _ in range(tries_per_length):
            n = secrets.randbelow(9 * 10 ** (digits - 1)) + 10 ** (digits - 1)
            code = f"P-{n}"
            taken = await session.scalar(
                select(
                    exists().where(Patient.code == code)
                    | exists().where(AuditEntry.subject == code)
                )
            )
            if not taken:
                return code
        digits += 1


# The steps -------------------------------------------------------------------------------------


async def start(
    session: AsyncSession, telegram_id: int, payload: str | None, now: datetime, *, language: str = "en"
) -> Progress:
    """`/start [payload]`: resume, refuse a bad code, or begin onboarding with a good one."""
    p = await patient_by_telegram(session, telegram_id)
    if p is not None and p.status in ("active", "inactive"):
        return Progress("active", patient=PatientInfo.of(p))
    if p is not None and p.status == "onboarding" and p.onboarding_step in STEPS:
        return Progress("step", p.onboarding_step, PatientInfo.of(p))
    if p is not None:
        # A leftover row in an unknown state: start over.
        await erase_onboarding(session, telegram_id)
    if not payload:
        return Progress("none")
    check = await invites.check_invite(session, payload, now)
    if not check.ok:
        return Progress("invite", invite_status=check.status)
    p = Patient(
        telegram_id=telegram_id,
        code=await new_patient_code(session),
        status="onboarding",
        onboarding_step=AGE,
        language=language,
        created_at=now,
    )
    session.add(p)
    await session.flush()
    await state.set_(session, telegram_id, STATE_KIND, {"invite": check.invite_id}, now)
    return Progress("step", AGE, PatientInfo.of(p))


async def current(session: AsyncSession, telegram_id: int) -> Progress:
    p = await patient_by_telegram(session, telegram_id)
    if p is None:
        return Progress("none")
    if p.status == "onboarding":
        return Progress("step", p.onboarding_step, PatientInfo.of(p))
    return Progress("active", patient=PatientInfo.of(p))


async def answer_age(session: AsyncSession, telegram_id: int, adult: bool, now: datetime) -> Progress:
    p = await _at(session, telegram_id, AGE)
    if p is None:
        return Progress("stale")
    if not adult:
        await erase_onboarding(session, telegram_id)
        return Progress("erased", AGE)
    return await _advance(session, p, CONSENT)


async def answer_consent(
    session: AsyncSession,
    telegram_id: int,
    accept: bool,
    *,
    version: str,
    first_name: str | None,
    now: datetime,
) -> Progress:
    p = await _at(session, telegram_id, CONSENT)
    if p is None:
        return Progress("stale")
    if not accept:
        await erase_onboarding(session, telegram_id)
        return Progress("erased", CONSENT)
    waiting = await state.get(session, telegram_id)
    invite_id = (waiting.data.get("invite") if waiting is not None and waiting.kind == STATE_KIND else None)
    if not isinstance(invite_id, int):
        await erase_onboarding(session, telegram_id)
        return Progress("invite", invite_status="unknown")
    check = await invites.consume_invite(session, invite_id, now)
    if not check.ok:
        await erase_onboarding(session, telegram_id)
        return Progress("invite", invite_status=check.status)
    p.cohort_id = check.cohort_id
    p.consent_version = version
    p.consented_at = now
    p.first_name = (first_name or "").strip()[:64] or None
    await state.set_(session, telegram_id, STATE_KIND, {}, now)
    await audit(session, telegram_id, "patient.consent", p.code, {"version": version}, now=now)
    return await _advance(session, p, TIMEZONE)


async def answer_timezone(session: AsyncSession, telegram_id: int, zone: str, now: datetime) -> Progress:
    if not is_valid_zone(zone):
        raise ValueError("unknown time zone")
    p = await _at(session, telegram_id, TIMEZONE)
    if p is None:
        return Progress("stale")
    p.timezone = zone
    return await _advance(session, p, CHECKIN_TIME)


async def answer_checkin_time(session: AsyncSession, telegram_id: int, t: time, now: datetime) -> Progress:
    p = await _at(session, telegram_id, CHECKIN_TIME)
    if p is None:
        return Progress("stale")
    p.checkin_time = t.replace(second=0, microsecond=0, tzinfo=None)
    return await _advance(session, p, SOBRIETY)


async def answer_sobriety(session: AsyncSession, telegram_id: int, d: date | None, now: datetime) -> Progress:
    p = await _at(session, telegram_id, SOBRIETY)
    if p is None:
        return Progress("stale")
    p.sobriety_date = d
    return await _advance(session, p, MAT)


async def answer_mat(
    session: AsyncSession, telegram_id: int, mat: bool, now: datetime, *, lifecycle: Lifecycle
) -> Progress:
    """MAT yes asks how often the medication is taken next; no finishes onboarding."""
    p = await _at(session, telegram_id, MAT)
    if p is None:
        return Progress("stale")
    p.mat = mat
    if mat:
        return await _advance(session, p, MAT_SCHEDULE)
    p.medication_schedule = None
    return await _activate(session, p, now, lifecycle)


async def answer_mat_schedule(
    session: AsyncSession, telegram_id: int, schedule: str, now: datetime, *, lifecycle: Lifecycle
) -> Progress:
    """How often the MAT medication is taken (daily, weekly, monthly injection); finishes onboarding."""
    if schedule not in MEDICATION_SCHEDULES:
        raise ValueError(schedule)
    p = await _at(session, telegram_id, MAT_SCHEDULE)
    if p is None:
        return Progress("stale")
    p.medication_schedule = schedule
    return await _activate(session, p, now, lifecycle)


async def _activate(session: AsyncSession, p: Patient, now: datetime, lifecycle: Lifecycle) -> Progress:
    telegram_id = p.telegram_id
    p.status = "active"
    p.onboarding_step = None
    await state.clear(session, telegram_id, STATE_KIND)
    await audit(session, telegram_id, "patient.enrolled", p.code, {"cohort_id": p.cohort_id}, now=now)
    await session.flush()
    await lifecycle.activated(session, p.id, now)
    return Progress("done", None, PatientInfo.of(p))


async def erase_onboarding(session: AsyncSession, telegram_id: int) -> None:
    """Forget someone who has not finished onboarding: no row, no chat state."""
    await session.execute(
        delete(Patient).where(Patient.telegram_id == telegram_id, Patient.status == "onboarding")
    )
    await session.execute(delete(ChatState).where(ChatState.user_id == telegram_id))


async def _at(session: AsyncSession, telegram_id: int, step: str) -> Patient | None:
    q = select(Patient).where(Patient.telegram_id == telegram_id).with_for_update()
    p = (await session.execute(q)).scalar_one_or_none()
    if p is None or p.status != "onboarding" or p.onboarding_step != step:
        return None
    return p


async def _advance(session: AsyncSession, p: Patient, step: str) -> Progress:
    p.onboarding_step = step
    await session.flush()
    return Progress("step", step, PatientInfo.of(p))


# Parsers for typed answers ---------------------------------------------------------------------

_TIME_RE = re.compile(
    r"^(?P<h>\d{1,2})(?:[:.h ]?(?P<m>\d{2}))?\s*(?P<ampm>a\.?m\.?|p\.?m\.?|a|p)?$", re.IGNORECASE
)
_WORDS = {"noon": time(12, 0), "midday": time(12, 0), "midnight": time(0, 0)}


def parse_time(text: str) -> time | None:
    """A wall-clock time from "20:30", "8pm", "8:30 pm", "0830", "8.30", "noon"."""
    t = text.strip().lower()
    if not t or len(t) > 16:
        return None
    if t in _WORDS:
        return _WORDS[t]
    m = _TIME_RE.match(t)
    if not m:
        return None
    h = int(m.group("h"))
    minute = int(m.group("m") or 0)
    ampm = (m.group("ampm") or "").replace(".", "")
    if minute > 59:
        return None
    if ampm:
        if not 1 <= h <= 12:
            return None
        if ampm.startswith("a"):
            h = 0 if h == 12 else h
        else:
            h = 12 if h == 12 else h + 12
    elif h > 23 or (m.group("m") is None and len(m.group("h")) > 2):
        return None
    return time(h, minute)


class DateProblem(ValueError):
    """Why a typed date was refused: garbage | future | too_old."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_RELATIVE = {"today": 0, "yesterday": 1}


def parse_past_date(text: str, today: date) -> date:
    """A date in the past (or today) from many typed forms; raises DateProblem otherwise.

    Accepts "2026-01-15", "1/15/2026" (month first), "15.01.2026", "Jan 15 2026", "15 January
    2026", "March 2025" (first of the month), "today", "yesterday".
    """
    t = text.strip().lower()
    if not t or len(t) > 40 or not re.search(r"\d|today|yesterday", t):
        raise DateProblem("garbage")
    if t in _RELATIVE:
        return today - timedelta(days=_RELATIVE[t])
    dayfirst = bool(re.fullmatch(r"\d{1,2}\.\d{1,2}\.\d{2,4}", t))
    try:
        if re.fullmatch(r"\d{1,4}", t):
            raise DateProblem("garbage")
        from dateutil import parser as dateparser  # on first use (start-up time)

        parsed = dateparser.parse(t, dayfirst=dayfirst, default=datetime(today.year, 1, 1))
    except (ValueError, OverflowError, TypeError) as exc:
        raise DateProblem("garbage") from exc
    if parsed is None:
        raise DateProblem("garbage")
    d = parsed.date()
    if d > today:
        raise DateProblem("future")
    if d < EARLIEST_SOBRIETY:
        raise DateProblem("too_old")
    return d


# Content validation ----------------------------------------------------------------------------

CONSENT_FILE = "consent.yaml"


def check_content(root: Path) -> list[tuple[str, int, str]]:
    """Each language's consent: a version, a title, sections with heading and text, a question."""
    problems: list[tuple[str, int, str]] = []
    for f in sorted(root.glob(f"*/{CONSENT_FILE}")):
        rel = str(f.relative_to(root))
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append((rel, 0, f"YAML syntax error: {exc}"))
            continue
        if not isinstance(doc, dict):
            problems.append((rel, 1, "expected a mapping with version, title, sections, question"))
            continue
        for key in ("version", "title", "question"):
            if not isinstance(doc.get(key), str | int | float) or not str(doc.get(key)).strip():
                problems.append((rel, 1, f"missing or empty {key!r}"))
        if len(str(doc.get("version", ""))) > 16:
            problems.append((rel, 1, "version must be at most 16 characters"))
        sections = doc.get("sections")
        if not isinstance(sections, list) or not sections:
            problems.append((rel, 1, "'sections' must be a non-empty list"))
            continue
        for i, sec in enumerate(sections):
            if not isinstance(sec, dict) or not sec.get("heading") or not sec.get("text"):
                problems.append((rel, 1, f"section {i + 1} needs a heading and a text"))
    en = root / "en" / CONSENT_FILE
    if root.joinpath("en").is_dir() and not en.exists():
        problems.append((f"en/{CONSENT_FILE}", 0, "the English consent is missing"))
    return problems
