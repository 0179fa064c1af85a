"""What the risk detector answers: a severity and a category per finding, and the result of one
message (its highest finding and the findings behind it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    NONE = "none"
    MODERATE = "moderate"
    HIGH = "high"
    CRISIS = "crisis"

    def rank(self) -> int:
        return _SEVERITY_RANK[self.value]

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() < other.rank()
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() <= other.rank()
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() > other.rank()
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() >= other.rank()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


_SEVERITY_RANK = {"none": 0, "moderate": 1, "high": 2, "crisis": 3}


class Category(StrEnum):
    SUICIDE_SELF_HARM = "suicide_self_harm"
    OVERDOSE_MEDICAL = "overdose_medical"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE_VIOLENCE = "abuse_violence"
    USE_DISCLOSURE = "use_disclosure"
    SEVERE_CRAVING = "severe_craving"

    def priority(self) -> int:
        """Tie-break order: lower wins (suicide first, craving last)."""
        return _CATEGORY_ORDER.index(self.value)


_CATEGORY_ORDER = [c.value for c in Category]


@dataclass(frozen=True)
class Match:
    category: Category
    severity: Severity
    rule_id: str
    evidence: str
    uncertain: bool = False

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category.value,
            "severity": self.severity.value,
            "rule": self.rule_id,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RiskResult:
    severity: Severity
    category: Category | None
    matches: tuple[Match, ...]
    uncertain: bool

    @property
    def flagged(self) -> bool:
        """High or crisis: what must reach a counselor quickly."""
        return self.severity >= Severity.HIGH

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "category": self.category.value if self.category else None,
            "uncertain": self.uncertain,
            "matches": [m.to_dict() for m in self.matches],
        }


NO_RISK = RiskResult(Severity.NONE, None, (), False)
