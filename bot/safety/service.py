"""Safety: every free text a patient sends goes through `check_text` (DESIGN §2.6).

The detector (`bot.safety.risk`) classifies the text; explicit signals raise a flag at once, uncertain
ones ask the patient to confirm ("Are you thinking about ending your life?") with buttons. An
uncertain signal at or above the configured severity is flagged anyway when the question stays
unanswered for a few minutes (a sweeper item). Rules live in `content/rules/escalation.yaml`.

"No" to the question does not erase what was said: the care team still hears of it, at a lower
severity, with a reason that names what the words disclosed (self-harm, a wish to be dead);
self-harm also gets its own follow-up (wound care, when to call 911, the /sos tools). These
rules live in `content/rules/safety.yaml`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Patient
from bot.core.vocabulary import FLAG_SEVERITIES, Category, Severity
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rules import Workflow
from bot.escalation.service import FlagResult, raise_flag, talk_request
from bot.platform.config import OfficeHours
from bot.platform.content import DEFAULT_CONTENT_DIR, FALLBACK_LANGUAGE, Content, get_content
from bot.platform.keyboards import Button, inline_keyboard
from bot.platform.models import ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.platform.scheduler import cancel, schedule
from bot.platform.text import split_text
from bot.recovery import buttons as recovery_buttons
from bot.safety import buttons
from bot.safety.models import SafetyCheck
from bot.safety.risk import registry

log = logging.getLogger(__name__)

KIND_CONFIRM = "safety_confirm"
EVIDENCE_MAX = 2000
DUPLICATE_WINDOW = timedelta(minutes=10)


class Detector(Protocol):
    def detect(self, text: str, lang: str | None = None) -> Any: ...


def _val(x: Any) -> str | None:
    if x is None:
        return None
    return str(getattr(x, "value", x))


@dataclass(frozen=True)
class Signal:
    """What the detector found, as plain values."""

    severity: str  # none | moderate | high | crisis
    category: str | None
    rules: tuple[str, ...]
    uncertain: bool
    # Other categories the words also matched at high or crisis (e.g. an overdose told with
    # words of suicide): the crisis reply's resources depend on them too.
    also: tuple[str, ...] = ()

    @property
    def explicit_crisis(self) -> bool:
        return self.severity == "crisis" and not self.uncertain

    @property
    def resource_category(self) -> str | None:
        """The kind of crisis for the resources: the category, joined with the other serious
        ones in the order of `Category` ("suicide_self_harm+overdose_medical")."""
        if self.category is None or not self.also:
            return self.category
        both = sorted({self.category, *self.also}, key=lambda c: Category(c).order())
        return "+".join(both)

    @property
    def any(self) -> bool:
        return self.severity != "none" and self.category is not None


NO_SIGNAL = Signal("none", None, (), False)


class Detection:
    """Risk detection, a service on the hub (`install`): every text is classified here.

    It asks the process's detectors (bot/safety/risk/registry.py): the one screening chose for the
    update being handled (the crisis rules while the full detector builds), else the full
    detector, built once from `content_dir` (the clinic's content; default: the repository's).
    `fixed`: another detector the composition root was given (tests)."""

    def __init__(self, fixed: Detector | None = None, *, content_dir: Path | None = None) -> None:
        self.fixed = fixed
        self.content_dir = content_dir

    def _detector(self) -> Detector:
        return self.fixed if self.fixed is not None else registry.get_detector(self.content_dir)

    @property
    def ready(self) -> bool:
        """Whether `signal` answers at once (nothing is left to build)."""
        return self.fixed is not None or registry.detector_ready(self.content_dir)

    def warm(self) -> None:
        """Build the detector now: compiling its rules takes seconds, which belongs at start-up,
        not on the first message someone sends (which may be a crisis)."""
        self._detector()

    def signal(self, text: str, lang: str | None = None) -> Signal:
        """Classify one text (pure CPU, no database): safe to call before anything else."""
        if not text or not text.strip():
            return NO_SIGNAL
        r = self._detector().detect(text, lang)
        sev = _val(getattr(r, "severity", "none")) or "none"
        cat = _val(getattr(r, "category", None))
        rules = tuple(
            str(getattr(m, "rule_id", "")) for m in (getattr(r, "matches", ()) or ()) if getattr(m, "rule_id", "")
        )
        if sev not in ("moderate", "high", "crisis") or not Category.known(cat):
            return NO_SIGNAL
        also = tuple(
            sorted(
                {
                    c
                    for m in (getattr(r, "matches", ()) or ())
                    if Category.known(c := _val(getattr(m, "category", None)))
                    and c != cat
                    and _val(getattr(m, "severity", None)) in ("high", "crisis")
                    and c in _COMBINED
                },
                key=lambda c: Category(c).order(),
            )
        )
        return Signal(sev, cat, rules, bool(getattr(r, "uncertain", False)), also)

    def crisis_update(self, data: dict[str, Any]) -> bool:
        """Whether an update as Telegram sent it (JSON) is a private text or caption the detector
        finds an explicit crisis in: receiving hands it on without waiting for a busy database
        (bot/platform/inbox.py). While the detector is still building, every private text counts: it
        cannot be told yet, and it is not held back."""
        msg = data.get("message") or data.get("edited_message")
        if not isinstance(msg, dict) or (msg.get("chat") or {}).get("type") != "private":
            return False
        text = msg.get("text") or msg.get("caption")
        if not isinstance(text, str) or not text.strip():
            return False
        if not self.ready:
            return True
        return self.signal(text).explicit_crisis


# Categories that change the crisis resources when they come with another one: an overdose
# with words of suicide needs 911 first and never "before you use".
_COMBINED = frozenset({"suicide_self_harm", "overdose_medical"})


# -- rules (content/rules/safety.yaml) ---------------------------------------------------------


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeniedKind(_M):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    reason: str = Field(min_length=1, max_length=200)
    unanswered: str | None = Field(default=None, min_length=1, max_length=200)
    rules: list[str] = Field(min_length=1)


class DeniedRules(_M):
    severity: str = "moderate"
    kinds: list[DeniedKind] = Field(default_factory=list)
    other: str = Field(default="risk signal; denied when asked", min_length=1, max_length=200)


class SafetyRules(_M):
    denied: DeniedRules = DeniedRules()
    unanswered: str = Field(default="no answer to the safety question", min_length=1, max_length=200)
    followup: list[str] = Field(default_factory=list)

    def kind(self, rules: tuple[str, ...] | list[str]) -> str | None:
        """What the words disclosed (a kind id), from the detector's rule ids; None: nothing
        more specific than the category."""
        fired = set(rules)
        return next((k.id for k in self.denied.kinds if fired & set(k.rules)), None)

    def denied_reason(self, kind: str | None) -> str:
        return next((k.reason for k in self.denied.kinds if k.id == kind), self.denied.other)

    def denied_severity(self, signal: str) -> str:
        """One step below the signal, never below `denied.severity` nor above the signal: a
        tap on "no" does not turn words of a crisis into a moderate flag."""
        lower = max(Severity(signal).lower(), Severity.LOW)
        return min(max(lower, Severity(self.denied.severity)), Severity(signal))

    def unanswered_reason(self, kind: str | None) -> str:
        return next((k.unanswered for k in self.denied.kinds if k.id == kind and k.unanswered), self.unanswered)


@lru_cache(maxsize=8)
def _safety_rules_cached(path: str, mtime: float) -> SafetyRules:
    return SafetyRules.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})


def safety_rules(content_dir: Path | None = None) -> SafetyRules:
    p = Path(content_dir or DEFAULT_CONTENT_DIR) / "rules" / "safety.yaml"
    if not p.is_file():
        return SafetyRules()
    return _safety_rules_cached(str(p), p.stat().st_mtime)


def kind_of(sig: Signal, content_dir: Path | None = None) -> str | None:
    """What a signal's words disclosed (`self_harm`, `passive`, ...), from content alone."""
    try:
        return safety_rules(content_dir).kind(sig.rules)
    except Exception as exc:  # a broken rules file must not stop the crisis path
        log.warning("safety: rules unavailable (%s)", type(exc).__name__)
        return None


def check_content(content_dir: Path) -> list[tuple[str, int, str]]:
    """Validate content/rules/safety.yaml (for `iop-bot content check`)."""
    rel = "rules/safety.yaml"
    try:
        r = safety_rules(content_dir)
    except Exception as exc:
        return [(rel, 0, str(exc).splitlines()[0])]
    out: list[tuple[str, int, str]] = []
    if r.denied.severity not in FLAG_SEVERITIES:
        out.append((rel, 0, f"denied.severity: unknown severity {r.denied.severity!r}"))
    known: set[str] = set()
    for f in sorted((Path(content_dir) / "risk").glob("*.yaml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for key in ("rules", "combos"):
            known |= {str(x.get("id")) for x in data.get(key) or [] if isinstance(x, dict)}
    for k in r.denied.kinds:
        for rule in k.rules:
            if rule not in known:
                out.append((rel, 0, f"denied.kinds {k.id}: no risk rule {rule!r} in risk/*.yaml"))
    c = get_content(content_dir)
    ids = {k.id for k in r.denied.kinds}
    for kind in r.followup:
        if kind not in ids:
            out.append((rel, 0, f"followup: {kind!r} is not a kind under denied.kinds"))
        for key in (f"safety.followup_{kind}", f"safety.confirm_no_reply_{kind}"):
            if not c.has(key, FALLBACK_LANGUAGE):
                out.append((rel, 0, f"followup {kind}: no text {key!r} in en/messages"))
    return out


@dataclass(frozen=True)
class SafetyOutcome:
    signal: Signal
    crisis: bool  # the crisis path applies: the crisis reply must go out
    flag: FlagResult | None
    check_id: int | None  # a confirmation question was asked
    duplicate: bool = False  # the same text was already handled a moment ago


def _reason(sig: Signal) -> str:
    base = f"risk:{sig.category}:{sig.severity}"
    return (base + (" " + ",".join(sig.rules) if sig.rules else ""))[:200]


async def _recent_duplicate(session: AsyncSession, patient_id: int, text: str, now: datetime) -> bool:
    """The same words were screened a moment ago (e.g. by the chat handler and a check-in note)."""
    rows = (
        await session.execute(
            select(FlagEvent.evidence)
            .join(Flag, Flag.id == FlagEvent.flag_id)
            .where(Flag.patient_id == patient_id, FlagEvent.kind == "trigger", FlagEvent.at >= now - DUPLICATE_WINDOW)
        )
    ).scalars()
    if any(ev == text for ev in rows):
        return True
    checks = (
        await session.execute(
            select(SafetyCheck.evidence).where(
                SafetyCheck.patient_id == patient_id, SafetyCheck.asked_at >= now - DUPLICATE_WINDOW
            )
        )
    ).scalars()
    return any(ev == text for ev in checks)


async def check_text(
    session: AsyncSession,
    wf: Workflow,
    detection: Detection,
    patient_id: int,
    text: str,
    *,
    source: str,
    now: datetime,
    signal: Signal | None = None,
    lang: str | None = None,
    send_crisis: bool = True,
) -> SafetyOutcome:
    """Screen one free text from a patient: flags, confirmation question, crisis reply.

    `signal`: a detection already made (the chat handler detects before touching the database).
    `send_crisis`: enqueue the crisis reply (the chat handler sends its own at once instead).
    """
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return SafetyOutcome(NO_SIGNAL, False, None, None)
    sig = signal if signal is not None else detection.signal(text, lang or patient.language)
    if not sig.any:
        return SafetyOutcome(sig, False, None, None)
    evidence = text[:EVIDENCE_MAX]
    if await _recent_duplicate(session, patient_id, evidence, now):
        return SafetyOutcome(sig, sig.explicit_crisis, None, None, duplicate=True)
    assert sig.category is not None
    if sig.uncertain:
        check_id = await _ask_confirm(session, wf, detection, patient, sig, evidence, source, now)
        return SafetyOutcome(sig, False, None, check_id)
    res = await raise_flag(
        session,
        wf,
        patient_id=patient_id,
        category=sig.category,
        severity=sig.severity,
        reason=_reason(sig),
        source=source,
        now=now,
        evidence=evidence,
    )
    if sig.explicit_crisis and send_crisis:
        await enqueue_crisis(session, wf, patient, now, category=sig.resource_category)
    return SafetyOutcome(sig, sig.explicit_crisis, res, None)


async def enqueue_crisis(
    session: AsyncSession, wf: Workflow, patient: Patient, now: datetime, *, category: str | None = None
) -> None:
    """The crisis reply through the outbox (for sources that are not a chat message)."""
    text = await crisis_reply(session, wf, patient, now, category=category)
    key = f"crisis:{patient.id}:{now.strftime('%Y%m%d%H%M')}"
    await _enqueue_parts(session, patient.telegram_id, text, now, key, urgent=True)


async def in_live_conversation(session: AsyncSession, telegram_id: int) -> bool:
    """A counselor is talking with this patient through the bot right now."""
    from bot.escalation import relay

    try:
        return await relay.active_for_patient(session, telegram_id) is not None
    except Exception as exc:
        log.info("safety: relay state unavailable (%s)", type(exc).__name__)
        return False


def clinic_hours(wf: Workflow) -> tuple[OfficeHours | None, str]:
    """The clinic's office hours (None: not known) and its zone, from the escalation workflow."""
    return wf.settings.office_hours, wf.settings.default_timezone


async def _reach(session: AsyncSession, wf: Workflow, patient: Any) -> dict[str, Any]:
    """What says when a counselor will reach this patient: the clinic's hours and zone, the
    patient's own zone, and whether a counselor is talking with them right now."""
    office_hours, zone = clinic_hours(wf)
    return {
        "office_hours": office_hours,
        "zone": zone,
        "patient_zone": getattr(patient, "timezone", None),
        "live": await in_live_conversation(session, patient.telegram_id),
    }


async def counselor_lead(
    session: AsyncSession, wf: Workflow, patient: Any, now: datetime, *, crisis: bool = True
) -> str:
    """The honest line about when a counselor will reach this patient (`crisis.counselor_line`,
    the one wording): office hours told in the patient's own zone, or the counselor who is
    talking with them right now. `crisis`: worded for the crisis reply."""
    from bot.safety.crisis import counselor_line

    return counselor_line(
        patient.language or "en", now=now, content=wf.content, crisis=crisis, **await _reach(session, wf, patient)
    )


async def crisis_reply(
    session: AsyncSession, wf: Workflow, patient: Any, now: datetime, *, category: str | None = None
) -> str:
    """The whole crisis reply for a patient (a Patient or PatientInfo): the resources for this
    kind of crisis (`category`, a flag category), their plan, when a counselor will reach them
    (in their own zone; or the counselor talking with them now). The one builder every source
    uses; the chat handler's first reply is `bot.safety.crisis.crisis_message` without the database."""
    from bot.safety.crisis import crisis_message

    return crisis_message(
        patient.language or "en",
        wf.rules.default_region,
        await plan_lines(session, patient.id),
        now=now,
        content=wf.content,
        category=category,
        **await _reach(session, wf, patient),
    )


async def enqueue_plan(
    session: AsyncSession, wf: Workflow, patient_id: int, now: datetime, *, lead: str | None = None
) -> bool:
    """After a crisis reply sent without the database: `lead` (e.g. when the care team will be
    in touch) and the patient's own plan, if they have one — split to fit Telegram's limit."""
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return False
    lines = await plan_lines(session, patient_id)
    if not lines and not lead:
        return False
    from bot.safety.crisis import plan_block

    c = wf.content
    lang = patient.language or "en"
    blocks = [lead] if lead else []
    if lines:
        blocks += [c.t("crisis.plan_followup", lang), plan_block(lang, lines, content=c)]
    key = f"crisisplan:{patient_id}:{now:%Y%m%d%H%M}"
    await _enqueue_parts(session, patient.telegram_id, "\n\n".join(blocks), now, key, urgent=True)
    return True


async def _enqueue_parts(
    session: AsyncSession, chat_id: int, text: str, now: datetime, key: str, *, urgent: bool = False
) -> None:
    """`urgent`: crisis words go out before any ordinary message that is due."""
    for i, part in enumerate(split_text(text)):
        await enqueue(session, Outgoing(chat_id, part), now=now, dedup_key=f"{key}:{i}", urgent=urgent)


def _confirm_keyboard(c: Content, lang: str, check_id: int, category: str | None, *, tools: bool = False) -> dict[str, Any]:
    """Yes / No / Talk. "Yes" carries the category, so the crisis reply it brings at once (before
    the database) has the right resources; `tools` adds the /sos toolbox."""
    rows: list[list[Button]] = [
        [
            (c.t("safety.confirm_yes", lang), buttons.YES.pack(check_id, category) if category else buttons.YES_BARE.pack(check_id)),
            (c.t("safety.confirm_no", lang), buttons.NO.pack(check_id)),
        ],
        [(c.t("safety.confirm_talk", lang), buttons.TALK.pack(check_id))],
    ]
    if tools:
        rows.append([(c.t("safety.sos_button", lang), recovery_buttons.MENU.pack())])
    return inline_keyboard(rows)


def followup_kind(kind: str | None, content_dir: Path | None = None) -> str | None:
    """`kind` when its words get their own follow-up (e.g. self-harm: wound care, 911, /sos)."""
    if kind is None:
        return None
    try:
        return kind if kind in safety_rules(content_dir).followup else None
    except Exception:
        return None


def followup_text(c: Content, lang: str, kind: str) -> str:
    """The follow-up for what the words disclosed (`safety.followup_<kind>`)."""
    return c.t(f"safety.followup_{kind}", lang)


async def _ask_confirm(
    session: AsyncSession,
    wf: Workflow,
    detection: Detection,
    patient: Patient,
    sig: Signal,
    evidence: str,
    source: str,
    now: datetime,
) -> int | None:
    rules = wf.rules.confirm
    assert sig.category is not None
    c = wf.content
    lang = patient.language or "en"
    extra = followup_kind(kind_of(sig, c.root), c.root)
    quiet = now - timedelta(minutes=rules.quiet_minutes)
    pending = (
        await session.execute(
            select(SafetyCheck)
            .where(
                SafetyCheck.patient_id == patient.id,
                SafetyCheck.category == sig.category,
                SafetyCheck.answer.is_(None),
                SafetyCheck.asked_at >= quiet,
            )
            .order_by(SafetyCheck.id.desc())
            .with_for_update()
        )
    ).scalars().first()
    if pending is not None:
        # Still waiting for an answer: don't ask twice, but keep every disclosure (what the
        # answer "no" reports comes from these words) and the strongest signal.
        before = pending.evidence or ""
        if extra is not None and followup_kind(kind_of(detection.signal(before, lang), c.root), c.root) != extra:
            await enqueue(
                session,
                Outgoing(patient.telegram_id, followup_text(c, lang, extra), reply_markup=_tools_keyboard(c, lang)),
                now=now,
                dedup_key=f"safetyfu:{pending.id}:{extra}",
            )
        if evidence not in before:
            pending.evidence = (f"{before}\n{evidence}" if before else evidence)[:EVIDENCE_MAX]
        if Severity(sig.severity) > pending.severity:
            pending.severity = sig.severity
            await _schedule_timeout(session, wf, pending, now)
        return pending.id
    check = SafetyCheck(
        patient_id=patient.id,
        category=sig.category,
        severity=sig.severity,
        source=source,
        evidence=evidence,
        asked_at=now,
    )
    session.add(check)
    await session.flush()
    key = f"safety.confirm.{sig.category}"
    question = c.t(key, lang) if c.has(key, lang) else c.t("safety.confirm.default", lang)
    if extra is not None:
        question = followup_text(c, lang, extra) + "\n\n" + question
    await enqueue(
        session,
        Outgoing(
            patient.telegram_id,
            question,
            reply_markup=_confirm_keyboard(c, lang, check.id, sig.category, tools=extra is not None),
        ),
        now=now,
        dedup_key=f"safetyq:{check.id}",
    )
    await _schedule_timeout(session, wf, check, now)
    return check.id


def _tools_keyboard(c: Content, lang: str) -> dict[str, Any]:
    return inline_keyboard([[(c.t("safety.sos_button", lang), recovery_buttons.MENU.pack())]])


async def _schedule_timeout(session: AsyncSession, wf: Workflow, check: SafetyCheck, now: datetime) -> None:
    rules = wf.rules.confirm
    if Severity(check.severity) < rules.flag_without_answer_from:
        return
    await schedule(
        session,
        KIND_CONFIRM,
        f"safetyconfirm:c{check.id}",
        now + timedelta(minutes=rules.timeout_minutes),
        {"check_id": check.id, "patient_id": check.patient_id},
    )


async def confirm_timeout(
    session: AsyncSession, wf: Workflow, detection: Detection, item: ScheduledItem, now: datetime
) -> None:
    check = (
        await session.execute(
            select(SafetyCheck).where(SafetyCheck.id == int((item.payload or {}).get("check_id", 0))).with_for_update()
        )
    ).scalar_one_or_none()
    if check is None or check.answer is not None:
        return
    check.answer = "timeout"
    check.answered_at = now
    c = wf.content
    try:
        reason = safety_rules(c.root).unanswered_reason(kind_of(detection.signal(check.evidence or ""), c.root))
    except Exception as exc:  # the flag must not wait on the rules file
        log.warning("safety: rules unavailable (%s)", type(exc).__name__)
        reason = SafetyRules().unanswered
    res = await raise_flag(
        session,
        wf,
        patient_id=check.patient_id,
        category=check.category,
        severity=check.severity,
        reason=reason,
        source="safety_timeout",
        now=now,
        evidence=check.evidence,
    )
    check.flag_id = res.flag_id


@dataclass(frozen=True)
class ConfirmResult:
    status: str  # ok | not_found | answered
    answer: str | None
    crisis: bool
    flag: FlagResult | None
    language: str = "en"
    patient_id: int | None = None
    kind: str | None = None  # what the words disclosed (content/rules/safety.yaml), for the reply


async def confirm_answer(
    session: AsyncSession,
    wf: Workflow,
    detection: Detection,
    check_id: int,
    *,
    telegram_id: int,
    answer: str,
    now: datetime,
) -> ConfirmResult:
    """The patient's answer (yes | no | talk) to the confirmation question.

    Every answer reaches the care team: yes as a crisis, talk at the signal's severity, no at
    the lower `denied` severity with a reason naming what was disclosed. An answer after the
    question timed out (and was flagged) still counts: "no" adds its reason to the open flag.
    """
    if answer not in ("yes", "no", "talk"):
        return ConfirmResult("not_found", None, False, None)
    row = (
        await session.execute(
            select(SafetyCheck, Patient)
            .join(Patient, Patient.id == SafetyCheck.patient_id)
            .where(SafetyCheck.id == check_id)
            .with_for_update(of=SafetyCheck)
        )
    ).first()
    if row is None or row[1].telegram_id != telegram_id:
        return ConfirmResult("not_found", None, False, None)
    check, patient = row
    lang = patient.language or "en"
    if check.answer in ("yes", "no", "talk"):
        return ConfirmResult("answered", check.answer, False, None, lang)
    check.answer = answer
    check.answered_at = now
    await cancel(session, key=f"safetyconfirm:c{check.id}")
    rules = wf.rules
    res: FlagResult | None = None
    crisis = False
    if answer == "yes":
        severity = rules.confirm.yes_severity
        res = await raise_flag(
            session,
            wf,
            patient_id=patient.id,
            category=check.category,
            severity=severity,
            reason="confirmed by the patient",
            source="safety_confirm",
            now=now,
            evidence=check.evidence,
        )
        crisis = severity == "crisis"
    elif answer == "talk":
        res = await raise_flag(
            session,
            wf,
            patient_id=patient.id,
            category=check.category,
            severity=check.severity,
            reason="asked to talk after a safety question",
            source="safety_confirm",
            now=now,
            evidence=check.evidence,
        )
    c = wf.content
    kind = kind_of(detection.signal(check.evidence or "", lang), c.root)
    if answer == "no":
        srules = safety_rules(c.root)
        severity = srules.denied_severity(check.severity)
        res = await raise_flag(
            session,
            wf,
            patient_id=patient.id,
            category=check.category,
            severity=severity,
            reason=srules.denied_reason(kind),
            source="safety_confirm",
            now=now,
            evidence=check.evidence,
        )
    if res is not None:
        check.flag_id = res.flag_id
    return ConfirmResult("ok", answer, crisis, res, lang, patient.id, followup_kind(kind, c.root))


async def followup_answer(
    session: AsyncSession, wf: Workflow, flag_id: int, *, telegram_id: int, answer: str, now: datetime
) -> str:
    """The patient's answer to the follow-up after a resolved flag: ok | not_found | answered."""
    if answer not in ("ok", "bad", "talk"):
        return "not_found"
    row = (
        await session.execute(
            select(Flag, Patient).join(Patient, Patient.id == Flag.patient_id).where(Flag.id == flag_id)
        )
    ).first()
    if row is None or row[1].telegram_id != telegram_id:
        return "not_found"
    flag, patient = row
    seen = (
        await session.execute(
            select(FlagEvent.id).where(FlagEvent.flag_id == flag.id, FlagEvent.kind == "followup_answer")
        )
    ).first()
    if seen is not None:
        return "answered"
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="followup_answer", detail={"answer": answer}))
    rules = wf.rules.followup
    reason = f"follow-up after flag #{flag.id}: {answer}"
    if answer == "talk":
        await talk_request(session, wf, patient.id, now, source="followup", severity=rules.severity, reason=reason)
    elif answer != "ok":
        await raise_flag(
            session,
            wf,
            patient_id=patient.id,
            category=flag.category,
            severity=rules.severity,
            reason=reason,
            source="followup",
            now=now,
        )
    return "ok"


async def plan_lines(session: AsyncSession, patient_id: int, limit: int = 10) -> list[str]:
    """The patient's own plan for the crisis reply: people to call first, then what helps."""
    try:
        from bot.recovery.plans import get_plan

        plan = await get_plan(session, patient_id)
    except Exception as exc:
        log.info("safety: plan unavailable (%s)", type(exc).__name__)
        return []
    out: list[str] = []
    for section in ("people", "professionals", "coping", "places", "reasons"):
        for e in plan.section(section):
            out.append(f"{e.text} — {e.phone}" if e.phone else e.text)
    return out[:limit]
