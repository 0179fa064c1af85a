"""What a flag can be and how escalation is set (DESIGN §2.6): the trigger sources; the labels of
the sources and of the kernel's severities, categories and statuses (`bot/core/vocabulary.py`);
the rules of content/rules/escalation.yaml with their content check; and the running workflow
configured from them (settings, words, rules).

A missing label never costs a flag: it shows the key in plain words and is logged once.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from bot.core.clinical import flag_category
from bot.core.vocabulary import FLAG_SEVERITIES, Category, FlagStatus, Severity
from bot.platform.config import Settings
from bot.platform.content import DEFAULT_CONTENT_DIR, Content, get_content

log = logging.getLogger(__name__)

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
        if Severity(severity) >= self.alert_from:
            return True
        return severity == Severity.MODERATE and category in self.alert_moderate_categories


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
        if sev not in FLAG_SEVERITIES:
            out.append(("rules/escalation.yaml", 0, f"{name}: unknown severity {sev!r}"))
    for i, category in enumerate(r.card.alert_moderate_categories):
        if not Category.known(category):
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
    root = Path(content_dir)
    out: list[tuple[str, int, str]] = []
    for file, cat in _rule_categories(root):
        if not Category.known(flag_category(cat)):
            out.append((file, 0, f"category {cat!r} is not a flag category (one of {', '.join(Category)})"))
    wanted = {"category": list(Category), "severity": FLAG_SEVERITIES, "status": list(FlagStatus), "source": sources(root)}
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


# -- the running workflow: settings, words and rules --------------------------------------------


@dataclass
class Workflow:
    settings: Settings
    content: Content
    rules: EscalationRules

    @property
    def lang(self) -> str:
        return self.settings.default_language

    @property
    def zone(self) -> str:
        return self.settings.default_timezone

    @property
    def group(self) -> int | None:
        return self.settings.counselor_chat_id


def build_workflow(settings: Settings, content: Content | None = None) -> Workflow:
    """The workflow for these settings and words (escalation's `install` provides the process's
    one on the hub; tests build their own)."""
    content = content or get_content(settings.content_dir)
    return Workflow(settings, content, load_rules(content.root))
