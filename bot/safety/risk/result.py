"""What the risk detector answers: a severity and a category per finding (the kernel's
`Severity` and `Category`, the subset it can answer declared here), and the result of one
message (its highest finding and the findings behind it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.vocabulary import Category, Severity

# What the detector answers, out of the kernel's vocabulary: it never answers low (a flag's
# lowest severity comes from check-in and assessment rules, never from words).
DETECTED_SEVERITIES: tuple[Severity, ...] = (Severity.NONE, Severity.MODERATE, Severity.HIGH, Severity.CRISIS)

# The categories it finds, in its tie-break order: on a tie of severity the first one wins
# (suicide first, craving last).
DETECTED_CATEGORIES: tuple[Category, ...] = (
    Category.SUICIDE_SELF_HARM,
    Category.OVERDOSE_MEDICAL,
    Category.HARM_TO_OTHERS,
    Category.ABUSE_VIOLENCE,
    Category.USE_DISCLOSURE,
    Category.SEVERE_CRAVING,
)


_PRIORITY: dict[Category, int] = {c: i for i, c in enumerate(DETECTED_CATEGORIES)}


def priority(category: Category) -> int:
    """Tie-break order: lower wins."""
    return _PRIORITY[category]


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
