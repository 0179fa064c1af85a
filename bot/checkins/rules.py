"""Check-in rules (`content/rules/checkin.yaml`, `content/rules/milestones.yaml`), pure: the
closing of a check-in (reply, notes, reflections, urge tools, flags), the flag for a silent patient
and the sobriety milestones reached. Schemas and loading are the kernel's (`bot.core.clinical`)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from bot.core.clinical import (
    SEVERITY_RANK,
    AnswerValue,
    CheckinRules,
    Condition,
    FlagRequest,
    MilestoneRules,
    by_severity,
    flag_request,
    holds,
    is_number,
)

__all__ = [
    "CheckinAnswers",
    "CheckinOutcome",
    "DaySummary",
    "checkin_outcome",
    "milestones_reached",
    "silent_days_flag",
]


@dataclasses.dataclass(frozen=True, slots=True)
class CheckinAnswers:
    """One day's check-in answers keyed by item id (``mood``, ``craving``, ``use``,
    ``halt``, ``sleep``, ``medication``, ``note``); values are option values, a list for
    ``halt``, text for the note, ``None`` or absent when skipped."""

    day: date
    values: Mapping[str, AnswerValue] = dataclasses.field(default_factory=dict)


DaySummary = CheckinAnswers
"""A past day's answers, same shape as :class:`CheckinAnswers` (one entry per check-in;
several on the same day are fine)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CheckinOutcome:
    reply: str
    """Id of the closing reply: ``lapse``, ``high_craving`` or ``default``; its text is
    ``Clinical.checkin(lang).replies[reply]``."""
    notes: tuple[str, ...]
    """Ids of extra lines, texts in ``Clinical.checkin(lang).notes``."""
    offer_urge_tools: bool
    high_craving: bool
    flags: tuple[FlagRequest, ...]
    reflections: tuple[str, ...] = ()
    """Ids of the lines reflecting the answers (at most ``reflections_max`` with the reply),
    texts in ``Clinical.checkin(lang).notes``."""


def _checkin_facts(rules: CheckinRules, values: Mapping[str, AnswerValue]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        facts[key] = value if isinstance(value, int | str) else tuple(value)
    craving = facts.get(rules.craving_item)
    if is_number(craving):
        facts["high_craving"] = craving >= rules.high_craving_threshold
    return facts


def checkin_outcome(
    rules: CheckinRules,
    today: CheckinAnswers,
    recent: Sequence[DaySummary] = (),
) -> CheckinOutcome:
    """Closing reply, extra notes, urge-tool offer and flags for a finished check-in.

    ``recent`` holds earlier check-ins (any order, at least the last 31 days is plenty);
    ``today`` is counted for ``on_days`` rules whether or not it is also in ``recent``."""
    today_facts = _checkin_facts(rules, today.values)
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for summary in recent:
        by_day[summary.day].append(_checkin_facts(rules, summary.values))
    by_day[today.day].append(today_facts)

    def applies(condition: Condition) -> bool:
        if condition.on_days is None:
            return holds(condition, today_facts)
        days = sum(
            1
            for offset in range(condition.on_days.of_last)
            if any(holds(condition, f) for f in by_day.get(today.day - timedelta(offset), ()))
        )
        return days >= condition.on_days.at_least

    reply = next((c.reply for c in rules.closing if c.when is None or applies(c.when)), "default")
    budget = rules.reflections_max - (0 if reply == rules.closing[-1].reply else 1)
    reflections = [n.id for n in rules.reflections if applies(n.when)]
    return CheckinOutcome(
        reply=reply,
        notes=tuple(n.id for n in rules.notes if applies(n.when)),
        offer_urge_tools=rules.urge_tools is not None and applies(rules.urge_tools.when),
        high_craving=bool(today_facts.get("high_craving", False)),
        flags=by_severity([flag_request(r) for r in rules.flags if applies(r.when)]),
        reflections=tuple(reflections[: max(0, budget)]),
    )


def silent_days_flag(rules: CheckinRules, days_since_last_checkin: int) -> FlagRequest | None:
    """The flag for a patient silent this many days (the longest matching rule), if any."""
    matching = [r for r in rules.silent if days_since_last_checkin >= r.after_days]
    if not matching:
        return None
    rule = max(matching, key=lambda r: (r.after_days, SEVERITY_RANK[r.severity]))
    return flag_request(rule, days=days_since_last_checkin)


def milestones_reached(rules: MilestoneRules, previous_days: int, current_days: int) -> list[int]:
    """Milestones passed when the streak goes from ``previous_days`` to ``current_days``:
    every milestone m with previous_days < m <= current_days, ascending. A jump (a sobriety
    date set a year back) returns all of them; going down returns none."""
    if current_days <= previous_days:
        return []
    low = max(previous_days, 0)
    reached = [d for d in rules.days if low < d <= current_days]
    step = rules.then_every_days
    if step is not None:
        last = rules.days[-1]
        k = max(1, (low - last) // step + 1)
        while last + k * step <= current_days:
            reached.append(last + k * step)
            k += 1
    return reached
