"""Clinical content and rules: schemas, loading, validation, and the rule language (conditions,
flag requests) the areas' pure rules use.

The clinical content shared by several areas lives in YAML under ``content/``:

- ``content/<lang>/instruments/*.yaml``: check-in, weekly check, PHQ-9, GAD-7 (and any
  instrument added later), each a list of items with button options;
- ``content/<lang>/messages/milestones.yaml``;
- ``content/rules/{assessments,checkin,milestones}.yaml``: language-neutral rules.

Nothing here touches the database or Telegram. ``load_clinical`` validates and caches the
content; ``check_content`` lists every problem with its file and line, for start-up and
the command line. Scoring lives with its area: ``bot.checkins.rules`` (closing of a check-in,
silent patients, milestones), ``bot.assessments.rules`` (scores, cadence), ``bot.recovery.rules``
(the day's tip). Content only one area reads is that area's: tips and exercises are
``bot.recovery.library``'s, crisis resources ``bot.safety.crisis``'s, read with the same :class:`Reader` (file and line for every problem).
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bot.platform.content import Content

__all__ = [
    "DEFAULT_CONTENT_DIR",
    "FALLBACK_LANGUAGE",
    "SEVERITY_RANK",
    "WEEKDAYS",
    "AnswerValue",
    "AssessmentRules",
    "Cadence",
    "CheckinRules",
    "Clinical",
    "Condition",
    "ContentError",
    "FlagRequest",
    "FlagRule",
    "FollowupGrade",
    "FollowupQuestion",
    "Instrument",
    "Model",
    "Reader",
    "InstrumentRules",
    "Item",
    "MilestoneMessages",
    "MilestoneRules",
    "Option",
    "Problem",
    "Severity",
    "SuicideFollowup",
    "by_severity",
    "check_content",
    "clear_cache",
    "clinical_for",
    "flag_category",
    "flag_request",
    "holds",
    "is_number",
    "load_clinical",
    "loaded",
    "pick_language",
    "resolved",
    "most_severe_per_category",
]

DEFAULT_CONTENT_DIR = Path(__file__).resolve().parents[2] / "content"
FALLBACK_LANGUAGE = "en"
LABEL_MAX_CHARS = 30
TEXT_MAX_CHARS = 3000
REQUIRED_INSTRUMENTS = ("checkin", "weekly", "phq9", "gad7")
CHECKIN_INSTRUMENT = "checkin"

Severity = Literal["crisis", "high", "moderate", "low"]
SEVERITY_RANK: Mapping[str, int] = {"low": 1, "moderate": 2, "high": 3, "crisis": 4}
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
Domain = Literal["use", "risk", "protective"]

AnswerValue = int | str | Sequence[str] | None
Problem = tuple[str, int, str]

_LANG_DIR_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$", re.IGNORECASE)
_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_TAG_RE = re.compile(r"<(/?)([^<>/\s]*)>")
_ENTITY_RE = re.compile(r"&(?:amp|lt|gt|quot|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});")


# ---------------------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------------------


def _check_html(text: str) -> str:
    """Telegram HTML subset: only <b> and <i>, balanced; & < > written as entities."""
    if not text.strip():
        raise ValueError("text is empty")
    if len(text) > TEXT_MAX_CHARS:
        raise ValueError(f"text is {len(text)} characters; the limit is {TEXT_MAX_CHARS}")
    open_tags: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            match = _TAG_RE.match(text, i)
            if match is None or match.group(2) not in ("b", "i"):
                raise ValueError("only <b> and <i> tags are allowed; write a plain < as &lt;")
            closing, name = match.groups()
            if closing:
                if not open_tags or open_tags[-1] != name:
                    raise ValueError(f"</{name}> does not close an open <{name}>")
                open_tags.pop()
            else:
                open_tags.append(name)
            i = match.end()
        elif ch == ">":
            raise ValueError("write a plain > as &gt;")
        elif ch == "&":
            match = _ENTITY_RE.match(text, i)
            if match is None:
                raise ValueError("write a plain & as &amp;")
            i = match.end()
        else:
            i += 1
    if open_tags:
        raise ValueError(f"<{open_tags[-1]}> is not closed")
    return text


def _check_label(text: str) -> str:
    if not text.strip():
        raise ValueError("button label is empty")
    if len(text) > LABEL_MAX_CHARS:
        raise ValueError(f"button label is {len(text)} characters; the limit is {LABEL_MAX_CHARS}")
    if any(ch in text for ch in "<>&"):
        raise ValueError("button labels are plain text: no <, > or &")
    if "\n" in text:
        raise ValueError("button labels fit on one line")
    return text


def _check_local_text(value: str | dict[str, str]) -> str | dict[str, str]:
    if isinstance(value, str):
        return _check_html(value)
    if not value:
        raise ValueError("give the text, or a mapping of language to text")
    for lang, text in value.items():
        if not _LANG_DIR_RE.match(lang):
            raise ValueError(f"{lang!r} is not a language code")
        _check_html(text)
    return value


def _check_scalar(value: Any) -> bool | int | str:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str) and _ID_RE.match(value):
        return value
    raise ValueError(
        f"expected a whole number, true/false, or a lowercase id such as no_use (got {value!r})"
    )


def _check_option_value(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _ID_RE.match(value):
        return value
    hint = " (quote yes/no/on/off in YAML, or use another id)" if isinstance(value, bool) else ""
    raise ValueError(
        f"option value must be a whole number or a lowercase id such as no_use{hint}"
        f" (got {value!r})"
    )


Id = Annotated[str, StringConstraints(pattern=_ID_RE.pattern)]
FactName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")]
Html = Annotated[str, AfterValidator(_check_html)]
Label = Annotated[str, AfterValidator(_check_label)]
LocalText = Annotated[str | dict[str, str], AfterValidator(_check_local_text)]
PlainText = Annotated[str, StringConstraints(min_length=1, max_length=300)]
OptionValue = Annotated[int | str, PlainValidator(_check_option_value)]
Scalar = Annotated[bool | int | str, PlainValidator(_check_scalar)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------
# Conditions (shared by every rule file)
# ---------------------------------------------------------------------------------------

_OPERATORS = (
    "equals",
    "not_equals",
    "at_least",
    "at_most",
    "above",
    "below",
    "between",
    "one_of",
    "includes",
)
_NUMERIC_OPERATORS = frozenset({"at_least", "at_most", "above", "below", "between"})


class OnDays(Model):
    """Count calendar days: the condition held on at least ``at_least`` of the last
    ``of_last`` days, today included."""

    at_least: int = Field(ge=1)
    of_last: int = Field(ge=1, le=31)

    @model_validator(mode="after")
    def _fits(self) -> OnDays:
        if self.at_least > self.of_last:
            raise ValueError("at_least cannot be more than of_last")
        return self


class Condition(Model):
    """``{field: F, <operator>: V}``, or ``{any: [...]}``, or ``{all: [...]}``."""

    field: FactName | None = None
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    at_least: StrictInt | None = None
    at_most: StrictInt | None = None
    above: StrictInt | None = None
    below: StrictInt | None = None
    between: tuple[StrictInt, StrictInt] | None = None
    one_of: list[Scalar] | None = None
    includes: Id | None = None
    any_of: list[Condition] | None = Field(default=None, alias="any")
    all_of: list[Condition] | None = Field(default=None, alias="all")
    on_days: OnDays | None = None

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        used = [name for name in _OPERATORS if getattr(self, name) is not None]
        groups = [group for group in (self.any_of, self.all_of) if group is not None]
        if groups:
            if self.field is not None or used:
                raise ValueError("use either `field` with one operator, or `any`/`all`")
            if len(groups) > 1:
                raise ValueError("use `any` or `all`, not both")
            if not groups[0]:
                raise ValueError("`any`/`all` needs at least one condition")
            return self
        if self.field is None:
            raise ValueError("a condition needs `field` and one operator, or `any`/`all`")
        if len(used) != 1:
            raise ValueError(f"a condition needs exactly one operator: {', '.join(_OPERATORS)}")
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError("between: the first number must not be above the second")
        if self.one_of is not None and not self.one_of:
            raise ValueError("one_of needs at least one value")
        return self

    @property
    def operator(self) -> tuple[str, Any]:
        for name in _OPERATORS:
            value = getattr(self, name)
            if value is not None:
                return name, value
        raise ValueError("condition has no operator")


# ---------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------


class Option(Model):
    value: OptionValue
    label: Label
    score: StrictInt | None = None
    exclusive: bool = False

    @property
    def points(self) -> int | None:
        """The option's score: ``score`` if given, else an integer ``value``."""
        if self.score is not None:
            return self.score
        return self.value if isinstance(self.value, int) else None


class Item(Model):
    id: Id
    kind: Literal["scale", "choice", "multi", "text"]
    prompt: Html
    options: list[Option] = Field(default_factory=list)
    domain: Domain | None = None
    scored: bool = True
    only_if: Id | None = None
    optional: bool = False
    skip_label: Label | None = None
    done_label: Label | None = None
    columns: int | None = Field(default=None, ge=1, le=8)

    @model_validator(mode="after")
    def _shape(self) -> Item:
        if self.kind == "text":
            if self.options:
                raise ValueError("a text item has no options")
        elif len(self.options) < 2:
            raise ValueError(f"a {self.kind} item needs at least 2 options")
        if self.kind == "scale" and not all(isinstance(o.value, int) for o in self.options):
            raise ValueError("scale options need whole-number values")
        if self.kind == "multi" and self.done_label is None:
            raise ValueError("a multi item needs done_label")
        if self.optional and self.skip_label is None:
            raise ValueError("an optional item needs skip_label")
        return self

    def option(self, value: Any) -> Option:
        for option in self.options:
            if _same(option.value, value):
                return option
        raise ValueError(f"{value!r} is not an option of item {self.id!r}")

    def score_range(self) -> tuple[int, int]:
        points = [o.points for o in self.options if o.points is not None]
        return (min(points), max(points)) if points else (0, 0)


class InstrumentFile(Model):
    """The shape of ``content/<lang>/instruments/<id>.yaml``."""

    id: Id
    title: Html
    intro: Html | None = None
    stem: Html | None = None
    attribution: Html | None = None
    closing: Html | None = None
    items: list[Item] = Field(min_length=1)
    band_labels: dict[Id, Label] = Field(default_factory=dict)
    replies: dict[Id, Html] = Field(default_factory=dict)
    notes: dict[Id, Html] = Field(default_factory=dict)
    texts: dict[Id, Html] = Field(default_factory=dict)


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


class FlagRule(Model):
    id: Id
    when: Condition
    severity: Severity
    category: Id
    reason: PlainText
    # crisis_flow: the crisis reply at once; suicide_followup: stop the questionnaire and ask
    # the instrument's `suicide_followup` questions, which grade the flag.
    action: Literal["crisis_flow", "suicide_followup"] | None = None


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
    severity: Severity
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


class Instrument(InstrumentFile):
    """An instrument in one language, with its language-neutral rules attached."""

    rules: InstrumentRules | None = None

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def visible_items(self, flags: Collection[str] = ()) -> list[Item]:
        """Items to ask, in order; ``only_if`` items only when the patient has that flag
        (e.g. ``{"mat"}``)."""
        return [i for i in self.items if i.only_if is None or i.only_if in flags]

    @property
    def scored_items(self) -> list[Item]:
        return [i for i in self.items if i.scored and i.kind != "text"]

    @property
    def domains(self) -> list[str]:
        seen: list[str] = []
        for item in self.scored_items:
            if item.domain is not None and item.domain not in seen:
                seen.append(item.domain)
        return seen

    def total_range(self, domain: str | None = None) -> tuple[int, int]:
        items = [i for i in self.scored_items if domain is None or i.domain == domain]
        ranges = [i.score_range() for i in items]
        return sum(r[0] for r in ranges), sum(r[1] for r in ranges)

    def band_label(self, band_id: str | None) -> str | None:
        return None if band_id is None else self.band_labels.get(band_id)


class AssessmentRules(Model):
    instruments: dict[Id, InstrumentRules]

    def for_instrument(self, instrument_id: str) -> InstrumentRules | None:
        return self.instruments.get(instrument_id)


# ---------------------------------------------------------------------------------------
# Check-in rules, milestones, tips, exercises, resources
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
    severity: Severity
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
# Results (plain values for the services)
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FlagRequest:
    """A flag a rule asks for; the flag service opens it or adds an event to the open
    flag of the same category."""

    rule_id: str
    severity: Severity
    category: str
    reason: str
    action: str | None = None
    details: Mapping[str, int | str] = dataclasses.field(default_factory=dict)

    @property
    def crisis(self) -> bool:
        return self.action == "crisis_flow" or self.severity == "crisis"


# Older rule files named categories in clinical words; the flag service's names for them.
_RENAMED_CATEGORIES: Mapping[str, str] = {
    "substance_use": "use_disclosure",
    "craving": "severe_craving",
    "disengagement": "missed_checkins",
    "suicide_risk": "suicide_self_harm",
    "self_harm": "suicide_self_harm",
}


def flag_category(category: str) -> str:
    """The flag service's category for a rule's category."""
    return _RENAMED_CATEGORIES.get(category, category)


# ---------------------------------------------------------------------------------------
# Loaded content
# ---------------------------------------------------------------------------------------

_T = TypeVar("_T")


def pick_language(available: Mapping[str, _T], lang: str | None) -> _T:
    if lang:
        if lang in available:
            return available[lang]
        base = lang.split("-")[0].split("_")[0].lower()
        if base in available:
            return available[base]
    return available[FALLBACK_LANGUAGE]


@dataclasses.dataclass(frozen=True)
class Clinical:
    """All clinical content, validated. Per-language getters fall back to English."""

    content_dir: Path
    assessment_rules: AssessmentRules
    checkin_rules: CheckinRules
    milestones: MilestoneRules
    languages: tuple[str, ...]
    instruments_by_lang: Mapping[str, Mapping[str, Instrument]]
    milestone_messages_by_lang: Mapping[str, MilestoneMessages]

    def instrument(self, instrument_id: str, lang: str | None = None) -> Instrument:
        available = {
            code: by_id[instrument_id]
            for code, by_id in self.instruments_by_lang.items()
            if instrument_id in by_id
        }
        if FALLBACK_LANGUAGE not in available:
            raise KeyError(instrument_id)
        return pick_language(available, lang)

    def checkin(self, lang: str | None = None) -> Instrument:
        return self.instrument("checkin", lang)

    def weekly(self, lang: str | None = None) -> Instrument:
        return self.instrument("weekly", lang)

    def phq9(self, lang: str | None = None) -> Instrument:
        return self.instrument("phq9", lang)

    def gad7(self, lang: str | None = None) -> Instrument:
        return self.instrument("gad7", lang)

    def milestone_messages(self, lang: str | None = None) -> MilestoneMessages:
        return pick_language(self.milestone_messages_by_lang, lang)

    def milestone_text(self, days: int, lang: str | None = None) -> str:
        return self.milestone_messages(lang).text(days, self.milestones)

class ContentError(Exception):
    """Content failed validation; ``problems`` lists (file, line, problem)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(f"{f}:{line}: {msg}" for f, line, msg in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"content has {len(self.problems)} problem(s): {shown}{more}")


def clinical_for(content: Content) -> Clinical:
    """The clinical content next to the messages of ``content``."""
    return load_clinical(content.root)


def load_clinical(content_dir: Path | None = None) -> Clinical:
    """Load and validate the clinical content; cached per directory.

    Raises :class:`ContentError` listing every problem when anything is wrong."""
    return _load_cached(resolved(content_dir or DEFAULT_CONTENT_DIR))


@lru_cache(maxsize=8)
def resolved(content_dir: Path | str) -> Path:
    # Asked on every check-in step; resolving a path costs system calls.
    return Path(content_dir).resolve()


def clear_cache() -> None:
    """Forget loaded content, so the next ``load_clinical`` reads the files again."""
    _load_cached.cache_clear()
    resolved.cache_clear()


def loaded(result: tuple[_T | None, Sequence[Problem]]) -> _T:
    """The value a reader built, or :class:`ContentError` with every problem."""
    value, problems = result
    if problems or value is None:
        raise ContentError(problems or [(".", 0, "content could not be loaded")])
    return value


@lru_cache(maxsize=8)
def _load_cached(content_dir: Path) -> Clinical:
    return loaded(_Loader(content_dir).run())


def check_content(content_dir: Path) -> list[Problem]:
    """Every problem in the clinical content as (file relative to ``content_dir``, line,
    problem). Line 0 means the whole file (e.g. a missing file). Empty when all is well."""
    return _Loader(Path(content_dir)).run()[1]


# ---------------------------------------------------------------------------------------
# Conditions and flags (pure; each area's rules.py scores with them)
# ---------------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _compare(operator: str, value: Any, target: Any) -> bool:
    if operator == "equals":
        return _same(value, target)
    if operator == "not_equals":
        return not _same(value, target)
    if operator == "one_of":
        return any(_same(value, t) for t in target)
    if operator == "includes":
        return not isinstance(value, str) and isinstance(value, Collection) and target in value
    if not is_number(value):
        return False
    if operator == "at_least":
        return value >= target
    if operator == "at_most":
        return value <= target
    if operator == "above":
        return value > target
    if operator == "below":
        return value < target
    if operator == "between":
        return target[0] <= value <= target[1]
    raise ValueError(f"unknown operator {operator!r}")


def holds(condition: Condition, facts: Mapping[str, Any]) -> bool:
    """The condition on one set of facts (``on_days`` is handled by the caller)."""
    if condition.any_of is not None:
        return any(holds(c, facts) for c in condition.any_of)
    if condition.all_of is not None:
        return all(holds(c, facts) for c in condition.all_of)
    assert condition.field is not None
    value = facts.get(condition.field)
    if value is None:
        return False
    operator, target = condition.operator
    return _compare(operator, value, target)


def most_severe_per_category(flags: Sequence[FlagRequest]) -> tuple[FlagRequest, ...]:
    """Keep the most severe flag of each category (first one on a tie), most severe first."""
    best: dict[str, FlagRequest] = {}
    for flag in flags:
        current = best.get(flag.category)
        if current is None or SEVERITY_RANK[flag.severity] > SEVERITY_RANK[current.severity]:
            best[flag.category] = flag
    return by_severity(best.values())


def by_severity(flags: Collection[FlagRequest]) -> tuple[FlagRequest, ...]:
    return tuple(sorted(flags, key=lambda f: -SEVERITY_RANK[f.severity]))


def flag_request(rule: FlagRule | SilentRule, **details: int | str) -> FlagRequest:
    return FlagRequest(
        rule_id=rule.id,
        severity=rule.severity,
        category=rule.category,
        reason=rule.reason,
        action=getattr(rule, "action", None),
        details=details,
    )


# ---------------------------------------------------------------------------------------
# Loading and checking
# ---------------------------------------------------------------------------------------

_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_M = TypeVar("_M", bound=BaseModel)
_Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class _FactSpec:
    kind: Literal["int", "str", "bool", "set"]
    values: frozenset[Any] = frozenset()
    low: int = 0
    high: int = 0


def _node_at(node: yaml.Node, path: Sequence[Any]) -> tuple[yaml.Node, list[str]]:
    """The deepest node along ``path`` and the path parts that matched; parts that match
    nothing (pydantic union tags, missing keys) are skipped."""
    matched: list[str] = []
    current = node
    for part in path:
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    current = value
                    matched.append(str(part))
                    break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(current.value):
                current = current.value[part]
                matched.append(str(part))
    return current, matched


def _duplicate_keys(node: yaml.Node) -> Iterator[tuple[int, str]]:
    seen_nodes: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen_nodes:
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        yield key.start_mark.line + 1, f"duplicate key {key.value!r}"
                    keys.add(key.value)
                stack.extend((key, value))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _placeholders(text: str) -> set[str]:
    names = set()
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None:
            names.add(name)
    return names


class Reader:
    """Reads content files into schemas, and records each problem with its file and line."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.nodes: dict[str, yaml.Node] = {}
        self.raw: dict[str, Any] = {}
        self.rule_ids: dict[str, str] = {}

    def add(self, rel: str, line: int, message: str) -> None:
        problem = (rel, line, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def at(self, rel: str, path: _Path, message: str) -> None:
        node = self.nodes.get(rel)
        if node is None:
            self.add(rel, 0, message)
            return
        found, _ = _node_at(node, path)
        where = ".".join(str(p) for p in path)
        self.add(rel, found.start_mark.line + 1, f"{where}: {message}" if where else message)

    def model(self, rel: str, cls: type[_M], *, required: bool = True) -> _M | None:
        path = self.root / rel
        if not path.is_file():
            if required:
                self.add(rel, 0, "file is missing")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.add(rel, 0, f"cannot read file: {exc}")
            return None
        try:
            node = yaml.compose(text, Loader=_YamlLoader)
            data = yaml.constructor.SafeConstructor().construct_document(node) if node else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 0
            self.add(rel, line, f"YAML syntax error: {exc.problem or exc.context}")
            return None
        except yaml.YAMLError as exc:
            self.add(rel, 0, f"YAML error: {exc}")
            return None
        if node is None or not isinstance(node, yaml.MappingNode):
            self.add(rel, 1, "the file must be a mapping of keys to values")
            return None
        self.nodes[rel] = node
        self.raw[rel] = data
        for line, message in _duplicate_keys(node):
            self.add(rel, line, message)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                found, matched = _node_at(node, error["loc"])
                loc = list(matched)
                if error["type"] == "missing" and error["loc"]:
                    loc.append(str(error["loc"][-1]))
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "missing":
                    message = "this field is missing"
                elif error["type"] == "extra_forbidden":
                    message = "unknown field (check its spelling)"
                where = ".".join(loc)
                self.add(
                    rel, found.start_mark.line + 1, f"{where}: {message}" if where else message
                )
            return None

    def languages(self) -> list[str]:
        """The language folders of the content; English always (its files are required)."""
        languages = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _LANG_DIR_RE.match(p.name)
        )
        if FALLBACK_LANGUAGE not in languages:
            languages.insert(0, FALLBACK_LANGUAGE)
        return languages

    def result(self, build: Callable[[], _T | None]) -> tuple[_T | None, list[Problem]]:
        """What ``build`` makes of the files, or None with every problem (sorted)."""
        if not self.root.is_dir():
            return None, [(".", 0, f"content directory not found: {self.root.name}")]
        value = build()
        self.problems.sort(key=lambda p: (p[0], p[1], p[2]))
        return (None, self.problems) if self.problems else (value, [])

    def unique(self, rel: str, values: Sequence[tuple[_Path, Any]], what: str) -> None:
        seen: set[Any] = set()
        for path, value in values:
            key = (type(value).__name__, value)
            if key in seen:
                self.at(rel, path, f"duplicate {what} {value!r}")
            seen.add(key)

    def check_placeholders(self, rel: str, path: _Path, text: str, allowed: set[str]) -> None:
        try:
            names = _placeholders(text)
        except ValueError as exc:
            self.at(rel, path, f"braces: {exc}; write a literal brace as {{{{ or }}}}")
            return
        unknown = sorted(names - allowed)
        if unknown:
            known = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
            self.at(rel, path, f"unknown placeholder {{{unknown[0]}}} (allowed: {known})")

    def rule_id(self, rel: str, path: _Path, rule_id: str) -> None:
        if rule_id in self.rule_ids:
            self.at(rel, path, f"duplicate rule id {rule_id!r} (also in {self.rule_ids[rule_id]})")
        else:
            self.rule_ids[rule_id] = rel

    def check_condition(
        self,
        rel: str,
        path: _Path,
        condition: Condition,
        facts: Mapping[str, _FactSpec],
        *,
        days_allowed: bool,
        top: bool = True,
    ) -> None:
        if condition.on_days is not None and (not days_allowed or not top):
            where = "here" if not days_allowed else "inside any/all"
            self.at(rel, (*path, "on_days"), f"on_days cannot be used {where}")
        for key, group in (("any", condition.any_of), ("all", condition.all_of)):
            for i, sub in enumerate(group or []):
                self.check_condition(
                    rel, (*path, key, i), sub, facts, days_allowed=days_allowed, top=False
                )
        if condition.field is None:
            return
        spec = facts.get(condition.field)
        if spec is None:
            known = ", ".join(sorted(facts))
            self.at(rel, (*path, "field"), f"unknown field {condition.field!r} (known: {known})")
            return
        operator, target = condition.operator
        op_path = (*path, operator)
        field = condition.field
        if operator in _NUMERIC_OPERATORS:
            if spec.kind != "int":
                self.at(rel, op_path, f"{operator} needs a numeric field; {field!r} is not")
                return
            numbers = list(target) if operator == "between" else [target]
            for number in numbers:
                if not spec.low <= number <= spec.high:
                    self.at(
                        rel,
                        op_path,
                        f"threshold {number} is outside the possible range"
                        f" {spec.low}–{spec.high} of {field!r}",
                    )
                    return
            if (operator == "above" and target >= spec.high) or (
                operator == "below" and target <= spec.low
            ):
                self.at(rel, op_path, f"{operator} {target} can never be true for {field!r}")
            return
        if operator == "includes":
            if spec.kind != "set":
                self.at(rel, op_path, f"includes needs a multi-select field; {field!r} is not")
            elif target not in spec.values:
                self.at(rel, op_path, f"{target!r} is not an option of {field!r}")
            return
        targets = list(target) if operator == "one_of" else [target]
        for value in targets:
            problem = self.value_problem(spec, field, value)
            if problem:
                self.at(rel, op_path, problem)
                return

    @staticmethod
    def value_problem(spec: _FactSpec, field: str, value: Any) -> str | None:
        if spec.kind == "set":
            return f"{field!r} is multi-select: use includes"
        if spec.kind == "bool":
            return None if isinstance(value, bool) else f"{field!r} is true or false"
        if spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{field!r} is a number"
            if not spec.low <= value <= spec.high:
                return (
                    f"threshold {value} is outside the possible range"
                    f" {spec.low}–{spec.high} of {field!r}"
                )
            return None
        if not any(_same(value, v) for v in spec.values):
            options = ", ".join(sorted(str(v) for v in spec.values))
            hint = " (yes/no/on/off are true/false in YAML)" if isinstance(value, bool) else ""
            return f"{value!r} is not an option of {field!r}: {options}{hint}"
        return None


class _Loader(Reader):
    """The clinical content: instruments and the check-in, assessment and milestone rules."""

    def run(self) -> tuple[Clinical | None, list[Problem]]:
        return self.result(self.build)

    def build(self) -> Clinical | None:
        assessment_rules = self.model("rules/assessments.yaml", AssessmentRules)
        checkin_rules = self.model("rules/checkin.yaml", CheckinRules)
        milestone_rules = self.model("rules/milestones.yaml", MilestoneRules)

        languages = self.languages()
        files: dict[str, dict[str, Any]] = {}
        for lang in languages:
            required = lang == FALLBACK_LANGUAGE
            instruments: dict[str, InstrumentFile] = {}
            names = set(REQUIRED_INSTRUMENTS) if required else set()
            inst_dir = self.root / lang / "instruments"
            if inst_dir.is_dir():
                names.update(p.stem for p in inst_dir.glob("*.yaml"))
            for name in sorted(names):
                rel = f"{lang}/instruments/{name}.yaml"
                model = self.model(rel, InstrumentFile, required=required)
                if model is not None:
                    instruments[name] = model
                    self.check_instrument(rel, name, model)
            files[lang] = {
                "instruments": instruments,
                "milestones": self.model(
                    f"{lang}/messages/milestones.yaml", MilestoneMessagesFile, required=required
                ),
            }
            if files[lang]["milestones"] is not None:
                self.check_milestone_messages(
                    f"{lang}/messages/milestones.yaml", files[lang]["milestones"], milestone_rules
                )

        base = files[FALLBACK_LANGUAGE]["instruments"]
        for lang in languages:
            if lang != FALLBACK_LANGUAGE:
                for name, model in files[lang]["instruments"].items():
                    if name in base:
                        self.check_same_structure(
                            f"{lang}/instruments/{name}.yaml", model, base[name]
                        )
        if assessment_rules is not None:
            self.check_assessment_rules(assessment_rules, files)
        if checkin_rules is not None:
            self.check_checkin_rules(checkin_rules, files)
        if milestone_rules is not None:
            self.check_milestone_rules(milestone_rules)

        if self.problems:
            return None
        assert assessment_rules and checkin_rules and milestone_rules
        instruments_by_lang = {
            lang: {
                name: Instrument.model_validate(
                    {
                        **self.raw[f"{lang}/instruments/{name}.yaml"],
                        "rules": assessment_rules.for_instrument(name),
                    }
                )
                for name in files[lang]["instruments"]
            }
            for lang in languages
        }

        def present(key: str) -> dict[str, Any]:
            return {lang: f[key] for lang, f in files.items() if f[key] is not None}

        milestone_messages = {lang: file.milestones for lang, file in present("milestones").items()}

        return Clinical(
            content_dir=self.root,
            assessment_rules=assessment_rules,
            checkin_rules=checkin_rules,
            milestones=milestone_rules,
            languages=tuple(languages),
            instruments_by_lang=instruments_by_lang,
            milestone_messages_by_lang=milestone_messages,
        )

    def check_instrument(self, rel: str, name: str, model: InstrumentFile) -> None:
        if model.id != name:
            self.at(rel, ("id",), f"id {model.id!r} must match the file name {name!r}")
        self.unique(
            rel, [(("items", i, "id"), item.id) for i, item in enumerate(model.items)], "item id"
        )
        for i, item in enumerate(model.items):
            self.unique(
                rel,
                [
                    (("items", i, "options", j, "value"), o.value)
                    for j, o in enumerate(item.options)
                ],
                "option value",
            )
            if name == CHECKIN_INSTRUMENT or not item.scored:
                continue
            if item.kind in ("text", "multi"):
                self.at(
                    rel,
                    ("items", i, "kind"),
                    "a scored item must be scale or choice; add scored: false",
                )
            for j, option in enumerate(item.options):
                if option.points is None:
                    self.at(rel, ("items", i, "options", j), "option needs a whole-number score")
        for key, text in model.texts.items():
            self.check_placeholders(rel, ("texts", key), text, {"days"})
        for section in ("replies", "notes"):
            for key, text in getattr(model, section).items():
                self.check_placeholders(rel, (section, key), text, set())

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

    def check_same_structure(self, rel: str, model: InstrumentFile, base: InstrumentFile) -> None:
        base_rel = f"{FALLBACK_LANGUAGE}/instruments/{base.id}.yaml"
        if [i.id for i in model.items] != [i.id for i in base.items]:
            self.at(
                rel, ("items",), f"items must have the same ids, in the same order, as {base_rel}"
            )
            return
        for i, (item, ref) in enumerate(zip(model.items, base.items, strict=True)):
            same = (
                item.kind == ref.kind
                and item.scored == ref.scored
                and item.domain == ref.domain
                and item.only_if == ref.only_if
                and [(o.value, o.points) for o in item.options]
                == [(o.value, o.points) for o in ref.options]
            )
            if not same:
                self.at(
                    rel,
                    ("items", i),
                    f"item {item.id!r} must have the same kind, options and scores as {base_rel}",
                )

    def check_assessment_rules(self, rules: AssessmentRules, files: Mapping[str, Any]) -> None:
        rel = "rules/assessments.yaml"
        base: Mapping[str, InstrumentFile] = files[FALLBACK_LANGUAGE]["instruments"]
        for name in base:
            if name != CHECKIN_INSTRUMENT and name not in rules.instruments:
                self.at(rel, ("instruments",), f"no rules (cadence) for instrument {name!r}")
        for name, inst_rules in rules.instruments.items():
            path: _Path = ("instruments", name)
            if name not in base or name == CHECKIN_INSTRUMENT:
                self.at(
                    rel,
                    path,
                    f"no assessment instrument {name!r} in {FALLBACK_LANGUAGE}/instruments/",
                )
                continue
            instrument = Instrument.model_validate(
                self.raw[f"{FALLBACK_LANGUAGE}/instruments/{name}.yaml"]
            )
            low, high = instrument.total_range()
            facts: dict[str, _FactSpec] = {"total": _FactSpec("int", low=low, high=high)}
            for item in instrument.scored_items:
                lo, hi = item.score_range()
                facts[f"item.{item.id}"] = _FactSpec("int", low=lo, high=hi)
            for domain in instrument.domains:
                lo, hi = instrument.total_range(domain)
                facts[f"domain.{domain}"] = _FactSpec("int", low=lo, high=hi)
            self.check_bands(rel, path, inst_rules.bands, low, high)
            self.unique(
                rel,
                [((*path, "bands", i, "id"), b.id) for i, b in enumerate(inst_rules.bands)],
                "band id",
            )
            for lang, lang_files in files.items():
                model = lang_files["instruments"].get(name)
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
                self.rule_id(rel, (*rule_path, "id"), rule.id)
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
        self, rel: str, path: _Path, followup: SuicideFollowup, facts: Mapping[str, _FactSpec]
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
        answer_facts = {f"followup.{q}": _FactSpec("bool") for q in ids}
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
        self, rel: str, path: _Path, bands: Sequence[Band], low: int, high: int
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

    def check_checkin_rules(self, rules: CheckinRules, files: Mapping[str, Any]) -> None:
        rel = "rules/checkin.yaml"
        checkin: InstrumentFile | None = files[FALLBACK_LANGUAGE]["instruments"].get(
            CHECKIN_INSTRUMENT
        )
        if checkin is None:
            return
        facts: dict[str, _FactSpec] = {}
        for item in checkin.items:
            values = frozenset(o.value for o in item.options)
            if item.kind == "text":
                facts[f"{item.id}_written"] = _FactSpec("bool")  # the patient typed something
                continue
            if item.kind == "multi":
                facts[item.id] = _FactSpec("set", values)
            elif all(isinstance(v, int) for v in values):
                facts[item.id] = _FactSpec("int", values, min(values), max(values))
            else:
                facts[item.id] = _FactSpec("str", values)
        craving = facts.get(rules.craving_item)
        if craving is None or craving.kind != "int":
            self.at(
                rel, ("craving_item",), f"the check-in has no numeric item {rules.craving_item!r}"
            )
        else:
            facts["high_craving"] = _FactSpec("bool")
            if not craving.low < rules.high_craving_threshold <= craving.high:
                self.at(
                    rel,
                    ("high_craving_threshold",),
                    f"threshold {rules.high_craving_threshold} is outside the possible range"
                    f" {craving.low + 1}–{craving.high} of {rules.craving_item!r}",
                )

        def check(path: _Path, condition: Condition) -> None:
            self.check_condition(rel, path, condition, facts, days_allowed=True)

        if rules.urge_tools is not None:
            check(("urge_tools", "when"), rules.urge_tools.when)
        for i, closing in enumerate(rules.closing):
            if closing.when is not None:
                check(("closing", i, "when"), closing.when)
            elif i < len(rules.closing) - 1:
                self.at(rel, ("closing", i), "entries after one without `when` are never used")
        for i, rule in enumerate(rules.flags):
            self.rule_id(rel, ("flags", i, "id"), rule.id)
            check(("flags", i, "when"), rule.when)
        for i, note in enumerate(rules.notes):
            check(("notes", i, "when"), note.when)
        self.unique(rel, [(("notes", i, "id"), n.id) for i, n in enumerate(rules.notes)], "note id")
        for i, note in enumerate(rules.reflections):
            check(("reflections", i, "when"), note.when)
        self.unique(
            rel, [(("reflections", i, "id"), n.id) for i, n in enumerate(rules.reflections)], "reflection id"
        )
        for i, silent in enumerate(rules.silent):
            self.rule_id(rel, ("silent", i, "id"), silent.id)
        self.unique(
            rel,
            [(("silent", i, "after_days"), s.after_days) for i, s in enumerate(rules.silent)],
            "after_days",
        )
        for lang, lang_files in files.items():
            model = lang_files["instruments"].get(CHECKIN_INSTRUMENT)
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
