"""Check-in rules (`content/rules/checkin.yaml`, `content/rules/milestones.yaml`, the milestone
texts in `content/<lang>/messages/milestones.yaml`): their schemas, loading and content check, and,
pure, the closing of a check-in (reply, notes, reflections, urge tools, flags), the flag for a
silent patient and the sobriety milestones reached. The rule language (conditions, flag rules) and
the check-in instrument are the kernel's (`bot.core.clinical`, `bot.core.rules_loader`)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, StrictInt, model_validator

from bot.core.clinical import (
    CHECKIN_INSTRUMENT,
    DEFAULT_CONTENT_DIR,
    FALLBACK_LANGUAGE,
    AnswerValue,
    Condition,
    FlagRequest,
    FlagRule,
    Html,
    Id,
    Instrument,
    Label,
    Model,
    PlainText,
    by_severity,
    flag_request,
    holds,
    is_number,
)
from bot.core.rules_loader import (
    FactSpec,
    KeyPath,
    Problem,
    Reader,
    instrument_files,
    loaded,
    pick_language,
    resolved,
)
from bot.core.vocabulary import FlagSeverity
from bot.platform.content import Content

__all__ = [
    "CheckinAnswers",
    "CheckinContent",
    "CheckinOutcome",
    "CheckinRules",
    "ClosingRule",
    "DaySummary",
    "MilestoneMessages",
    "MilestoneRules",
    "NoteRule",
    "SilentRule",
    "check_content",
    "checkin_content_for",
    "checkin_outcome",
    "load_checkin_content",
    "milestones_reached",
    "rule_ids",
    "silent_days_flag",
]

CHECKIN_RULES = "rules/checkin.yaml"
MILESTONE_RULES = "rules/milestones.yaml"


# ---------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------


class When(Model):
    when: Condition


class ClosingRule(Model):
    reply: Id
    when: Condition | None = None


class NoteRule(Model):
    id: Id
    when: Condition


class SilentRule(Model):
    id: Id
    after_days: int = Field(ge=1, le=365)
    severity: FlagSeverity
    category: Id
    reason: PlainText


class CheckinRules(Model):
    high_craving_threshold: StrictInt
    reminder_delay_hours: float = Field(gt=0, le=24)
    craving_item: Id = "craving"
    urge_tools: When | None = None
    closing: list[ClosingRule] = Field(min_length=1)
    notes: list[NoteRule] = Field(default_factory=list)
    # Lines of the closing that reflect the answers (low mood, loneliness, ...), in order of
    # priority; at most `reflections_max` lines, the closing reply itself counting as one
    # unless it is the default reply.
    reflections: list[NoteRule] = Field(default_factory=list)
    reflections_max: int = Field(default=2, ge=0, le=5)
    flags: list[FlagRule] = Field(default_factory=list)
    silent: list[SilentRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_reply(self) -> CheckinRules:
        if self.closing[-1].when is not None:
            raise ValueError("the last closing entry is the default: give it no `when`")
        return self

    @property
    def reminder_delay(self) -> timedelta:
        return timedelta(hours=self.reminder_delay_hours)


class MilestoneRules(Model):
    days: list[int] = Field(min_length=1)
    then_every_days: int | None = Field(default=None, ge=1)

    def is_milestone(self, days: int) -> bool:
        return days in self.days or self.is_repeating(days)

    def is_repeating(self, days: int) -> bool:
        """True for the milestones after the listed ones (every ``then_every_days``)."""
        last = self.days[-1]
        step = self.then_every_days
        return step is not None and days > last and (days - last) % step == 0


class MilestoneMessages(Model):
    messages: dict[int, Html] = Field(default_factory=dict)
    yearly: Html | None = None
    other: Html
    share_label: Label
    share_text: Html

    def text(self, days: int, rules: MilestoneRules | None = None) -> str:
        """The congratulation for ``days``, with ``{days}`` and ``{years}`` filled in."""
        years = days // 365
        yearly = days % 365 == 0 if rules is None else rules.is_repeating(days)
        if days in self.messages:
            template = self.messages[days]
        elif self.yearly is not None and yearly and years >= 1:
            template = self.yearly
        else:
            template = self.other
        return template.format(days=days, years=years)


class MilestoneMessagesFile(Model):
    """The shape of ``content/<lang>/messages/milestones.yaml``: one ``milestones`` key,
    so the texts sit under ``milestones.*`` among the other message keys."""

    milestones: MilestoneMessages


# ---------------------------------------------------------------------------------------
# Loaded content and its check
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckinContent:
    """The check-in's rules and the milestones, validated. Milestone texts fall back to English."""

    content_dir: Path
    rules: CheckinRules
    milestones: MilestoneRules
    milestone_messages_by_lang: Mapping[str, MilestoneMessages]

    def milestone_messages(self, lang: str | None = None) -> MilestoneMessages:
        return pick_language(self.milestone_messages_by_lang, lang)

    def milestone_text(self, days: int, lang: str | None = None) -> str:
        return self.milestone_messages(lang).text(days, self.milestones)


class _CheckinReader(Reader):
    """The check-in and milestone rules, checked against the check-in instrument of every
    language, and the milestone texts."""

    def run(self) -> tuple[CheckinContent | None, list[Problem]]:
        return self.result(self.build)

    def build(self) -> CheckinContent | None:
        checkin_rules = self.model(CHECKIN_RULES, CheckinRules)
        milestone_rules = self.model(MILESTONE_RULES, MilestoneRules)
        files = instrument_files(self.root)
        milestone_messages: dict[str, MilestoneMessages] = {}
        for lang in self.languages():
            rel = f"{lang}/messages/milestones.yaml"
            file = self.model(rel, MilestoneMessagesFile, required=lang == FALLBACK_LANGUAGE)
            if file is not None:
                milestone_messages[lang] = file.milestones
                self.check_milestone_messages(rel, file, milestone_rules)
        if checkin_rules is not None:
            self.check_checkin_rules(checkin_rules, files)
        if milestone_rules is not None:
            self.check_milestone_rules(milestone_rules)
        if self.problems:
            return None
        assert checkin_rules and milestone_rules
        return CheckinContent(self.root, checkin_rules, milestone_rules, milestone_messages)

    def check_milestone_messages(
        self, rel: str, file: MilestoneMessagesFile, rules: MilestoneRules | None
    ) -> None:
        allowed = {"days", "years"}
        model = file.milestones
        for day, text in model.messages.items():
            path = ("milestones", "messages", day)
            self.check_placeholders(rel, path, text, allowed)
            if rules is not None and not rules.is_milestone(day):
                self.at(rel, path, f"{day} is not a milestone in rules/milestones.yaml")
        for key in ("yearly", "other", "share_text"):
            text = getattr(model, key)
            if text is not None:
                self.check_placeholders(rel, ("milestones", key), text, allowed)

    def check_checkin_rules(self, rules: CheckinRules, files: Mapping[str, Mapping[str, Instrument]]) -> None:
        rel = "rules/checkin.yaml"
        checkin: Instrument | None = files[FALLBACK_LANGUAGE].get(CHECKIN_INSTRUMENT)
        if checkin is None:
            return
        facts: dict[str, FactSpec] = {}
        for item in checkin.items:
            values = frozenset(o.value for o in item.options)
            if item.kind == "text":
                facts[f"{item.id}_written"] = FactSpec("bool")  # the patient typed something
                continue
            if item.kind == "multi":
                facts[item.id] = FactSpec("set", values)
            elif all(isinstance(v, int) for v in values):
                facts[item.id] = FactSpec("int", values, min(values), max(values))
            else:
                facts[item.id] = FactSpec("str", values)
        craving = facts.get(rules.craving_item)
        if craving is None or craving.kind != "int":
            self.at(
                rel, ("craving_item",), f"the check-in has no numeric item {rules.craving_item!r}"
            )
        else:
            facts["high_craving"] = FactSpec("bool")
            if not craving.low < rules.high_craving_threshold <= craving.high:
                self.at(
                    rel,
                    ("high_craving_threshold",),
                    f"threshold {rules.high_craving_threshold} is outside the possible range"
                    f" {craving.low + 1}–{craving.high} of {rules.craving_item!r}",
                )

        def check(path: KeyPath, condition: Condition) -> None:
            self.check_condition(rel, path, condition, facts, days_allowed=True)

        if rules.urge_tools is not None:
            check(("urge_tools", "when"), rules.urge_tools.when)
        for i, closing in enumerate(rules.closing):
            if closing.when is not None:
                check(("closing", i, "when"), closing.when)
            elif i < len(rules.closing) - 1:
                self.at(rel, ("closing", i), "entries after one without `when` are never used")
        for i, rule in enumerate(rules.flags):
            check(("flags", i, "when"), rule.when)
        for i, note in enumerate(rules.notes):
            check(("notes", i, "when"), note.when)
        self.unique(rel, [(("notes", i, "id"), n.id) for i, n in enumerate(rules.notes)], "note id")
        for i, note in enumerate(rules.reflections):
            check(("reflections", i, "when"), note.when)
        self.unique(
            rel, [(("reflections", i, "id"), n.id) for i, n in enumerate(rules.reflections)], "reflection id"
        )
        self.unique(
            rel,
            [(("silent", i, "after_days"), s.after_days) for i, s in enumerate(rules.silent)],
            "after_days",
        )
        for lang, instruments in files.items():
            model = instruments.get(CHECKIN_INSTRUMENT)
            if model is None:
                continue
            inst_rel = f"{lang}/instruments/{CHECKIN_INSTRUMENT}.yaml"
            for reply in dict.fromkeys(c.reply for c in rules.closing):
                if reply not in model.replies:
                    self.at(
                        inst_rel, ("replies",), f"no text for closing reply {reply!r} used in {rel}"
                    )
            for note in [*rules.notes, *rules.reflections]:
                if note.id not in model.notes:
                    self.at(inst_rel, ("notes",), f"no text for note {note.id!r} used in {rel}")

    def check_milestone_rules(self, rules: MilestoneRules) -> None:
        rel = "rules/milestones.yaml"
        previous = 0
        for i, day in enumerate(rules.days):
            if day <= previous:
                self.at(rel, ("days", i), "milestone days must be positive and increasing")
            previous = max(previous, day)


def checkin_content_for(content: Content) -> CheckinContent:
    """The check-in rules next to the messages of ``content``."""
    return load_checkin_content(content.root)


def load_checkin_content(content_dir: Path | None = None) -> CheckinContent:
    """Load and validate the check-in rules and milestones; cached per directory.

    Raises :class:`bot.core.rules_loader.ContentError` listing every problem when anything is
    wrong."""
    return _load_cached(resolved(content_dir or DEFAULT_CONTENT_DIR))


@lru_cache(maxsize=8)
def _load_cached(content_dir: Path) -> CheckinContent:
    return loaded(_CheckinReader(content_dir).run())


def check_content(content_dir: Path) -> list[Problem]:
    """Every problem in the check-in and milestone rules and texts, with file and line."""
    return _CheckinReader(Path(content_dir)).run()[1]


def rule_ids(reader: Reader) -> Iterator[tuple[str, KeyPath, str]]:
    """Where the check-in's flag rules are, for the check that their ids are unique."""
    rules = reader.model(CHECKIN_RULES, CheckinRules)
    if rules is not None:
        for i, rule in enumerate(rules.flags):
            yield CHECKIN_RULES, ("flags", i, "id"), rule.id
        for i, silent in enumerate(rules.silent):
            yield CHECKIN_RULES, ("silent", i, "id"), silent.id


# ---------------------------------------------------------------------------------------
# Scoring (pure)
# ---------------------------------------------------------------------------------------


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
    ``Instruments.checkin(lang).replies[reply]``."""
    notes: tuple[str, ...]
    """Ids of extra lines, texts in ``Instruments.checkin(lang).notes``."""
    offer_urge_tools: bool
    high_craving: bool
    flags: tuple[FlagRequest, ...]
    reflections: tuple[str, ...] = ()
    """Ids of the lines reflecting the answers (at most ``reflections_max`` with the reply),
    texts in ``Instruments.checkin(lang).notes``."""


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
    rule = max(matching, key=lambda r: (r.after_days, r.severity.rank()))
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
