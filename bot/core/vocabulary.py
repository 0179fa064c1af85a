"""The words every area shares for a concern: how severe it is, what it is about, and where a
flag stands. Stored in the database and written in content as the same strings (a `StrEnum`
equals its value), so `Severity.HIGH == "high"`.

- `Severity`: none < low < moderate < high < crisis, one rank, compared by it. A flag is low to
  crisis (`FLAG_SEVERITIES`, `FlagSeverity` for content); the risk detector never answers low
  (its subset is declared with it, `bot/safety/risk/result.py`).
- `Category`: every category a flag can have, most serious first (the order flags, labels and
  combined crisis resources list them in). The detector finds the first six and breaks its ties
  in that order (`bot/safety/risk/result.py`).
- `FlagStatus`: open → claimed → resolved (the moves between them: `bot/escalation/lifecycle.py`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import PlainValidator


class _Words(StrEnum):
    @classmethod
    def known(cls, value: object) -> bool:
        """Whether a stored or written string is one of these words."""
        return isinstance(value, str) and value in cls._value2member_map_


class Severity(_Words):
    NONE = "none"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    CRISIS = "crisis"

    def rank(self) -> int:
        """0 for none up to 4 for crisis."""
        return _RANK[self]

    def lower(self) -> Severity:
        """One step down (none stays none)."""
        return _BY_RANK[max(self.rank() - 1, 0)]

    def __lt__(self, other: object) -> bool:
        r = _rank(other)
        return NotImplemented if r is None else self.rank() < r

    def __le__(self, other: object) -> bool:
        r = _rank(other)
        return NotImplemented if r is None else self.rank() <= r

    def __gt__(self, other: object) -> bool:
        r = _rank(other)
        return NotImplemented if r is None else self.rank() > r

    def __ge__(self, other: object) -> bool:
        r = _rank(other)
        return NotImplemented if r is None else self.rank() >= r

    __hash__ = str.__hash__


_BY_RANK: tuple[Severity, ...] = tuple(Severity)
_RANK: dict[str, int] = {s: i for i, s in enumerate(_BY_RANK)}


def _rank(other: object) -> int | None:
    """The rank of a severity or of its stored string (an unknown string is a ValueError);
    None for anything else (the comparison is then not supported)."""
    if not isinstance(other, str):
        return None
    try:
        return _RANK[other]  # a member hashes and compares as its string
    except KeyError:
        raise ValueError(f"{other!r} is not a severity") from None


# The severities a flag can have: anything but none.
FLAG_SEVERITIES: tuple[Severity, ...] = _BY_RANK[1:]


def flag_severity(value: object) -> Severity:
    """A flag's severity from content or code; ValueError for anything else (none included)."""
    if isinstance(value, str) and value in FLAG_SEVERITIES:
        return Severity(value)
    raise ValueError(f"a flag's severity is one of {', '.join(FLAG_SEVERITIES)}, not {value!r}")


# A rule's or a setting's severity in content: one of FLAG_SEVERITIES.
FlagSeverity = Annotated[Severity, PlainValidator(flag_severity)]


class Category(_Words):
    SUICIDE_SELF_HARM = "suicide_self_harm"
    OVERDOSE_MEDICAL = "overdose_medical"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE_VIOLENCE = "abuse_violence"
    USE_DISCLOSURE = "use_disclosure"
    SEVERE_CRAVING = "severe_craving"
    DEPRESSION = "depression"
    ANXIETY = "anxiety"
    RECOVERY_RISK = "recovery_risk"
    RECOVERY_SUPPORT = "recovery_support"
    MEDICATION = "medication"
    MISSED_CHECKINS = "missed_checkins"
    URGE_FOLLOWUP = "urge_followup"
    TALK_REQUEST = "talk_request"
    MISSED_SESSIONS = "missed_sessions"

    def order(self) -> int:
        """Its place in the list, most serious first."""
        return _CATEGORY_ORDER[self]


_CATEGORY_ORDER: dict[Category, int] = {c: i for i, c in enumerate(Category)}


class FlagStatus(_Words):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
