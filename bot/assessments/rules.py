"""Assessment rules (`content/rules/assessments.yaml`): their schemas (cadence, bands, flag rules,
the suicide follow-up), loading and content check, the questionnaires (an instrument with its
rules attached), and, pure, scoring a questionnaire's answers (total, domains, band, the flags its
rules raise) and when an assessment is next due. The rule language (conditions, flag rules) and
the instruments are the kernel's (`bot.core.clinical`, `bot.core.rules_loader`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, StrictInt, model_validator

from bot.core.clinical import (
    CHECKIN_INSTRUMENT,
    DEFAULT_CONTENT_DIR,
    FALLBACK_LANGUAGE,
    WEEKDAYS,
    Condition,
    FlagRequest,
    FlagRule,
    Id,
    Instrument,
    Model,
    PlainText,
    Weekday,
    by_severity,
    flag_request,
    holds,
    most_severe_per_category,
)
from bot.core.rules_loader import (
    FactSpec,
    KeyPath,
    Problem,
    Reader,
    instrument_files,
    load_instruments,
    loaded,
    pick_instrument,
    resolved,
)
from bot.core.vocabulary import FlagSeverity
from bot.platform.content import Content

__all__ = [
    "AssessmentContent",
    "AssessmentRules",
    "AssessmentScore",
    "Band",
    "Cadence",
    "FollowupGrade",
    "FollowupQuestion",
    "InstrumentRules",
    "Questionnaire",
    "SuicideFollowup",
    "assessment_content_for",
    "check_content",
    "load_assessment_content",
    "next_assessment_date",
    "rule_ids",
    "score_assessment",
]

ASSESSMENT_RULES = "rules/assessments.yaml"


# ---------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------


class Cadence(Model):
    """Either a weekday (once a week on that day) or every N days."""

    weekday: Weekday | None = None
    every_days: int | None = Field(default=None, ge=1, le=366)

    @model_validator(mode="after")
    def _one(self) -> Cadence:
        if (self.weekday is None) == (self.every_days is None):
            raise ValueError("give either weekday or every_days")
        return self


class Band(Model):
    id: Id
    min: StrictInt
    max: StrictInt

    @model_validator(mode="after")
    def _order(self) -> Band:
        if self.min > self.max:
            raise ValueError("min is above max")
        return self


class FollowupQuestion(Model):
    """One yes/no question of the suicide follow-up (wording in the messages, by id)."""

    id: Id
    label: PlainText  # what counselors read in the flag's reason when the answer is yes
    if_no_skip_to: Id | None = None


class FollowupGrade(Model):
    """A grade of the follow-up: the first whose `when` holds (the last has none) sets the
    flag's severity and what the patient is told (`crisis`: the crisis reply; `same_day`:
    a counselor reaches out today, and 988)."""

    id: Id
    when: Condition | None = None
    severity: FlagSeverity
    reply: Literal["crisis", "same_day"]


class SuicideFollowup(Model):
    """A short graded follow-up after a positive suicide item (PHQ-9 item 9), in the style of
    the Columbia Protocol screener. Facts: ``followup.<question id>`` (true/false, absent when
    not asked) and ``item.<item id>``."""

    item: Id
    category: Id
    questions: list[FollowupQuestion] = Field(min_length=1)
    grades: list[FollowupGrade] = Field(min_length=1)
    reason: PlainText  # placeholders {item} (the item's id), {value} and {answers}
    all_no: PlainText  # {answers} when every question was answered no

    def question(self, question_id: str) -> FollowupQuestion | None:
        return next((q for q in self.questions if q.id == question_id), None)

    def next_question(self, answers: Mapping[str, bool]) -> FollowupQuestion | None:
        """The next question to ask, following the screener's branching; None when done."""
        i = 0
        while i < len(self.questions):
            q = self.questions[i]
            if q.id not in answers:
                return q
            if answers[q.id] is False and q.if_no_skip_to is not None:
                i = [x.id for x in self.questions].index(q.if_no_skip_to)
                continue
            i += 1
        return None

    def grade(self, answers: Mapping[str, bool]) -> FollowupGrade:
        facts = {f"followup.{k}": v for k, v in answers.items()}
        return next(g for g in self.grades if g.when is None or holds(g.when, facts))

    def describe(self, value: int, answers: Mapping[str, bool]) -> str:
        """The flag's reason: the item's value and the yes answers, never the patient's words."""
        said = ", ".join(q.label for q in self.questions if answers.get(q.id)) or self.all_no
        return self.reason.format(item=self.item, value=value, answers=said)


class InstrumentRules(Model):
    cadence: Cadence
    bands: list[Band] = Field(default_factory=list)
    flags: list[FlagRule] = Field(default_factory=list)
    suicide_followup: SuicideFollowup | None = None

    def band_for(self, total: int) -> str | None:
        for band in self.bands:
            if band.min <= total <= band.max:
                return band.id
        return None


class Questionnaire(Instrument):
    """An assessment instrument in one language, with its language-neutral rules attached."""

    rules: InstrumentRules | None = None


class AssessmentRules(Model):
    instruments: dict[Id, InstrumentRules]

    def for_instrument(self, instrument_id: str) -> InstrumentRules | None:
        return self.instruments.get(instrument_id)


# ---------------------------------------------------------------------------------------
# Loaded content and its check
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AssessmentContent:
    """The assessment rules and the questionnaires of every language, validated. Per-language
    getters fall back to English."""

    content_dir: Path
    rules: AssessmentRules
    questionnaires_by_lang: Mapping[str, Mapping[str, Questionnaire]]

    def instrument(self, instrument_id: str, lang: str | None = None) -> Questionnaire:
        return pick_instrument(self.questionnaires_by_lang, instrument_id, lang)

    def weekly(self, lang: str | None = None) -> Questionnaire:
        return self.instrument("weekly", lang)

    def phq9(self, lang: str | None = None) -> Questionnaire:
        return self.instrument("phq9", lang)

    def gad7(self, lang: str | None = None) -> Questionnaire:
        return self.instrument("gad7", lang)


class _AssessmentReader(Reader):
    """The assessment rules, checked against the instruments of every language."""

    def run(self) -> tuple[AssessmentRules | None, list[Problem]]:
        return self.result(self.build)

    def build(self) -> AssessmentRules | None:
        rules = self.model(ASSESSMENT_RULES, AssessmentRules)
        if rules is not None:
            self.check_assessment_rules(rules, instrument_files(self.root))
        return rules

    def check_assessment_rules(self, rules: AssessmentRules, files: Mapping[str, Mapping[str, Instrument]]) -> None:
        rel = "rules/assessments.yaml"
        base: Mapping[str, Instrument] = files[FALLBACK_LANGUAGE]
        for name in base:
            if name != CHECKIN_INSTRUMENT and name not in rules.instruments:
                self.at(rel, ("instruments",), f"no rules (cadence) for instrument {name!r}")
        for name, inst_rules in rules.instruments.items():
            path: KeyPath = ("instruments", name)
            if name not in base or name == CHECKIN_INSTRUMENT:
                self.at(
                    rel,
                    path,
                    f"no assessment instrument {name!r} in {FALLBACK_LANGUAGE}/instruments/",
                )
                continue
            instrument = base[name]
            low, high = instrument.total_range()
            facts: dict[str, FactSpec] = {"total": FactSpec("int", low=low, high=high)}
            for item in instrument.scored_items:
                lo, hi = item.score_range()
                facts[f"item.{item.id}"] = FactSpec("int", low=lo, high=hi)
            for domain in instrument.domains:
                lo, hi = instrument.total_range(domain)
                facts[f"domain.{domain}"] = FactSpec("int", low=lo, high=hi)
            self.check_bands(rel, path, inst_rules.bands, low, high)
            self.unique(
                rel,
                [((*path, "bands", i, "id"), b.id) for i, b in enumerate(inst_rules.bands)],
                "band id",
            )
            for lang, instruments in files.items():
                model = instruments.get(name)
                if model is None:
                    continue
                inst_rel = f"{lang}/instruments/{name}.yaml"
                for band in inst_rules.bands:
                    if band.id not in model.band_labels and (
                        lang == FALLBACK_LANGUAGE or model.band_labels
                    ):
                        self.at(inst_rel, ("band_labels",), f"no label for band {band.id!r}")
                for band_id in model.band_labels:
                    if band_id not in {b.id for b in inst_rules.bands}:
                        self.at(inst_rel, ("band_labels", band_id), f"no band {band_id!r} in {rel}")
            for i, rule in enumerate(inst_rules.flags):
                rule_path = (*path, "flags", i)
                self.check_condition(
                    rel, (*rule_path, "when"), rule.when, facts, days_allowed=False
                )
                if rule.action == "suicide_followup" and inst_rules.suicide_followup is None:
                    self.at(
                        rel,
                        (*rule_path, "action"),
                        f"action suicide_followup needs `suicide_followup` under {name!r}",
                    )
            if inst_rules.suicide_followup is not None:
                self.check_suicide_followup(
                    rel, (*path, "suicide_followup"), inst_rules.suicide_followup, facts
                )

    def check_suicide_followup(
        self, rel: str, path: KeyPath, followup: SuicideFollowup, facts: Mapping[str, FactSpec]
    ) -> None:
        if f"item.{followup.item}" not in facts:
            self.at(rel, (*path, "item"), f"no scored item {followup.item!r}")
        ids = [q.id for q in followup.questions]
        self.unique(rel, [((*path, "questions", i, "id"), q) for i, q in enumerate(ids)], "question id")
        for i, q in enumerate(followup.questions):
            target = q.if_no_skip_to
            if target is not None and (target not in ids or ids.index(target) <= i):
                self.at(
                    rel,
                    (*path, "questions", i, "if_no_skip_to"),
                    f"{target!r} is not a later question",
                )
        answer_facts = {f"followup.{q}": FactSpec("bool") for q in ids}
        self.unique(rel, [((*path, "grades", i, "id"), g.id) for i, g in enumerate(followup.grades)], "grade id")
        for i, grade in enumerate(followup.grades):
            last = i == len(followup.grades) - 1
            if grade.when is None and not last:
                self.at(rel, (*path, "grades", i), "only the last grade may have no `when`")
            elif grade.when is not None and last:
                self.at(rel, (*path, "grades", i, "when"), "the last grade needs no `when` (it is the default)")
            if grade.when is not None:
                self.check_condition(
                    rel, (*path, "grades", i, "when"), grade.when, answer_facts, days_allowed=False
                )
        for key in ("reason", "all_no"):
            try:
                getattr(followup, key).format(item="q", value=1, answers="x")
            except (KeyError, IndexError, ValueError) as exc:
                self.at(rel, (*path, key), f"bad placeholder: {exc}")
        wording = self.root / FALLBACK_LANGUAGE / "messages" / "assessments.yaml"
        try:
            texts = (yaml.safe_load(wording.read_text(encoding="utf-8")) or {})["assessments"]["followup"]["questions"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            texts = {}
        for i, q in enumerate(ids):
            if not isinstance(texts, dict) or not texts.get(q):
                self.at(
                    rel,
                    (*path, "questions", i, "id"),
                    f"no wording for {q!r} in {FALLBACK_LANGUAGE}/messages/assessments.yaml"
                    " (assessments.followup.questions)",
                )

    def check_bands(
        self, rel: str, path: KeyPath, bands: Sequence[Band], low: int, high: int
    ) -> None:
        if not bands:
            return
        order = sorted(range(len(bands)), key=lambda i: bands[i].min)
        expected = low
        for i in order:
            band = bands[i]
            if band.min != expected:
                gap = (
                    "overlaps the previous band"
                    if band.min < expected
                    else f"leaves {expected}–{band.min - 1} uncovered"
                )
                self.at(rel, (*path, "bands", i, "min"), f"band {band.id!r} {gap}")
            expected = band.max + 1
        last = bands[order[-1]]
        if last.max != high:
            self.at(
                rel,
                (*path, "bands", order[-1], "max"),
                f"the last band must end at the highest possible total, {high}",
            )


def assessment_content_for(content: Content) -> AssessmentContent:
    """The assessment rules and questionnaires next to the messages of ``content``."""
    return load_assessment_content(content.root)


def load_assessment_content(content_dir: Path | None = None) -> AssessmentContent:
    """Load and validate the assessment rules and the instruments they apply to; cached per
    directory.

    Raises :class:`bot.core.rules_loader.ContentError` listing every problem when anything is
    wrong."""
    return _load_cached(resolved(content_dir or DEFAULT_CONTENT_DIR))


@lru_cache(maxsize=8)
def _load_cached(content_dir: Path) -> AssessmentContent:
    instruments = load_instruments(content_dir)
    rules = loaded(_AssessmentReader(content_dir).run())
    questionnaires = {
        lang: {
            name: Questionnaire.model_validate({**dict(instrument), "rules": rules.for_instrument(name)})
            for name, instrument in by_id.items()
            if name in rules.instruments
        }
        for lang, by_id in instruments.instruments_by_lang.items()
    }
    return AssessmentContent(content_dir, rules, questionnaires)


def check_content(content_dir: Path) -> list[Problem]:
    """Every problem in the assessment rules, with file and line."""
    return _AssessmentReader(Path(content_dir)).run()[1]


def rule_ids(reader: Reader) -> Iterator[tuple[str, KeyPath, str]]:
    """Where the assessments' flag rules are, for the check that their ids are unique."""
    rules = reader.model(ASSESSMENT_RULES, AssessmentRules)
    if rules is not None:
        for name, inst_rules in rules.instruments.items():
            for i, rule in enumerate(inst_rules.flags):
                yield ASSESSMENT_RULES, ("instruments", name, "flags", i, "id"), rule.id


# ---------------------------------------------------------------------------------------
# Scoring (pure)
# ---------------------------------------------------------------------------------------


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
    instrument: Questionnaire,
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
