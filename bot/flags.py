"""Escalation flags: the one service every source raises flags through (DESIGN §2.6).

`raise_flag` keeps one open flag per patient and category: a new trigger adds an event and may
raise the severity; it never opens a second flag. Posting to the counselors' group goes through
the outbox in the same transaction. The lifecycle is open → claimed → resolved, each step with its
timestamp and an event (who, when). The group post carries severity, patient code, category, time
and flag id — never a name and never the patient's words — and is edited when the flag changes.

Re-notification, the follow-up after a resolved crisis/high flag and the daily digest run through
the sweeper. `install(svc)` wires the workflow to a running application (settings, content,
sweeper kinds, the sender's hook that records where each post landed).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.audit import audit
from bot.clock import ensure_utc, local_date, next_local_due
from bot.config import Settings
from bot.content import DEFAULT_CONTENT_DIR, Content, Html, get_content, register_checker
from bot.models import (
    Flag,
    FlagEvent,
    OnCall,
    OutboxMessage,
    Patient,
    RuntimeSetting,
    ScheduledItem,
    StaffRole,
)
from bot.outbox import Outgoing, enqueue
from bot.scheduler import cancel, schedule

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
    quiet_minutes: int = Field(default=10, ge=0)


class EscalationRules(_M):
    default_region: str = "us"
    confirm: ConfirmRules = ConfirmRules()
    talk: TalkRules = TalkRules()
    new_trigger: NewTriggerRules = NewTriggerRules()
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
        *((f"followup.severities[{i}]", s) for i, s in enumerate(r.followup.severities)),
    ):
        if sev not in SEVERITIES:
            out.append(("rules/escalation.yaml", 0, f"{name}: unknown severity {sev!r}"))
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
    from bot.checkins import flag_category  # the rules' older category names map here

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


register_checker("bot.flags", check_content)


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


def install(svc: Any) -> Workflow:
    """Wire the workflow to an application's services: sweeper kinds and the sender's hook."""
    wf = configure(svc.settings, svc.content)
    svc.sweeper.register(KIND_RENOTIFY, _renotify_item)
    svc.sweeper.register(KIND_FOLLOWUP, _followup_item)
    svc.sweeper.register(KIND_DIGEST, _digest_item)

    async def on_sent(row: OutboxMessage, message_id: int | None) -> None:
        if message_id is None or not row.ref or not row.ref.startswith("flag:"):
            return
        async with svc.db.transaction() as s:
            await record_sent(s, row.ref, row.chat_id, message_id, svc.clock.now())

    svc.sender.sent_hooks.append(on_sent)
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


@dataclass(frozen=True)
class FlagDetails:
    flag: FlagInfo
    first_name: str | None
    telegram_id: int
    language: str
    triggers: list[Trigger]
    checkins: list[str]


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
    )


async def _code(session: AsyncSession, patient_id: int) -> str:
    code = (await session.execute(select(Patient.code).where(Patient.id == patient_id))).scalar_one_or_none()
    return code or "?"


async def _locked(session: AsyncSession, flag_id: int) -> Flag | None:
    return (await session.execute(select(Flag).where(Flag.id == flag_id).with_for_update())).scalar_one_or_none()


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
    await _after_raise(session, flag, created, escalated, now, event)
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
    if created:
        await _post(session, wf, flag, now)
    elif escalated:
        await _edit_posts(session, wf, flag, now)
    # A new high or crisis trigger on a flag that is already open or claimed reaches the group
    # again (a reply to the flag's post), and re-notification starts over from it.
    urgent = not created and event.severity is not None and rank(event.severity) >= rank("high")
    renewed = urgent and await _notify_new_trigger(session, wf, flag, event, escalated, now)
    if not created and flag.status == "claimed" and flag.claimed_by is not None:
        # The counselor who holds the flag hears about every new trigger (no words, no name).
        info = _info(flag, await _code(session, flag.patient_id))
        text, kb = _render(info)
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
    if flag.status != "open":
        return
    if renewed:
        await _restart_renotify(session, wf, flag, now, event)
    elif created or escalated:
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
    info = _info(flag, await _code(session, flag.patient_id))
    text, kb = _render(info)
    head = c.t(
        "flags.new_trigger_group",
        lang,
        id=flag.id,
        code=info.patient_code,
        source=label(c, lang, "source", event.source or "?"),
        severity=Html(label(c, lang, "severity", event.severity or flag.severity)),
        time=now.astimezone(ZoneInfo(wf.zone)).strftime("%H:%M %Z"),
    )
    params = None
    if flag.group_message_id is not None:
        params = {"reply_parameters": {"message_id": flag.group_message_id, "allow_sending_without_reply": True}}
    await enqueue(
        session,
        Outgoing(wf.group, head + "\n\n" + text, params=params, reply_markup=kb),
        now=now,
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
        kb = {"inline_keyboard": [[{"text": f"{a.title()} #{info.id}", "callback_data": f"fl:{a}:{info.id}"}] for a in ("claim", "details", "resolve")]}
    return text, kb




def render_post(info: FlagInfo, *, content: Content | None = None, lang: str | None = None, zone: str | None = None) -> str:
    """The group post for a flag. Holds no name and no patient text, by construction."""
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")
    z = zone or (wf.zone if wf else "UTC")

    def t(at: datetime) -> str:
        return at.astimezone(ZoneInfo(z)).strftime("%a %d %b %H:%M %Z")

    if info.status == "resolved" and info.resolved_at is not None:
        state = c.t("flags.state.resolved", lang, name=info.resolved_by_name or "?", time=t(info.resolved_at))
    elif info.status == "claimed" and info.claimed_at is not None:
        state = c.t("flags.state.claimed", lang, name=info.claimed_by_name or "?", time=t(info.claimed_at))
    else:
        state = c.t("flags.state.open", lang)
    return c.t(
        "flags.post",
        lang,
        severity=Html(label(c, lang, "severity", info.severity)),
        id=info.id,
        code=info.patient_code,
        category=label(c, lang, "category", info.category),
        time=t(info.opened_at),
        state=state,
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


async def _post(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    if wf.group is None:
        log.warning("flags: COUNSELOR_CHAT_ID is not set; flag %s is not posted", flag.id)
        return
    info = _info(flag, await _code(session, flag.patient_id))
    text, kb = _render(info)
    await enqueue(
        session,
        Outgoing(wf.group, text, reply_markup=kb),
        now=now,
        dedup_key=f"flagpost:{flag.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:main",
    )


async def _edit_posts(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    """Show the flag's new state on every message that carries it."""
    info = _info(flag, await _code(session, flag.patient_id))
    text, kb = _render(info)
    for chat_id, message_id in flag.posts or []:
        await enqueue(
            session,
            Outgoing(chat_id, text, method="editMessageText", params={"message_id": message_id}, reply_markup=kb),
            now=now,
            ref=f"flagedit:{flag.id}:{flag.rev or 0}",
        )


async def record_sent(session: AsyncSession, ref: str, chat_id: int, message_id: int, now: datetime) -> None:
    """A message showing a flag was delivered: remember where, and catch it up if the flag moved on."""
    parts = ref.split(":")
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
        info = _info(flag, await _code(session, flag.patient_id))
        text, kb = _render(info)
        await enqueue(
            session,
            Outgoing(chat_id, text, method="editMessageText", params={"message_id": message_id}, reply_markup=kb),
            now=now,
            ref=f"flagedit:{flag.id}:{flag.rev or 0}",
        )


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
    if wf is None or flag is None or flag.status != "open":
        return
    stage = int(payload.get("stage", 1))
    if stage <= (flag.renotify_stage or 0):
        return
    info = _info(flag, await _code(session, flag.patient_id))
    c, lang = wf.content, wf.lang
    # A round started by a later trigger counts its minutes from that trigger.
    round_id = payload.get("round")
    suffix = f":t{round_id}" if round_id else ""
    try:
        since = ensure_utc(datetime.fromisoformat(str(payload["since"])))
    except (KeyError, ValueError):
        since = ensure_utc(flag.opened_at)
    minutes = int((now - since).total_seconds() // 60)
    oncall = await get_oncall(session)
    text, kb = _render(info)
    ref = f"flag:{flag.id}:{flag.rev or 0}:r{stage}{suffix}"
    if stage == 1:
        if wf.group is not None:
            if oncall is not None:
                mention = c.t("flags.mention", lang, id=oncall.telegram_id, name=oncall.name or str(oncall.telegram_id))
            elif await _say_no_oncall(session, wf, now):
                mention = c.t("flags.no_oncall", lang)
            else:
                mention = ""
            head = c.t("flags.repost", lang, minutes=minutes, mention=Html(mention)).rstrip()
            await enqueue(
                session, Outgoing(wf.group, head + "\n\n" + text, reply_markup=kb), now=now,
                dedup_key=f"flagrenotify:{flag.id}:1{suffix}", ref=ref,
            )
    else:
        head = c.t("flags.dm_alert", lang, minutes=minutes)
        for uid in await counselor_ids(session, wf.settings):
            await enqueue(
                session, Outgoing(uid, head + "\n\n" + text, reply_markup=kb), now=now,
                dedup_key=f"flagrenotify:{flag.id}:2{suffix}:{uid}", ref=ref,
            )
    flag.renotify_stage = stage
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="renotify", detail={"stage": stage}))


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
    from bot.roles import group_members

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
    flag.claimed_by_name = (actor_name or str(actor_id))[:64]
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
        flag.claimed_by_name = (actor_name or str(actor_id))[:64]
    flag.status = "resolved"
    flag.resolved_at = now
    flag.resolved_by = actor_id
    flag.resolved_by_name = (actor_name or str(actor_id))[:64]
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
    """Name, triggering texts and recent check-ins for one counselor's DM. Audited."""
    flag = await session.get(Flag, flag_id)
    if flag is None:
        return None
    patient = await session.get(Patient, flag.patient_id)
    if patient is None:
        return None
    events = (
        await session.execute(
            select(FlagEvent).where(FlagEvent.flag_id == flag_id, FlagEvent.kind == "trigger").order_by(FlagEvent.at, FlagEvent.id)
        )
    ).scalars()
    triggers = [Trigger(e.at, e.source, e.severity, e.reason, e.evidence) for e in events]
    lines = await _recent_checkins(session, patient.id)
    wf = _workflow
    if wf is not None:
        for provider in wf.detail_providers:
            try:
                lines += await provider(session, patient.id, wf.lang)
            except Exception:
                log.exception("flags: a details provider failed")
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="details", actor_id=actor_id))
    await audit(session, actor_id, "flag.details", f"flag:{flag.id}", {"patient": patient.code}, now=now)
    return FlagDetails(_info(flag, patient.code), patient.first_name, patient.telegram_id, patient.language, triggers, lines)


async def _recent_checkins(session: AsyncSession, patient_id: int, n: int = 7) -> list[str]:
    try:
        from bot.models import CheckinEntry  # type: ignore[attr-defined]
    except ImportError:
        return []
    wf = _workflow
    c = wf.content if wf else get_content()
    lang = wf.lang if wf else "en"
    try:
        rows = (
            await session.execute(
                select(CheckinEntry)
                .where(CheckinEntry.patient_id == patient_id, CheckinEntry.completed_at.is_not(None))
                .order_by(CheckinEntry.local_date.desc())
                .limit(n)
            )
        ).scalars()
        dash = "–"
        return [
            c.t(
                "flags.details_checkin",
                lang,
                date=r.local_date.isoformat(),
                mood=dash if r.mood is None else r.mood,
                craving=dash if r.craving is None else r.craving,
                use=r.use or dash,
            )
            for r in rows
        ]
    except Exception as exc:
        log.warning("flags: recent check-ins unavailable (%s)", type(exc).__name__)
        return []


EVIDENCE_SHOWN = 600  # characters; even fully escaped (×5) a trigger stays one message part


def _clip(text: str) -> str:
    """A trigger's words, short enough to fit, with no blank lines (messages split at those)."""
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    return text if len(text) <= EVIDENCE_SHOWN else text[:EVIDENCE_SHOWN].rstrip() + " …"


def render_details(d: FlagDetails, *, content: Content | None = None, lang: str | None = None, zone: str | None = None) -> str:
    """The Details DM: for one counselor only (it holds the name and the patient's words)."""
    wf = _workflow
    c = content or (wf.content if wf else get_content())
    lang = lang or (wf.lang if wf else "en")
    z = zone or (wf.zone if wf else "UTC")
    parts = [
        c.t(
            "flags.details_head",
            lang,
            id=d.flag.id,
            code=d.flag.patient_code,
            name=d.first_name or "–",
            severity=Html(label(c, lang, "severity", d.flag.severity)),
            category=label(c, lang, "category", d.flag.category),
        )
    ]
    for tr in d.triggers[-10:]:
        parts.append(
            c.t(
                "flags.details_trigger",
                lang,
                time=tr.at.astimezone(ZoneInfo(z)).strftime("%a %d %b %H:%M"),
                source=tr.source or "–",
                severity=tr.severity or "–",
                reason=tr.reason or "–",
                text=_clip(tr.evidence) if tr.evidence else c.t("flags.details_no_text", lang),
            )
        )
    if d.checkins:
        parts.append(c.t("flags.details_checkins", lang) + "\n" + "\n".join(d.checkins))
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
        await enqueue(session, Outgoing(wf.group, await build_digest(session, now)), now=now, dedup_key=item.key)
    await ensure_digest_scheduled(session, now)


def age_text(c: Content, lang: str, delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return c.t("flags.age_minutes", lang, n=minutes)
    if minutes < 48 * 60:
        return c.t("flags.age_hours", lang, n=minutes // 60)
    return c.t("flags.age_days", lang, n=minutes // (24 * 60))


async def build_digest(session: AsyncSession, now: datetime) -> str:
    """The daily digest for the group: open flags by age, silent patients, notable changes. No names."""
    wf = _workflow
    c = wf.content if wf else get_content()
    lang = wf.lang if wf else "en"
    rules = wf.rules if wf else EscalationRules()
    parts = [c.t("flags.digest_title", lang)]
    flags = await open_flags(session, limit=200)
    if flags:
        lines = [
            c.t(
                "flags.digest_flag",
                lang,
                id=f.id,
                severity=Html(label(c, lang, "severity", f.severity)),
                code=f.patient_code,
                category=label(c, lang, "category", f.category),
                age=age_text(c, lang, now - f.opened_at),
                state=label(c, lang, "status", f.status),
            )
            for f in flags
        ]
        parts.append(c.t("flags.digest_open", lang, n=len(flags)) + "\n" + "\n".join(lines))
    else:
        parts.append(c.t("flags.digest_none_open", lang))
    silent, rising, phq = await _trends(session, now, rules.digest)
    if silent:
        parts.append(c.t("flags.digest_silent", lang, days=rules.digest.silent_days, codes=", ".join(silent)))
    if rising:
        parts.append(c.t("flags.digest_craving", lang, codes=", ".join(rising)))
    if phq:
        parts.append(c.t("flags.digest_phq9", lang, codes=", ".join(phq)))
    if not (silent or rising or phq):
        parts.append(c.t("flags.digest_no_trends", lang))
    return "\n\n".join(parts)


async def _trends(session: AsyncSession, now: datetime, rules: DigestRules) -> tuple[list[str], list[str], list[str]]:
    """Patient codes: silent for N days, rising craving, PHQ-9 band up (best effort)."""
    silent: list[str] = []
    rising: list[str] = []
    phq: list[str] = []
    patients = (await session.execute(select(Patient.id, Patient.code, Patient.created_at).where(Patient.status == "active"))).all()
    try:
        from bot.models import CheckinEntry  # type: ignore[attr-defined]

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
        from bot.models import AssessmentResult  # type: ignore[attr-defined]

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
