"""Assessment rules (`content/rules/assessments.yaml`), pure: scoring an instrument's answers
(total, domains, band, the flags its rules raise) and when an assessment is next due. Schemas and
loading are the kernel's (`bot.core.clinical`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from bot.core.clinical import (
    WEEKDAYS,
    Cadence,
    FlagRequest,
    Instrument,
    InstrumentRules,
    by_severity,
    flag_request,
    holds,
    most_severe_per_category,
)

__all__ = ["AssessmentScore", "next_assessment_date", "score_assessment"]


@dataclasses.dataclass(frozen=True, slots=True)
class AssessmentScore:
    instrument: str
    total: int
    domains: Mapping[str, int]
    band: str | None
    band_label: str | None
    triggered: tuple[FlagRequest, ...]
    complete: bool = True

    @property
    def crisis(self) -> bool:
        """True when the crisis flow must start now (e.g. PHQ-9 item 9 above zero)."""
        return any(flag.crisis for flag in self.triggered)

    @property
    def flags(self) -> tuple[FlagRequest, ...]:
        """One flag per category: the most severe rule that matched."""
        return most_severe_per_category(self.triggered)


def score_assessment(
    instrument: Instrument,
    answers: Mapping[str, int],
    rules: InstrumentRules | None = None,
    *,
    partial: bool = False,
) -> AssessmentScore:
    """Score answers (item id -> chosen option value) of an instrument.

    ``rules`` defaults to the rules loaded with the instrument. With ``partial=True``
    unanswered items are allowed: item rules (PHQ-9 item 9) are checked, total and
    domain rules and the band wait for the last answer, so call it after every answer to
    start the crisis flow at once. Raises ``ValueError`` for an unknown item or option,
    or, unless partial, a missing answer."""
    rules = rules if rules is not None else instrument.rules
    item_scores: dict[str, int] = {}
    for item_id, value in answers.items():
        try:
            item = instrument.item(item_id)
        except KeyError:
            raise ValueError(f"{item_id!r} is not an item of {instrument.id}") from None
        option = item.option(value)
        if item.scored and item.kind != "text":
            if option.points is None:
                raise ValueError(f"option {value!r} of {item_id!r} has no score")
            item_scores[item_id] = option.points
    missing = [i.id for i in instrument.scored_items if i.id not in item_scores]
    if missing and not partial:
        raise ValueError(f"{instrument.id}: missing answers for {', '.join(missing)}")
    complete = not missing
    total = sum(item_scores.values())
    domains = {
        domain: sum(item_scores.get(i.id, 0) for i in instrument.scored_items if i.domain == domain)
        for domain in instrument.domains
    }
    facts: dict[str, Any] = {f"item.{k}": v for k, v in item_scores.items()}
    if complete:
        facts["total"] = total
        facts.update({f"domain.{d}": s for d, s in domains.items()})
    band = rules.band_for(total) if rules is not None and complete else None
    triggered = (
        [flag_request(r, total=total) for r in rules.flags if holds(r.when, facts)]
        if rules is not None
        else []
    )
    return AssessmentScore(
        instrument=instrument.id,
        total=total,
        domains=domains,
        band=band,
        band_label=instrument.band_label(band),
        triggered=by_severity(triggered),
        complete=complete,
    )


def next_assessment_date(cadence: Cadence, last_completed: date | None, today: date) -> date:
    """When an assessment is next due; it is due while this date is on or before today.

    Weekday cadence: the first such weekday after the last completion (or from today
    when never done). Every-N-days cadence: N days after the last one, or today."""
    if cadence.weekday is not None:
        target = WEEKDAYS.index(cadence.weekday)
        if last_completed is None:
            return today + timedelta(days=(target - today.weekday()) % 7)
        return last_completed + timedelta(days=(target - last_completed.weekday() - 1) % 7 + 1)
    if last_completed is None:
        return today
    assert cadence.every_days is not None
    return last_completed + timedelta(days=cadence.every_days)
