"""Typed text that no conversation is waiting for (issue 11, item 8).

The risk detector has already seen every message (handlers/safety.py, group -50) and found
nothing to act on when text gets here. What is left gets a short, fitting answer:
- words of distress ("I'm so tired of everything", "today sucks", "I feel awful"): one reflective
  line and the toolbox;
- thanks: a warm word;
- a conversation waiting for a button (today's check-in, a questionnaire, a safety question):
  a pointer back to it;
- anything else: what the bot can do.

Distress comes first: a person who writes that they feel awful is not told to tap a button.
Patterns are clinical wording, so they live in `content/rules/free_text.yaml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.assessments.models import AssessmentResult
from bot.checkins.models import CheckinEntry
from bot.core.people import PatientInfo
from bot.platform.clock import local_date
from bot.platform.content import DEFAULT_CONTENT_DIR
from bot.safety.models import SafetyCheck

RULES_FILE = "rules/free_text.yaml"
MESSAGES_FILE = "messages/free_text.yaml"
Flow = Literal["safety_check", "checkin", "assessment"]
# In the order a pointer names them (a safety question first).
FLOWS: tuple[Flow, ...] = ("safety_check", "checkin", "assessment")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _compile(patterns: list[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


class ThanksRules(_Model):
    max_chars: int = Field(ge=1, le=500)
    patterns: list[str] = Field(min_length=1)

    @field_validator("patterns")
    @classmethod
    def _valid(cls, v: list[str]) -> list[str]:
        _compile(v)
        return v


class FreeTextRules(_Model):
    distress: dict[str, list[str]] = Field(min_length=1)
    thanks: ThanksRules
    assessment_open_hours: float = Field(gt=0, le=24 * 14)

    @field_validator("distress")
    @classmethod
    def _groups(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for group, patterns in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", group):
                raise ValueError(f"group name {group!r}: lower-case letters, digits and _")
            if not patterns:
                raise ValueError(f"group {group!r} has no patterns")
            _compile(patterns)
        return v


@dataclass(frozen=True)
class Matcher:
    rules: FreeTextRules
    distress: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]
    thanks: tuple[re.Pattern[str], ...]


def _read(root: Path) -> FreeTextRules:
    data = yaml.safe_load((root / RULES_FILE).read_text(encoding="utf-8"))
    return FreeTextRules.model_validate(data)


@lru_cache(maxsize=8)
def matcher(root: Path = DEFAULT_CONTENT_DIR) -> Matcher:
    r = _read(root)
    return Matcher(
        r,
        tuple((g, tuple(_compile(ps))) for g, ps in r.distress.items()),
        tuple(_compile(r.thanks.patterns)),
    )


@dataclass(frozen=True)
class Reading:
    kind: Literal["distress", "thanks", "other"]
    group: str | None = None  # the distress group whose line answers


def _normal(text: str) -> str:
    return " ".join(text.replace("’", "'").replace("‘", "'").split())


def read(text: str, root: Path = DEFAULT_CONTENT_DIR) -> Reading:
    """What a typed message is, for the answer: distress (with its group), thanks, or other."""
    m = matcher(root)
    t = _normal(text)
    for group, patterns in m.distress:
        if any(p.search(t) for p in patterns):
            return Reading("distress", group)
    if len(t) <= m.rules.thanks.max_chars and any(p.search(t) for p in m.thanks):
        return Reading("thanks")
    return Reading("other")


async def waiting_flow(session: AsyncSession, patient: PatientInfo, now: datetime, root: Path = DEFAULT_CONTENT_DIR) -> Flow | None:
    """The conversation waiting for one of this patient's buttons, if any (FLOWS order)."""
    asked = await session.execute(
        select(SafetyCheck.id).where(SafetyCheck.patient_id == patient.id, SafetyCheck.answer.is_(None)).limit(1)
    )
    if asked.first() is not None:
        return "safety_check"
    today = local_date(now, patient.timezone)
    checkin = await session.execute(
        select(CheckinEntry.id).where(
            CheckinEntry.patient_id == patient.id, CheckinEntry.local_date == today, CheckinEntry.step.is_not(None)
        )
    )
    if checkin.first() is not None:
        return "checkin"
    since = now - timedelta(hours=matcher(root).rules.assessment_open_hours)
    assessment = await session.execute(
        select(AssessmentResult.id)
        .where(
            AssessmentResult.patient_id == patient.id,
            AssessmentResult.status == "open",
            AssessmentResult.step.is_not(None),
            AssessmentResult.started_at >= since,
        )
        .limit(1)
    )
    if assessment.first() is not None:
        return "assessment"
    return None


def check_content(root: Path) -> list[tuple[str, int, str]]:
    """The rules load, and every language has a line for every distress group and flow."""
    try:
        rules = _read(root)
    except FileNotFoundError:
        return [(RULES_FILE, 0, "missing")]
    except (ValidationError, yaml.YAMLError, re.error) as exc:
        return [(RULES_FILE, 0, str(exc).replace("\n", "; "))]
    problems: list[tuple[str, int, str]] = []
    for lang_dir in sorted(p for p in root.iterdir() if (p / "messages").is_dir()):
        f = lang_dir / MESSAGES_FILE
        if not f.exists():
            problems.append((f"{lang_dir.name}/{MESSAGES_FILE}", 0, "missing"))
            continue
        doc = (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("free_text") or {}
        wanted = [f"distress.{g}" for g in rules.distress] + [f"in_flow.{flow}" for flow in FLOWS]
        wanted += ["distress_offer", "sos_button", "thanks"]
        for key in wanted:
            node: object = doc
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, str) or not node.strip():
                problems.append((f"{lang_dir.name}/{MESSAGES_FILE}", 0, f"free_text.{key} is missing"))
    return problems

