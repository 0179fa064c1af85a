"""Escalation flags: the one service every source raises flags through (DESIGN §2.6).

`raise_flag` keeps one open flag per patient and category: a new trigger adds an event and may
raise the severity; it never opens a second flag. Posting to the counselors' group goes through
the outbox in the same transaction. The lifecycle is open → claimed → resolved, each step with its
timestamp and an event (who, when). The group post carries severity, patient code, category, time
and flag id — never a name and never the patient's words — and is edited when the flag changes.

Re-notification, the follow-up after a resolved crisis/high flag and the daily digest run through
the sweeper. `install(hub)` wires the workflow to a running application (settings, content,
sweeper kinds, the sender's hook that records where each post landed).
"""

from __future__ import annotations

import html
import logging
import re
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments.models import AssessmentResult
from bot.checkins.models import CheckinEntry
from bot.core.audit import audit
from bot.core.hub import Hub
from bot.core.models import Patient, StaffRole
from bot.escalation.models import Flag, FlagCard, FlagEvent, OnCall
from bot.platform.clock import ensure_utc, local_date, local_text, next_local_due, zone_name
from bot.platform.config import Settings
from bot.platform.content import DEFAULT_CONTENT_DIR, Content, Html, get_content
from bot.platform.models import OutboxMessage, RuntimeSetting, ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.platform.scheduler import cancel, schedule
from bot.platform.text import split_text

log = logging.getLogger(__name__)

SEVERITIES = ("low", "moderate", "high", "crisis")
CATEGORIES = (
    "suicide_self_harm",
    "overdose_medical",
    "harm_to_others",
    "abuse_violence",
    "use_disclosure",
    "severe_craving",
    "depression",
    "anxiety",
    "recovery_risk",
    "recovery_support",
    "medication",
    "missed_checkins",
    "urge_followup",
    "talk_request",
    "missed_sessions",
)

STATUSES = ("open", "claimed", "resolved")
# Where a trigger comes from (`raise_flag(source=...)`), each with a label in flags.source.
# Assessments add `assessment_<instrument>` for every instrument in content/rules/assessments.yaml.
SOURCES = (
    "message",
    "edited_message",
    "caption",
    "checkin",
    "checkin_note",
    "checkin_lapse",
    "checkin_silence",
    "safety_confirm",
    "safety_timeout",
    "talk",
    "sos",
    "urge_followup",
    "followup",
    "relay_ended",
)
ASSESSMENT_SOURCE = "assessment_"

KIND_RENOTIFY = "flag_renotify"
KIND_FOLLOWUP = "flag_followup"
KIND_DIGEST = "flag_digest"


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)


# -- rules (content/rules/escalation.yaml) ----------------------------------------------------


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfirmRules(_M):
    flag_without_answer_from: str = "high"
    timeout_minutes: int = Field(default=5, ge=1)
    yes_severity: str = "crisis"
    quiet_minutes: int = Field(default=30, ge=0)


class TalkRules(_M):
    severity: str = "moderate"
    reason: str = "Patient asked to talk to a counselor (/talk)"


class FollowupRules(_M):
    severities: list[str] = Field(default_factory=lambda: ["crisis", "high"])
    after_hours: float = Field(default=24, gt=0)
    severity: str = "moderate"


class DigestRules(_M):
    time: str = "08:30"
    silent_days: int = Field(default=3, ge=1)
    craving_window: int = Field(default=3, ge=1)
    craving_rise: float = 2

    @property
    def at(self) -> time:
        h, m = self.time.split(":")
        return time(int(h), int(m))


class NewTriggerRules(_M):
    quiet_minutes: int = Field(default=2, ge=0)


class CardRules(_M):
    alert_from: str = "high"
    alert_moderate_categories: list[str] = Field(default_factory=list)

    def alerts(self, severity: str, category: str) -> bool:
        """Whether a flag added to a card already in the group is announced by a new message."""
        if rank(severity) >= rank(self.alert_from):
            return True
        return severity == "moderate" and category in self.alert_moderate_categories


class EscalationRules(_M):
    default_region: str = "us"
    confirm: ConfirmRules = ConfirmRules()
    talk: TalkRules = TalkRules()
    new_trigger: NewTriggerRules = NewTriggerRules()
    card: CardRules = CardRules()
    followup: FollowupRules = FollowupRules()
    digest: DigestRules = DigestRules()


@lru_cache(maxsize=8)
def _rules_cached(path: str, mtime: float) -> EscalationRules:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return EscalationRules.model_validate(data)


def load_rules(content_dir: Path | None = None) -> EscalationRules:
    p = Path(content_dir or DEFAULT_CONTENT_DIR) / "rules" / "escalation.yaml"
    if not p.is_file():
        return EscalationRules()
    return _rules_cached(str(p), p.stat().st_mtime)


def check_content(content_dir: Path) -> list[tuple[str, int, str]]:
    """Validate content/rules/escalation.yaml (for `iop-bot content check`)."""
    try:
        r = load_rules(content_dir)
    except Exception as exc:
        return [("rules/escalation.yaml", 0, str(exc).splitlines()[0])]
    out: list[tuple[str, int, str]] = []
    for name, sev in (
        ("confirm.flag_without_answer_from", r.confirm.flag_without_answer_from),
        ("confirm.yes_severity", r.confirm.yes_severity),
        ("talk.severity", r.talk.severity),
        ("followup.severity", r.followup.severity),
        ("card.alert_from", r.card.alert_from),
        *((f"followup.severities[{i}]", s) for i, s in enumerate(r.followup.severities)),
    ):
        if sev not in SEVERITIES:
            out.append(("rules/escalation.yaml", 0, f"{name}: unknown severity {sev!r}"))
    for i, category in enumerate(r.card.alert_moderate_categories):
        if category not in CATEGORIES:
            out.append(("rules/escalation.yaml", 0, f"card.alert_moderate_categories[{i}]: unknown category {category!r}"))
    try:
        _ = r.digest.at
    except Exception:
        out.append(("rules/escalation.yaml", 0, f"digest.time: expected HH:MM, got {r.digest.time!r}"))
    return out + check_labels(content_dir)


def sources(content_dir: Path | None = None) -> list[str]:
    """Every trigger source the code can produce: SOURCES and one per assessment instrument."""
    p = Path(content_dir or DEFAULT_CONTENT_DIR) / "rules" / "assessments.yaml"
    try:
        instruments = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("instruments") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        instruments = {}
    return [*SOURCES, *(ASSESSMENT_SOURCE + str(name) for name in instruments)]


def _rule_categories(content_dir: Path) -> list[tuple[str, str]]:
    """(file, category) for every flag category a clinical rule in content/rules names."""
    out: list[tuple[str, str]] = []

    def walk(node: Any, file: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "category" and isinstance(v, str):
                    out.append((file, v))
                else:
                    walk(v, file)
        elif isinstance(node, list):
            for v in node:
                walk(v, file)

    for f in sorted((Path(content_dir) / "rules").glob("*.yaml")):
        try:
            walk(yaml.safe_load(f.read_text(encoding="utf-8")), f"rules/{f.name}")
        except (OSError, yaml.YAMLError):
            continue  # reported as a syntax error by the content check itself
    return out


def check_labels(content_dir: Path) -> list[tuple[str, int, str]]:
    """Every category, severity, status and source the code can produce has a label in every
    language (a missing one would show a raw key to counselors), and every category a clinical
    rule names is one the flag service knows."""
    from bot.checkins.service import flag_category  # the rules' older category names map here

    root = Path(content_dir)
    out: list[tuple[str, int, str]] = []
    for file, cat in _rule_categories(root):
        if flag_category(cat) not in CATEGORIES:
            out.append((file, 0, f"category {cat!r} is not a flag category (one of {', '.join(CATEGORIES)})"))
    wanted = {"category": CATEGORIES, "severity": SEVERITIES, "status": STATUSES, "source": sources(root)}
    try:
        content = Content(root)
    except Exception:
        return out  # broken message files are reported by the message check
    for lang in content.languages:
        have = content.messages.get(lang, {})
        for kind, keys in wanted.items():
            for key in keys:
                value = have.get(f"flags.{kind}.{key}")
                if not isinstance(value, str) or not value.strip():
                    out.append((f"{lang}/messages/flags.yaml", 0, f"flags.{kind}.{key}: no label in {lang!r}"))
    return out


# -- configuration of the running workflow ---------------------------------------------------


@dataclass
class Workflow:
    settings: Settings
    content: Content
    rules: EscalationRules
    # Extra lines for Details (e.g. recent check-ins) and the digest, from other areas.
    detail_providers: list[Callable[[AsyncSession, int, str], Awaitable[list[str]]]] = field(default_factory=list)

    @property
    def lang(self) -> str:
        return self.settings.default_language

    @property
    def zone(self) -> str:
        return self.settings.default_timezone

    @property
    def group(self) -> int | None:
        return self.settings.counselor_chat_id


_workflow: Workflow | None = None


def configure(settings: Settings, content: Content | None = None) -> Workflow:
    """Set the settings and words the workflow uses (tests call this without an application)."""
    global _workflow
    content = content or get_content(settings.content_dir)
    _workflow = Workflow(settings, content, load_rules(content.root))
    return _workflow


def reset() -> None:
    """Forget the configuration (tests)."""
    global _workflow
    _workflow = None


def workflow() -> Workflow | None:
    return _workflow


def install(hub: Hub) -> Workflow:
    """Wire the workflow to an application's services: sweeper kinds and the sender's hook."""
    wf = configure(hub.settings, hub.content)
    hub.sweeper.register(KIND_RENOTIFY, _renotify_item)
    hub.sweeper.register(KIND_FOLLOWUP, _followup_item)
    hub.sweeper.register(KIND_DIGEST, _digest_item)

    async def on_sent(row: OutboxMessage, message_id: int | None) -> None:
        if message_id is None or not row.ref or not row.ref.startswith(("flag:", "card:")):
            return
        async with hub.db.transaction() as s:
            await record_sent(s, row.ref, row.chat_id, message_id, hub.clock.now())

    hub.sender.sent_hooks.append(on_sent)
    return wf


# -- plain values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagResult:
    flag_id: int
    created: bool  # False: the trigger joined an open flag
    severity: str  # the flag's severity after this trigger
    escalated: bool  # True: the severity went up


@dataclass(frozen=True)
class FlagInfo:
    id: int
    patient_id: int
    patient_code: str
    category: str
    severity: str
    status: str
    source: str
    opened_at: datetime
    claimed_at: datetime | None
    claimed_by: int | None
    claimed_by_name: str | None
    resolved_at: datetime | None
    resolved_by: int | None
    resolved_by_name: str | None
    group_message_id: int | None
    rev: int
    last_trigger_at: datetime | None = None  # set by open_flags: the latest trigger's time
    why: dict[str, Any] | None = None  # the trigger behind the severity (flags.why; why_text reads it)
    card_id: int | None = None  # the patient's card of the day in the group


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    reason: str | None  # not_found | already_claimed | resolved
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


@dataclass(frozen=True)
class Trigger:
    at: datetime
    source: str | None
    severity: str | None
    reason: str | None
    evidence: str | None
    facts: dict[str, Any] | None = None  # the answers its readable reason names


@dataclass(frozen=True)
class ScoreInfo:
    """The latest questionnaire of one instrument, for Details."""

    instrument: str
    title: str
    total: int | None
    band: str | None  # the band's label
    item9: int | None  # PHQ-9 item 9 (thoughts of death or self-harm), 0-3, when answered
    at: datetime  # completed (or started, when not finished)
    done: bool


@dataclass(frozen=True)
class CheckinInfo:
    at: datetime  # when it was completed
    mood: int | None
    craving: int | None
    use: str | None
    medication: str | None


@dataclass(frozen=True)
class FlagDetails:
    flag: FlagInfo
    first_name: str | None
    telegram_id: int
    language: str
    triggers: list[Trigger]
    checkins: list[str]  # extra lines from other areas (Workflow.detail_providers)
    scores: list[ScoreInfo] = field(default_factory=list)
    other_flags: list[FlagInfo] = field(default_factory=list)
    plan: dict[str, list[str]] = field(default_factory=dict)  # section -> entries (plain text)
    mat: bool = False
    medication_schedule: str | None = None
    recent: list[CheckinInfo] = field(default_factory=list)  # the last check-ins, newest first
    at: datetime | None = None  # when Details was asked for (names the zone's abbreviation then)


@dataclass(frozen=True)
class OnCallInfo:
    telegram_id: int
    name: str | None
    set_at: datetime


def _info(flag: Flag, code: str) -> FlagInfo:
    return FlagInfo(
        id=flag.id,
        patient_id=flag.patient_id,
        patient_code=code,
        category=flag.category,
        severity=flag.severity,
        status=flag.status,
        source=flag.source,
        opened_at=flag.opened_at,
        claimed_at=flag.claimed_at,
        claimed_by=flag.claimed_by,
        claimed_by_name=flag.claimed_by_name,
        resolved_at=flag.resolved_at,
        resolved_by=flag.resolved_by,
        resolved_by_name=flag.resolved_by_name,
        group_message_id=flag.group_message_id,
        rev=flag.rev or 0,
        why=flag.why,
        card_id=flag.card_id,
    )


async def _code(session: AsyncSession, patient_id: int) -> str:
    code = (await session.execute(select(Patient.code).where(Patient.id == patient_id))).scalar_one_or_none()
    return code or "?"


async def _locked(session: AsyncSession, flag_id: int) -> Flag | None:
    return (await session.execute(select(Flag).where(Flag.id == flag_id).with_for_update())).scalar_one_or_none()


def _who(actor_id: int, actor_name: str | None) -> str:
    """The name a flag keeps for the counselor who claimed or resolved it."""
    return (actor_name or str(actor_id))[:64]


async def _view(session: AsyncSession, flag: Flag) -> tuple[FlagInfo, str, dict[str, Any]]:
    """The flag as the group sees it: its info, and its post's text and buttons."""
    info = _info(flag, await _code(session, flag.patient_id))
    text, kb = _render(info)
    return info, text, kb


async def _reply_in_group(
    session: AsyncSession,
    wf: Workflow,
    reply_to: int | None,
    text: str,
    kb: dict[str, Any],
    now: datetime,
    *,
    dedup_key: str,
    ref: str,
) -> None:
    """A flag's message to the group, as a reply to `reply_to` (the flag's or its card's post)
    when Telegram has told where that landed."""
    params = None
    if reply_to is not None:
        params = {"reply_parameters": {"message_id": reply_to, "allow_sending_without_reply": True}}
    await enqueue(session, Outgoing(wf.group, text, params=params, reply_markup=kb), now=now, dedup_key=dedup_key, ref=ref)


async def _edit_message(
    session: AsyncSession, chat_id: int, message_id: int, text: str, kb: dict[str, Any], now: datetime, ref: str
) -> None:
    """Show `text` and `kb` on a message already delivered (an edit through the outbox)."""
    await enqueue(
        session,
        Outgoing(chat_id, text, method="editMessageText", params={"message_id": message_id}, reply_markup=kb),
        now=now,
        ref=ref,
    )


# -- raising -----------------------------------------------------------------------------------


async def raise_flag(
    session: AsyncSession,
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
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    # Lock the patient first: two triggers at once for the same patient never open two flags.
    await session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update())
    q = (
        select(Flag)
        .where(Flag.patient_id == patient_id, Flag.category == category, Flag.status != "resolved")
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
            status="open",
            source=source,
            opened_at=now,
            renotify_stage=0,
            rev=0,
        )
        session.add(flag)
        await session.flush()
    elif rank(severity) > rank(flag.severity):
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
    try:
        await _explain(session, flag, event)
    except Exception as exc:  # the why is for counselors' convenience; the flag stands without it
        log.error("flags: why flag %s stands could not be worked out (%s)", flag.id, type(exc).__name__)
    try:
        await _after_raise(session, flag, created, escalated, now, event)
    except Exception as exc:
        # A bug or a gap in the words must not cost the flag and the answers that raised it: the
        # group gets a plain alert instead (a database failure still fails the whole unit).
        log.error("flags: flag %s could not be announced as usual (%s); sending a plain alert", flag.id, type(exc).__name__)
        await _plain_alert(session, flag, event, now)
    for hook in _on_raised:
        await hook(session, flag, created, escalated, now)
    return FlagResult(flag.id, created, flag.severity, escalated)


_unknown_sources: set[str] = set()

# Other areas may subscribe (e.g. metrics); the escalation workflow itself runs in _after_raise.
_on_raised: list = []  # type: ignore[type-arg]


def on_raised(hook) -> None:  # type: ignore[no-untyped-def]
    """Register `async hook(session, flag, created, escalated, now)` run inside raise_flag."""
    _on_raised.append(hook)


async def _after_raise(
    session: AsyncSession, flag: Flag, created: bool, escalated: bool, now: datetime, event: FlagEvent
) -> None:
    wf = _workflow
    if wf is None:
        log.warning("flags: workflow not configured; flag %s stored without a group post", flag.id)
        return
    announced = await _publish(session, wf, flag, created, escalated, now)
    # A new high or crisis trigger on a flag that is already open or claimed reaches the group
    # again (a reply to the flag's post), and re-notification starts over from it.
    urgent = not created and not announced and event.severity is not None and rank(event.severity) >= rank("high")
    renewed = urgent and await _notify_new_trigger(session, wf, flag, event, escalated, now)
    if not created and flag.status == "claimed" and flag.claimed_by is not None:
        # The counselor who holds the flag hears about every new trigger (no words, no name).
        info, text, kb = await _view(session, flag)
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
    if renewed and flag.status in ("open", "claimed"):
        # A claimed flag's round runs only while its holder has not acted on it since.
        await _restart_renotify(session, wf, flag, now, event)
    elif flag.status == "open" and (created or escalated):
        await _schedule_renotify(session, wf, flag, now)


async def _notify_new_trigger(
    session: AsyncSession, wf: Workflow, flag: Flag, event: FlagEvent, escalated: bool, now: datetime
) -> bool:
    """Tell the group about a new high or crisis trigger on an open or claimed flag.

    Triggers that follow the flag's last notice within `new_trigger.quiet_minutes` (a patient
    writing several messages in a row) are not posted again unless the severity rose. True when
    the group was told.
    """
    if wf.group is None:
        return False
    if not escalated:
        last = (
            await session.execute(
                select(func.max(FlagEvent.at)).where(FlagEvent.flag_id == flag.id, FlagEvent.kind == "notify")
            )
        ).scalar_one_or_none()
        opened = ensure_utc(flag.opened_at)
        last = max(ensure_utc(last), opened) if last is not None else opened
        if now - last < timedelta(minutes=wf.rules.new_trigger.quiet_minutes):
            return False
    c, lang = wf.content, wf.lang
    info, text, kb = await _view(session, flag)
    head = c.t(
        "flags.new_trigger_group",
        lang,
        id=flag.id,
        code=info.patient_code,
        source=label(c, lang, "source", event.source or "?"),
        severity=Html(label(c, lang, "severity", event.severity or flag.severity)),
        time=now.astimezone(ZoneInfo(wf.zone)).strftime("%H:%M %Z"),
    )
    await _reply_in_group(
        session,
        wf,
        flag.group_message_id,
        head + "\n\n" + text,
        kb,
        now,
        dedup_key=f"flagtrigger:{flag.id}:{event.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:n{event.id}",
    )
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="notify", source=event.source, severity=event.severity))
    return True


# -- rendering (group-safe: code, category, severity, times, flag id) -------------------------

_missing_labels: set[tuple[str, str]] = set()


def label(c: Content, lang: str, kind: str, key: str) -> str:
    """The label `flags.<kind>.<key>` (kind: category, severity, status or source).

    A missing one (content not updated with the code) shows the key in plain words and is logged
    once: a gap in the words never costs a flag or the answers that raised it.
    """
    name = f"flags.{kind}.{key}"
    if c.has(name, lang):
        try:
            return c.t(name, lang)
        except Exception:
            pass
    if (name, lang) not in _missing_labels:
        _missing_labels.add((name, lang))
        log.error("flags: no label %s for language %s; showing the key instead", name, lang)
    plain = html.escape(str(key).replace("_", " "), quote=False)
    return plain.upper() if kind == "severity" else plain


def _plain_post(info: FlagInfo) -> str:
    """A last-resort post that needs no content at all (a broken template must not lose a flag)."""
    return html.escape(
        f"{info.severity.upper()} · Flag #{info.id} · {info.patient_code} · {info.category.replace('_', ' ')}",
        quote=False,
    )


def _plain_keyboard(info: FlagInfo) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": f"{a.title()} #{info.id}", "callback_data": f"fl:{a}:{info.id}"}] for a in ("claim", "details", "resolve")]}


async def _plain_alert(session: AsyncSession, flag: Flag, event: FlagEvent, now: datetime) -> None:
    """The last resort when announcing a flag failed: its plain post to the group."""
    wf = _workflow
    if wf is None or wf.group is None or flag.severity == "low":
        return
    info = _info(flag, await _code(session, flag.patient_id))
    await enqueue(
        session,
        Outgoing(wf.group, _plain_post(info), reply_markup=_plain_keyboard(info)),
        now=now,
        dedup_key=f"flagplain:{flag.id}:{event.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:p{event.id}",
    )


def _render(info: FlagInfo) -> tuple[str, dict[str, Any]]:
    """The post's text and buttons, never raising: the flag reaches the group whatever the words."""
    try:
        text = render_post(info)
    except Exception as exc:
        log.error("flags: the post of flag %s could not be rendered (%s); sending a plain one", info.id, type(exc).__name__)
        text = _plain_post(info)
    try:
        kb = post_keyboard(info)
    except Exception as exc:
        log.error("flags: the buttons of flag %s could not be rendered (%s)", info.id, type(exc).__name__)
        kb = _plain_keyboard(info)
    return text, kb


def render_post(info: FlagInfo, *, content: Content | None = None, lang: str | None = None, zone: str | None = None) -> str:
    """The group post for a flag. Holds no name and no patient text, by construction."""
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")
    z = zone or (wf.zone if wf else "UTC")
    return c.t(
        "flags.post",
        lang,
        severity=Html(label(c, lang, "severity", info.severity)),
        id=info.id,
        code=info.patient_code,
        category=label(c, lang, "category", info.category),
        why=Html(why_text(info.why, source=info.source, content=c, lang=lang)),
        time=local_text(info.opened_at, z, POST_TIME),
        state=Html(_state(info, c, lang, z)),
    )


def post_keyboard(info: FlagInfo, *, content: Content | None = None, lang: str | None = None) -> dict[str, Any]:
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")

    def b(key: str, action: str) -> dict[str, str]:
        return {"text": c.t(f"flags.button.{key}", lang), "callback_data": f"fl:{action}:{info.id}"}

    if info.status == "resolved":
        rows = [[b("details", "details")]]
    elif info.status == "claimed":
        rows = [[b("details", "details"), b("message", "msg")], [b("resolve", "resolve")]]
    else:
        rows = [[b("claim", "claim"), b("details", "details")], [b("message", "msg"), b("resolve", "resolve")]]
    return {"inline_keyboard": rows}


async def _edit_posts(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    """Show the flag's new state on every message that carries it."""
    _, text, kb = await _view(session, flag)
    for chat_id, message_id in flag.posts or []:
        await _edit_message(session, chat_id, message_id, text, kb, now, f"flagedit:{flag.id}:{flag.rev or 0}")
    if flag.card_id is not None:
        card = (await session.execute(select(FlagCard).where(FlagCard.id == flag.card_id).with_for_update())).scalar_one_or_none()
        if card is not None:
            await _edit_card(session, card, now)


async def record_sent(session: AsyncSession, ref: str, chat_id: int, message_id: int, now: datetime) -> None:
    """A message showing a flag was delivered: remember where, and catch it up if the flag moved on."""
    parts = ref.split(":")
    if parts[0] == "card":
        await _card_sent(session, parts, chat_id, message_id, now)
        return
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return
    flag = await _locked(session, int(parts[1]))
    if flag is None:
        return
    posts = [list(p) for p in (flag.posts or [])]
    if [chat_id, message_id] in posts:
        return  # already recorded (and caught up)
    posts.append([chat_id, message_id])
    flag.posts = posts
    if len(parts) > 3 and parts[3] == "main" and flag.group_message_id is None:
        flag.group_message_id = message_id
    if int(parts[2]) != (flag.rev or 0):
        _, text, kb = await _view(session, flag)
        await _edit_message(session, chat_id, message_id, text, kb, now, f"flagedit:{flag.id}:{flag.rev or 0}")


# -- why a flag stands: the source, the rule and the answers behind it (never patient words) -----

_RULE_REASON = re.compile(r"^([a-z][a-z0-9_]*): (.+)$", re.S)
_RISK_REASON = re.compile(r"^risk:([a-z_]+)")


def split_reason(reason: str | None) -> tuple[str | None, str]:
    """(rule, text) of a stored reason: "<rule id>: <text>" from a content rule; "risk:<category>:…"
    from the risk detector (rule "risk", text the category); otherwise a plain reason (no rule)."""
    reason = (reason or "").strip()
    m = _RISK_REASON.match(reason)
    if m:
        return "risk", m.group(1)
    m = _RULE_REASON.match(reason)
    if m:
        return m.group(1), m.group(2).strip()
    return None, reason


def trigger_why(source: str | None, reason: str | None, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trigger's source and stored reason as `why_text` reads them."""
    rule, text = split_reason(reason)
    return {"source": source, "rule": rule, "reason": text, "facts": facts or {}}


def _why_fields(c: Content, lang: str, rule: str | None) -> set[str] | None:
    """The placeholders of `flags.why.<rule>`; None when there is no such wording."""
    key = f"flags.why.{rule}"
    if not rule or not c.has(key, lang):
        return None
    try:
        return {f for _, f, _, _ in string.Formatter().parse(str(c.raw(key, lang))) if f}
    except ValueError:
        return None


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


async def _explain(session: AsyncSession, flag: Flag, event: FlagEvent) -> None:
    """Keep `flag.why`: the first trigger that brought the flag to its highest severity, with the
    answers its readable reason names. It changes only when the severity rises (and the post is
    edited then). A failure here is logged and never costs the flag."""
    try:
        severity = event.severity or flag.severity
        current = flag.why or None
        if current is not None and current.get("severity") in SEVERITIES and rank(severity) <= rank(current["severity"]):
            return
        rule, text = split_reason(event.reason)
        wf = _workflow
        c = wf.content if wf else get_content()
        lang = wf.lang if wf else "en"
        facts = await _facts(session, flag.patient_id, event.source or "", event.at, _why_fields(c, lang, rule) or set())
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


def _names_source(source: str, reason: str) -> bool:
    """The reason already says where it came from ("Urge stronger 20 minutes after /sos")."""
    words = [w for w in source.lower().split() if len(w) >= 4]
    return bool(words) and words[0] in reason.lower()


def _sentence(text: str) -> str:
    """A rule's reason inside a line: "Use disclosed" → "use disclosed" (not "PHQ-9")."""
    return text[:1].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def why_text(
    why: dict[str, Any] | None,
    *,
    source: str | None = None,
    content: Content | None = None,
    lang: str | None = None,
) -> str:
    """The reason counselors read, in plain language and without the patient's words:
    "PHQ-9 item 9 = 1", "typed message · suicide or self-harm", "daily check-in · craving 9/10 …".

    `why` is a flag's `why` (or a trigger's: source, rule, reason, facts). A rule with wording in
    `flags.why.<rule>` reads that way when its answers are known; otherwise the source's label and
    the rule's own reason. `source` is used when there is no `why` (flags from before it existed).
    """
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")
    why = why or {}
    src_id = str(why.get("source") or source or "")
    src = label(c, lang, "source", src_id) if src_id else ""
    rule = why.get("rule")
    text = str(why.get("reason") or "")
    facts = why.get("facts") or {}
    if rule == "risk":
        reason = label(c, lang, "category", text) if text else ""
    else:
        fields = _why_fields(c, lang, rule)
        if fields is not None and fields <= set(facts):
            try:
                return c.t(f"flags.why.{rule}", lang, **{k: facts[k] for k in fields}) if fields else c.t(f"flags.why.{rule}", lang)
            except (KeyError, IndexError, ValueError):
                pass
        reason = html.escape(_sentence(text), quote=False)
    if not src or not reason or _names_source(html.unescape(src), html.unescape(reason)):
        return reason or src or "–"
    return c.t("flags.why_line", lang, source=Html(src), reason=Html(reason))


def _state(info: FlagInfo, c: Content, lang: str, zone: str) -> str:
    """Not claimed yet / claimed by … / resolved by …, with the time in the clinic's zone."""
    if info.status == "resolved" and info.resolved_at is not None:
        return c.t("flags.state.resolved", lang, name=info.resolved_by_name or "?", time=local_text(info.resolved_at, zone, POST_TIME))
    if info.status == "claimed" and info.claimed_at is not None:
        return c.t("flags.state.claimed", lang, name=info.claimed_by_name or "?", time=local_text(info.claimed_at, zone, POST_TIME))
    return c.t("flags.state.open", lang)


# -- the patient's card of the day ----------------------------------------------------------------
#
# A patient on a hard day can raise several flags: a PHQ-9 in the morning, a check-in, a message
# at night. Rather than a post each, the group gets ONE card per patient and clinic day, edited as
# flags are added or change: the day's flags, most severe first, each with its own line (severity,
# category, why, state) and its own buttons (Claim, Details, Message patient, Resolve, each with
# the flag's number), so every flag keeps its own lifecycle. A card with one flag is the ordinary
# flag post. Editing a message notifies nobody, so a high or crisis flag added to a card that is
# already in the group is also posted as a reply to the card (with its buttons). Low flags are not
# posted at all: they wait for the daily digest.

POST_TIME = "%a %d %b %H:%M %Z"


def render_card(infos: list[FlagInfo], *, content: Content | None = None, lang: str | None = None, zone: str | None = None) -> tuple[str, dict[str, Any]]:
    """The card's text and buttons. One flag: its ordinary post."""
    if len(infos) == 1:
        return _render(infos[0])
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")
    z = zone or (wf.zone if wf else "UTC")
    ordered = sorted(infos, key=lambda i: (-rank(i.severity), i.id))
    live = [i for i in ordered if i.status != "resolved"] or ordered
    try:
        blocks = [
            c.t(
                "flags.card.head",
                lang,
                severity=Html(label(c, lang, "severity", live[0].severity)),
                code=ordered[0].patient_code,
                n=len(ordered),
                open=len([i for i in ordered if i.status != "resolved"]),
            )
        ]
        rows: list[list[dict[str, str]]] = []
        for i in ordered:
            blocks.append(
                c.t(
                    "flags.card.flag",
                    lang,
                    severity=Html(label(c, lang, "severity", i.severity)),
                    id=i.id,
                    category=label(c, lang, "category", i.category),
                    time=local_text(i.opened_at, z, POST_TIME),
                    why=Html(why_text(i.why, source=i.source, content=c, lang=lang)),
                    state=Html(_state(i, c, lang, z)),
                )
            )
            for row in post_keyboard(i, content=c, lang=lang)["inline_keyboard"]:
                rows.append([{**b, "text": c.t("flags.card.button", lang, id=i.id, label=Html(b["text"]))} for b in row])
        return "\n\n".join(blocks), {"inline_keyboard": rows}
    except Exception as exc:
        log.error("flags: the card of %s could not be rendered (%s); sending a plain one", ordered[0].patient_code, type(exc).__name__)
        text = "\n".join(_plain_post(i) for i in ordered)
        return text, {"inline_keyboard": [row for i in ordered for row in _render(i)[1]["inline_keyboard"]]}


async def _card_view(session: AsyncSession, card: FlagCard) -> tuple[str, dict[str, Any]]:
    members = list((await session.execute(select(Flag).where(Flag.card_id == card.id).order_by(Flag.id))).scalars())
    code = await _code(session, card.patient_id)
    return render_card([_info(f, code) for f in members])


async def _usable_card(session: AsyncSession, wf: Workflow, patient_id: int, day: Any) -> FlagCard | None:
    """Today's card of this patient in the group, unless its post never reached Telegram."""
    card = (
        await session.execute(
            select(FlagCard)
            .where(FlagCard.patient_id == patient_id, FlagCard.day == day, FlagCard.chat_id == wf.group)
            .order_by(FlagCard.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if card is None or card.message_id is not None:
        return card
    status = (
        await session.execute(select(OutboxMessage.status).where(OutboxMessage.dedup_key == f"flagcard:{card.id}"))
    ).scalar_one_or_none()
    return card if status in ("pending", "sending", "sent") else None


async def _edit_card(session: AsyncSession, card: FlagCard, now: datetime) -> bool:
    """Show the card's flags as they are now. True when the card's first post had not left yet
    and now carries the change itself (so it notifies as it arrives)."""
    card.rev = (card.rev or 0) + 1
    text, kb = await _card_view(session, card)
    if card.message_id is None:
        row = (
            await session.execute(
                select(OutboxMessage).where(OutboxMessage.dedup_key == f"flagcard:{card.id}").with_for_update()
            )
        ).scalar_one_or_none()
        if row is not None and row.status == "pending":
            row.payload = {**dict(row.payload or {}), "text": text, "reply_markup": kb}
            row.ref = f"card:{card.id}:{card.rev}"
            return True
        return False  # on its way: edited as soon as Telegram says where it landed
    await _edit_message(session, card.chat_id, card.message_id, text, kb, now, f"cardedit:{card.id}:{card.rev}")
    return False


async def _publish(session: AsyncSession, wf: Workflow, flag: Flag, created: bool, escalated: bool, now: datetime) -> bool:
    """The posting decision for a raise. Low: nothing (the digest lists it). A flag not yet in the
    group goes on the patient's card of the day; one already there has its messages edited when
    its severity rose. True when this raise produced a message that notifies the group."""
    if flag.severity == "low" or flag.status == "resolved":
        return False
    if flag.card_id is not None or (not created and flag.group_message_id is not None):  # (or posted before cards)
        if escalated:
            await _edit_posts(session, wf, flag, now)
        return False
    if wf.group is None:
        log.warning("flags: COUNSELOR_CHAT_ID is not set; flag %s is not posted", flag.id)
        return False
    day = local_date(now, wf.zone)
    card = await _usable_card(session, wf, flag.patient_id, day)
    if card is None:
        card = FlagCard(patient_id=flag.patient_id, day=day, chat_id=wf.group, rev=0, created_at=now)
        session.add(card)
        await session.flush()
        flag.card_id = card.id
        text, kb = await _card_view(session, card)
        await enqueue(
            session, Outgoing(wf.group, text, reply_markup=kb), now=now, dedup_key=f"flagcard:{card.id}", ref=f"card:{card.id}:0"
        )
        return True
    flag.card_id = card.id
    if card.message_id is not None and flag.group_message_id is None:
        flag.group_message_id = card.message_id
    if await _edit_card(session, card, now):
        return True
    if not wf.rules.card.alerts(flag.severity, flag.category):
        return False
    c, lang = wf.content, wf.lang
    info, text, kb = await _view(session, flag)
    head = c.t("flags.card.alert", lang, severity=Html(label(c, lang, "severity", flag.severity)), code=info.patient_code)
    await _reply_in_group(
        session,
        wf,
        card.message_id,
        head + "\n\n" + text,
        kb,
        now,
        dedup_key=f"flagpost:{flag.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:main",
    )
    return True


async def _card_sent(session: AsyncSession, parts: list[str], chat_id: int, message_id: int, now: datetime) -> None:
    """The card's post was delivered: remember where (for its flags too), catch it up if needed."""
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return
    card = (await session.execute(select(FlagCard).where(FlagCard.id == int(parts[1])).with_for_update())).scalar_one_or_none()
    if card is None or card.message_id == message_id:
        return  # gone (erased) or already recorded
    card.message_id = message_id
    for f in (await session.execute(select(Flag).where(Flag.card_id == card.id))).scalars():
        if f.group_message_id is None:
            f.group_message_id = message_id
    if int(parts[2]) != (card.rev or 0):
        text, kb = await _card_view(session, card)
        await _edit_message(session, chat_id, message_id, text, kb, now, f"cardedit:{card.id}:{card.rev}")


# -- re-notification ---------------------------------------------------------------------------


def _renotify_plan(wf: Workflow, severity: str) -> list[tuple[int, int]]:
    """(stage, minutes after the trigger) for a severity; moderate and low go to the digest."""
    s = wf.settings
    if severity == "crisis":
        return [(1, s.crisis_repost_minutes), (2, s.crisis_dm_minutes)]
    if severity == "high":
        return [(1, s.high_repost_minutes)]
    return []


async def _schedule_renotify(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    for stage, minutes in _renotify_plan(wf, flag.severity):
        if stage <= (flag.renotify_stage or 0):
            continue
        await schedule(
            session,
            KIND_RENOTIFY,
            f"flagrenotify:f{flag.id}:s{stage}",
            now + timedelta(minutes=minutes),
            {"flag_id": flag.id, "stage": stage, "patient_id": flag.patient_id},
            replace=True,
        )


async def _restart_renotify(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime, event: FlagEvent) -> None:
    """Start the re-notification steps over from a new trigger (a round of its own: the steps
    already run for earlier triggers run again, and pending ones are replaced)."""
    await cancel(session, key_prefix=f"flagrenotify:f{flag.id}:")
    flag.renotify_stage = 0
    for stage, minutes in _renotify_plan(wf, flag.severity):
        await schedule(
            session,
            KIND_RENOTIFY,
            f"flagrenotify:f{flag.id}:t{event.id}:s{stage}",
            now + timedelta(minutes=minutes),
            {"flag_id": flag.id, "stage": stage, "patient_id": flag.patient_id, "round": event.id, "since": now.isoformat()},
        )


async def _renotify_item(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
    wf = _workflow
    payload = item.payload or {}
    flag = await _locked(session, int(payload.get("flag_id", 0)))
    if wf is None or flag is None or flag.status not in ("open", "claimed"):
        return
    stage = int(payload.get("stage", 1))
    if stage <= (flag.renotify_stage or 0):
        return
    # A round started by a later trigger counts its minutes from that trigger.
    round_id = payload.get("round")
    suffix = f":t{round_id}" if round_id else ""
    try:
        since = ensure_utc(datetime.fromisoformat(str(payload["since"])))
    except (KeyError, ValueError):
        since = ensure_utc(flag.opened_at)
    holder = flag.claimed_by_name or str(flag.claimed_by)
    if flag.status == "claimed" and (not round_id or await _holder_acted(session, flag, since)):
        return  # claimed before this round, or its holder has opened it since the new trigger
    _, text, kb = await _view(session, flag)
    c, lang = wf.content, wf.lang
    claimed = flag.status == "claimed"
    minutes = int((now - since).total_seconds() // 60)
    oncall = await get_oncall(session)
    ref = f"flag:{flag.id}:{flag.rev or 0}:r{stage}{suffix}"
    if stage == 1:
        if wf.group is not None:
            if oncall is not None:
                mention = c.t("flags.mention", lang, id=oncall.telegram_id, name=oncall.name or str(oncall.telegram_id))
            elif await _say_no_oncall(session, wf, now):
                mention = c.t("flags.no_oncall", lang)
            else:
                mention = ""
            key = "flags.repost_claimed" if claimed else "flags.repost"
            head = c.t(key, lang, minutes=minutes, name=holder, mention=Html(mention)).rstrip()
            await enqueue(
                session, Outgoing(wf.group, head + "\n\n" + text, reply_markup=kb), now=now,
                dedup_key=f"flagrenotify:{flag.id}:1{suffix}", ref=ref,
            )
    else:
        head = c.t("flags.dm_alert_claimed" if claimed else "flags.dm_alert", lang, minutes=minutes, name=holder)
        for uid in await counselor_ids(session, wf.settings):
            await enqueue(
                session, Outgoing(uid, head + "\n\n" + text, reply_markup=kb), now=now,
                dedup_key=f"flagrenotify:{flag.id}:2{suffix}:{uid}", ref=ref,
            )
    flag.renotify_stage = stage
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="renotify", detail={"stage": stage}))


async def _holder_acted(session: AsyncSession, flag: Flag, since: datetime) -> bool:
    """The counselor holding the flag opened its details, wrote to the patient or took it again
    since `since`."""
    q = select(FlagEvent.id).where(
        FlagEvent.flag_id == flag.id,
        FlagEvent.actor_id == flag.claimed_by,
        FlagEvent.kind.in_(("details", "message", "claim", "resolve")),
        FlagEvent.at >= since,
    )
    return (await session.execute(q.limit(1))).first() is not None


NO_ONCALL_SAID = "flags:no_oncall_said"


async def _say_no_oncall(session: AsyncSession, wf: Workflow, now: datetime) -> bool:
    """True at most once a clinic day: "nobody is on call" is a reminder, not a refrain."""
    today = local_date(now, wf.zone).isoformat()
    row = await session.get(RuntimeSetting, NO_ONCALL_SAID, with_for_update=True)
    if row is not None and row.value == today:
        return False
    if row is None:
        session.add(RuntimeSetting(key=NO_ONCALL_SAID, value=today, updated_at=now))
    else:
        row.value, row.updated_at = today, now
    return True


async def counselor_ids(session: AsyncSession, settings: Settings) -> list[int]:
    """Everyone to alert directly: counselors by role, admins, the on-call counselor, and every
    member of the counselors' group (its roster). A chat that refused the bot (never opened, or
    blocked) is marked by the sender and not written to again until the person opens it."""
    from bot.core.roles import group_members

    ids = set(
        (await session.execute(select(StaffRole.telegram_id).where(StaffRole.role.in_(("counselor", "admin"))))).scalars()
    )
    ids.update(settings.admin_user_ids)
    ids.update(await group_members(session))
    oc = await get_oncall(session)
    if oc is not None:
        ids.add(oc.telegram_id)
    return sorted(ids)


# -- claim, resolve, details, history ----------------------------------------------------------


async def claim(session: AsyncSession, flag_id: int, *, actor_id: int, actor_name: str | None, now: datetime) -> ActionResult:
    flag = await _locked(session, flag_id)
    if flag is None:
        return ActionResult(False, "not_found", None)
    code = await _code(session, flag.patient_id)
    if flag.status == "resolved":
        return ActionResult(False, "resolved", _info(flag, code))
    if flag.status == "claimed":
        if flag.claimed_by == actor_id:
            return ActionResult(True, None, _info(flag, code))
        return ActionResult(False, "already_claimed", _info(flag, code))
    flag.status = "claimed"
    flag.claimed_at = now
    flag.claimed_by = actor_id
    flag.claimed_by_name = _who(actor_id, actor_name)
    flag.rev = (flag.rev or 0) + 1
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="claim", actor_id=actor_id))
    await audit(session, actor_id, "flag.claim", f"flag:{flag.id}", now=now)
    await cancel(session, key_prefix=f"flagrenotify:f{flag.id}:")
    await session.flush()
    if _workflow is not None:
        await _edit_posts(session, _workflow, flag, now)
    return ActionResult(True, None, _info(flag, code))


async def resolve(
    session: AsyncSession, flag_id: int, *, actor_id: int, actor_name: str | None, note: str, now: datetime
) -> ActionResult:
    """Resolve with a short outcome note (stored encrypted; never posted to the group)."""
    flag = await _locked(session, flag_id)
    if flag is None:
        return ActionResult(False, "not_found", None)
    code = await _code(session, flag.patient_id)
    if flag.status == "resolved":
        return ActionResult(False, "resolved", _info(flag, code))
    if flag.claimed_at is None:
        flag.claimed_at = now
        flag.claimed_by = actor_id
        flag.claimed_by_name = _who(actor_id, actor_name)
    flag.status = "resolved"
    flag.resolved_at = now
    flag.resolved_by = actor_id
    flag.resolved_by_name = _who(actor_id, actor_name)
    flag.outcome = note.strip()[:2000]
    flag.rev = (flag.rev or 0) + 1
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="resolve", actor_id=actor_id))
    await audit(session, actor_id, "flag.resolve", f"flag:{flag.id}", now=now)
    await cancel(session, key_prefix=f"flagrenotify:f{flag.id}:")
    await session.flush()
    wf = _workflow
    if wf is not None:
        await _edit_posts(session, wf, flag, now)
        if flag.severity in wf.rules.followup.severities:
            await schedule(
                session,
                KIND_FOLLOWUP,
                f"flagfollowup:f{flag.id}",
                now + timedelta(hours=wf.rules.followup.after_hours),
                {"flag_id": flag.id, "patient_id": flag.patient_id},
            )
    return ActionResult(True, None, _info(flag, code))


async def get_flag(session: AsyncSession, flag_id: int) -> FlagInfo | None:
    flag = await session.get(Flag, flag_id)
    return None if flag is None else _info(flag, await _code(session, flag.patient_id))


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
            .where(Flag.status != "resolved")
            .order_by(last_at.desc(), Flag.id.desc())
            .limit(limit)
        )
    ).all()
    return [replace(_info(f, code), last_trigger_at=_as_utc(at) or f.opened_at) for f, code, at in rows]


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


async def details(session: AsyncSession, flag_id: int, *, actor_id: int, now: datetime) -> FlagDetails | None:
    """What one counselor needs to act, for their DM: name, the triggers with their readable
    reasons and words, questionnaires, the patient's other open flags, their plan, MAT and the
    last check-ins. Audited."""
    flag = await session.get(Flag, flag_id)
    if flag is None:
        return None
    patient = await session.get(Patient, flag.patient_id)
    if patient is None:
        return None
    wf = _workflow
    c = wf.content if wf else get_content()
    lang = wf.lang if wf else "en"
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
            facts = await _facts(session, patient.id, e.source or "", e.at, _why_fields(c, lang, rule) or set())
        triggers.append(Trigger(e.at, e.source, e.severity, e.reason, e.evidence, facts))
    lines: list[str] = []
    if wf is not None:
        for provider in wf.detail_providers:
            try:
                lines += await provider(session, patient.id, wf.lang)
            except Exception:
                log.exception("flags: a details provider failed")
    others = (
        await session.execute(
            select(Flag)
            .where(Flag.patient_id == patient.id, Flag.status != "resolved", Flag.id != flag.id)
            .order_by(Flag.opened_at.desc(), Flag.id.desc())
        )
    ).scalars()
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="details", actor_id=actor_id))
    await audit(session, actor_id, "flag.details", f"flag:{flag.id}", {"patient": patient.code}, now=now)
    return FlagDetails(
        _info(flag, patient.code),
        patient.first_name,
        patient.telegram_id,
        patient.language,
        triggers,
        lines,
        scores=await _scores(session, c, lang, patient.id),
        other_flags=[_info(f, patient.code) for f in others],
        plan=await _plan_summary(session, patient.id),
        mat=bool(patient.mat),
        medication_schedule=getattr(patient, "medication_schedule", None),
        recent=await _recent_checkins(session, patient.id),
        at=now,
    )


DETAILS_TRIGGERS = 10  # the latest triggers shown in Details (the whole list is in /flag <id>)
DETAILS_INSTRUMENTS = ("phq9", "gad7")
PLAN_SHOWN = 3  # entries per plan section in Details
PLAN_ENTRY_SHOWN = 120  # characters of each


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rstrip() + " …"


async def _scores(session: AsyncSession, c: Content, lang: str, patient_id: int) -> list[ScoreInfo]:
    """The latest PHQ-9 and GAD-7 (finished, or started and not finished), with item 9."""
    out: list[ScoreInfo] = []
    try:
        from bot.core.clinical import load_clinical

        clinical = load_clinical(c.root)
    except Exception as exc:
        log.warning("flags: questionnaire wording unavailable (%s)", type(exc).__name__)
        clinical = None
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
        if clinical is not None:
            try:
                inst = clinical.instrument(name, lang)
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


EVIDENCE_SHOWN = 600  # characters; even fully escaped (×5) a trigger stays one message part


def _clip(text: str) -> str:
    """A trigger's words, short enough to fit, with no blank lines (messages split at those)."""
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    return text if len(text) <= EVIDENCE_SHOWN else text[:EVIDENCE_SHOWN].rstrip() + " …"


def _answer(c: Content, lang: str, value: Any) -> str:
    if value is None:
        return "–"
    key = f"flags.answer.{value}"
    return c.t(key, lang) if isinstance(value, str) and c.has(key, lang) else html.escape(str(value).replace("_", " "), quote=False)


def render_details(d: FlagDetails, *, content: Content | None = None, lang: str | None = None, zone: str | None = None) -> str:
    """The Details DM: for one counselor only (it holds the name and the patient's words).
    Every time is in the clinic's zone, named once at the top."""
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")
    z = zone or (wf.zone if wf else "UTC")

    def when(at: datetime) -> str:
        return local_text(at, z)

    parts = [
        c.t(
            "flags.details_head",
            lang,
            id=d.flag.id,
            code=d.flag.patient_code,
            name=d.first_name or "–",
            severity=Html(label(c, lang, "severity", d.flag.severity)),
            category=label(c, lang, "category", d.flag.category),
            why=Html(why_text(d.flag.why, source=d.flag.source, content=c, lang=lang)),
            state=Html(_state(d.flag, c, lang, z)),
            zone=zone_name(z, d.at or d.flag.opened_at),
        )
    ]
    shown = d.triggers[-DETAILS_TRIGGERS:]
    if shown:
        parts.append(c.t("flags.details_triggers", lang))
    for tr in shown:
        why = trigger_why(tr.source, tr.reason, tr.facts)
        parts.append(
            c.t(
                "flags.details_trigger",
                lang,
                time=when(tr.at),
                severity=Html(label(c, lang, "severity", tr.severity)) if tr.severity else "–",
                why=Html(why_text(why, content=c, lang=lang)),
                text=_clip(tr.evidence) if tr.evidence else c.t("flags.details_no_text", lang),
            )
        )
    if d.scores:
        lines = [c.t("flags.details_scores", lang)]
        for sc in d.scores:
            if sc.done:
                line = c.t("flags.details_score", lang, title=Html(sc.title), total=sc.total if sc.total is not None else "–", band=sc.band or "–", time=when(sc.at))
            else:
                line = c.t("flags.details_score_open", lang, title=Html(sc.title), time=when(sc.at))
            if sc.item9 is not None:
                line += " · " + c.t("flags.details_item9", lang, value=sc.item9)
            lines.append(line)
        parts.append("\n".join(lines))
    if d.other_flags:
        lines = [c.t("flags.details_other_flags", lang)]
        for f in d.other_flags:
            lines.append(
                c.t(
                    "flags.details_other_flag",
                    lang,
                    id=f.id,
                    severity=Html(label(c, lang, "severity", f.severity)),
                    category=label(c, lang, "category", f.category),
                    state=label(c, lang, "status", f.status),
                    why=Html(why_text(f.why, source=f.source, content=c, lang=lang)),
                )
            )
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("flags.details_other_none", lang))
    if d.plan:
        lines = [c.t("flags.details_plan", lang)]
        for section, entries in d.plan.items():
            title = c.t(f"plan.sections.{section}.title", lang) if c.has(f"plan.sections.{section}.title", lang) else html.escape(section)
            text = "; ".join(_short(e, PLAN_ENTRY_SHOWN) for e in entries[:PLAN_SHOWN])
            if len(entries) > PLAN_SHOWN:
                text += " " + c.t("flags.details_plan_more", lang, n=len(entries) - PLAN_SHOWN)
            lines.append(c.t("flags.details_plan_section", lang, title=Html(title), entries=Html(html.escape(text, quote=False))))
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("flags.details_plan_empty", lang))
    schedule_key = f"flags.mat.{d.medication_schedule or 'daily'}" if d.mat else "flags.mat.no"
    mat = c.t(schedule_key, lang) if c.has(schedule_key, lang) else c.t("flags.mat.daily", lang)
    parts.append(c.t("flags.details_mat", lang, mat=mat))
    if d.recent:
        head = "flags.details_checkins_mat" if d.mat else "flags.details_checkins"
        line = "flags.details_checkin_mat" if d.mat else "flags.details_checkin"
        lines = [c.t(head, lang, n=len(d.recent))]
        for ci in d.recent:
            lines.append(
                c.t(
                    line,
                    lang,
                    time=when(ci.at),
                    mood="–" if ci.mood is None else ci.mood,
                    craving="–" if ci.craving is None else ci.craving,
                    use=Html(_answer(c, lang, ci.use)),
                    medication=Html(_answer(c, lang, ci.medication)),
                )
            )
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("flags.details_no_checkins", lang))
    if d.checkins:
        parts.append("\n".join(d.checkins))
    return "\n\n".join(parts)


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


# -- on call ---------------------------------------------------------------------------------


async def get_oncall(session: AsyncSession) -> OnCallInfo | None:
    row = (await session.execute(select(OnCall).order_by(OnCall.id.desc()).limit(1))).scalar_one_or_none()
    if row is None or row.telegram_id is None:
        return None
    return OnCallInfo(row.telegram_id, row.display_name, row.set_at)


async def set_oncall(session: AsyncSession, telegram_id: int | None, *, name: str | None, by: int | None, now: datetime) -> None:
    """Set who is on call (None: nobody). Audited."""
    session.add(OnCall(telegram_id=telegram_id, display_name=(name or None) and name[:64], set_by=by, set_at=now))
    await audit(session, by, "oncall.set", None if telegram_id is None else str(telegram_id), now=now)


# -- follow-up after a resolved crisis/high flag ------------------------------------------------


async def _followup_item(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
    wf = _workflow
    payload = item.payload or {}
    patient = await session.get(Patient, int(payload.get("patient_id", 0)))
    if wf is None or patient is None or patient.status != "active":
        return
    flag_id = int(payload.get("flag_id", 0))
    c, lang = wf.content, patient.language or wf.lang
    kb = {
        "inline_keyboard": [
            [{"text": c.t("safety.followup_ok", lang), "callback_data": f"sf:fu:{flag_id}:ok"}],
            [{"text": c.t("safety.followup_bad", lang), "callback_data": f"sf:fu:{flag_id}:bad"}],
            [{"text": c.t("safety.followup_talk", lang), "callback_data": f"sf:fu:{flag_id}:talk"}],
        ]
    }
    await enqueue(
        session, Outgoing(patient.telegram_id, c.t("safety.followup", lang), reply_markup=kb), now=now,
        dedup_key=f"flagfollowup:{flag_id}",
    )
    session.add(FlagEvent(flag_id=flag_id, at=now, kind="followup"))


# -- daily digest ----------------------------------------------------------------------------


async def ensure_digest_scheduled(session: AsyncSession, now: datetime) -> None:
    wf = _workflow
    if wf is None:
        return
    due = next_local_due(wf.rules.digest.at, wf.zone, now)
    await schedule(session, KIND_DIGEST, f"flagdigest:{local_date(due, wf.zone).isoformat()}", due)


async def _digest_item(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
    wf = _workflow
    if wf is None:
        return
    if wf.group is not None:
        for i, part in enumerate(split_text(await build_digest(session, now))):
            await enqueue(session, Outgoing(wf.group, part), now=now, dedup_key=item.key if i == 0 else f"{item.key}:{i}")
    await ensure_digest_scheduled(session, now)


def age_text(c: Content, lang: str, delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return c.t("flags.age_minutes", lang, n=minutes)
    if minutes < 48 * 60:
        return c.t("flags.age_hours", lang, n=minutes // 60)
    return c.t("flags.age_days", lang, n=minutes // (24 * 60))


async def build_digest(session: AsyncSession, now: datetime) -> str:
    """The daily digest for the group, no names: open flags, the low flags (posted nowhere else),
    the last 24 hours (crisis or high flags, PHQ-9 item 9 above zero, resolved flags), follow-ups
    due, and trends (silent patients, rising craving, PHQ-9 band up)."""
    wf = _workflow
    c = wf.content if wf else get_content()
    lang = wf.lang if wf else "en"
    z = wf.zone if wf else "UTC"
    rules = wf.rules if wf else EscalationRules()
    since = now - DIGEST_WINDOW
    parts = [c.t("flags.digest_title", lang)]

    def flag_line(f: FlagInfo) -> str:
        return c.t(
            "flags.digest_flag",
            lang,
            id=f.id,
            severity=Html(label(c, lang, "severity", f.severity)),
            code=f.patient_code,
            category=label(c, lang, "category", f.category),
            age=age_text(c, lang, now - f.opened_at),
            state=label(c, lang, "status", f.status),
        )

    open_all = await open_flags(session, limit=200)
    posted = [f for f in open_all if f.severity != "low"]
    low = [f for f in open_all if f.severity == "low"]
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
                id=f.id,
                severity=Html(label(c, lang, "severity", f.severity)),
                code=f.patient_code,
                category=label(c, lang, "category", f.category),
                why=Html(why_text(f.why, source=f.source, content=c, lang=lang)),
                state=label(c, lang, "status", f.status),
            )
            for f in urgent
        ]
        parts.append(c.t("flags.digest_urgent", lang) + "\n" + "\n".join(lines))
    item9 = await _item9_since(session, since)
    if item9:
        codes = ", ".join(c.t("flags.digest_item9_code", lang, code=code, value=value) for code, value in item9)
        parts.append(c.t("flags.digest_item9", lang, codes=Html(codes)))
    resolved = await _resolved_since(session, since)
    if resolved:
        lines = [
            c.t(
                "flags.digest_resolved_flag",
                lang,
                id=f.id,
                severity=Html(label(c, lang, "severity", f.severity)),
                code=f.patient_code,
                category=label(c, lang, "category", f.category),
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
        FlagEvent.kind == "trigger", FlagEvent.severity.in_(("crisis", "high")), FlagEvent.at >= since
    )
    rows = (
        await session.execute(
            select(Flag, Patient.code).join(Patient, Patient.id == Flag.patient_id).where(Flag.id.in_(ids)).order_by(Flag.id)
        )
    ).all()
    return sorted((_info(f, code) for f, code in rows), key=lambda i: (-rank(i.severity), i.id))


async def _resolved_since(session: AsyncSession, since: datetime) -> list[FlagInfo]:
    rows = (
        await session.execute(
            select(Flag, Patient.code)
            .join(Patient, Patient.id == Flag.patient_id)
            .where(Flag.status == "resolved", Flag.resolved_at >= since)
            .order_by(Flag.resolved_at, Flag.id)
        )
    ).all()
    return [_info(f, code) for f, code in rows]


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
        code = await _code(session, int(payload.get("patient_id", 0)))
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
