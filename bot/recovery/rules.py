"""Rules for relapse prevention (`content/rules/sos.yaml`): schema, loading and validation; and
the pure choice of the day's tip (the tips are `bot.recovery.library`'s)."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.core.vocabulary import FlagSeverity
from bot.recovery.library import Tip

RULES_FILE = "rules/sos.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FollowupFlagRule(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    at_least: int | None = Field(default=None, ge=0, le=10)
    compared: Literal["higher", "same"] | None = None
    severity: FlagSeverity
    reason: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one(self) -> FollowupFlagRule:
        if (self.at_least is None) == (self.compared is None):
            raise ValueError("give either at_least or compared")
        return self

    def matches(self, rating: int, previous: int | None) -> bool:
        if self.at_least is not None:
            return rating >= self.at_least
        if previous is None:
            return False
        return rating > previous if self.compared == "higher" else rating == previous


class UrgeFollowupRules(_Model):
    delay_minutes: float = Field(gt=0, le=24 * 60)
    high_rating: int = Field(ge=1, le=10)
    flags: list[FollowupFlagRule] = Field(default_factory=list)

    @property
    def delay(self) -> timedelta:
        return timedelta(minutes=self.delay_minutes)

    def flag_for(self, rating: int, previous: int | None) -> FollowupFlagRule | None:
        return next((r for r in self.flags if r.matches(rating, previous)), None)


class TalkRules(_Model):
    severity: FlagSeverity
    reason: str = Field(min_length=1, max_length=200)


class TipRules(_Model):
    default_time: time
    no_repeat_days: int = Field(ge=1, le=365)
    halt_lookback_days: int = Field(ge=1, le=90)
    halt_min_reports: int = Field(ge=1, le=90)


class PlanRules(_Model):
    max_entries_per_section: int = Field(ge=1, le=50)
    max_entry_chars: int = Field(ge=20, le=3000)
    default_phone_region: str

    @field_validator("default_phone_region")
    @classmethod
    def _region(cls, v: str) -> str:
        import phonenumbers  # imported when the rules are read, not with the module (start-up time)

        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region code such as US or GB")
        return v.upper()


class SosRules(_Model):
    urge_followup: UrgeFollowupRules
    talk_request: TalkRules
    tips: TipRules
    plan: PlanRules


def load_sos_rules(content_dir: Path) -> SosRules:
    """The rules of this content directory, validated and cached per directory (raises
    ValueError when broken)."""
    return _load(Path(content_dir).resolve())


@lru_cache(maxsize=8)
def _load(root: Path) -> SosRules:
    data = yaml.safe_load((root / RULES_FILE).read_text(encoding="utf-8"))
    return SosRules.model_validate(data)


def check_sos_rules(root: Path) -> list[tuple[str, int, str]]:
    """Problems in `rules/sos.yaml` as (file, line, problem), for `iop-bot content check`."""
    path = root / RULES_FILE
    if not path.is_file():
        return [(RULES_FILE, 0, "file is missing")]
    try:
        SosRules.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        return [
            (RULES_FILE, 0, f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
            for e in exc.errors(include_url=False)
        ]
    except yaml.YAMLError as exc:
        return [(RULES_FILE, 0, f"YAML error: {exc}")]
    return []


def next_tip(
    tips: Sequence[Tip],
    recent_tip_ids: Sequence[str],
    preferred_tags: Collection[str] = (),
    rng_seed: int | str | None = None,
) -> Tip:
    """Pick today's tip.

    ``recent_tip_ids``: tips shown in the last 30 days, oldest first. They are never
    picked while another tip is available; when every tip was shown, the one shown
    longest ago is picked. Tips with any of ``preferred_tags`` come first. The same seed
    gives the same tip (e.g. ``f"{patient_id}:{local_date}"``)."""
    if not tips:
        raise ValueError("no tips to choose from")
    shown = set(recent_tip_ids)
    pool = [t for t in tips if t.id not in shown]
    if not pool:
        last_seen = {tip_id: i for i, tip_id in enumerate(recent_tip_ids)}
        oldest = min(last_seen[t.id] for t in tips)
        pool = [t for t in tips if last_seen[t.id] == oldest]
    wanted = set(preferred_tags)
    if wanted:
        pool = [t for t in pool if wanted.intersection(t.tags)] or pool
    pool.sort(key=lambda t: t.id)
    return random.Random(rng_seed).choice(pool)
