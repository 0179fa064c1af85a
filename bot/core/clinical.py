"""The clinical rule language every area shares: the instrument model (items, options, button
labels, HTML), conditions and ``holds``, flag rules and the flag requests they make.

The clinical content lives in YAML under ``content/``: ``content/<lang>/instruments/*.yaml``
(check-in, weekly check, PHQ-9, GAD-7, and any instrument added later), each a list of items
with button options, and language-neutral rules in ``content/rules/``. Nothing here touches the
database, Telegram or the files: the kernel's reader (``bot.core.rules_loader``) reads and checks
the files with these schemas and loads the instruments. Each area's rules live with it:
``bot.checkins.rules`` (the check-in's closing, silent patients, milestones),
``bot.assessments.rules`` (cadence, bands, scores, the suicide follow-up), ``bot.recovery.rules``
(the day's tip); content only one area reads is that area's (tips and exercises:
``bot.recovery.library``; crisis resources: ``bot.safety.crisis``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StringConstraints,
    model_validator,
)

from bot.core.vocabulary import FlagSeverity, Severity

__all__ = [
    "CHECKIN_INSTRUMENT",
    "DEFAULT_CONTENT_DIR",
    "FALLBACK_LANGUAGE",
    "NUMERIC_OPERATORS",
    "REQUIRED_INSTRUMENTS",
    "WEEKDAYS",
    "AnswerValue",
    "Condition",
    "FlagRequest",
    "FlagRule",
    "Instrument",
    "Item",
    "Model",
    "Option",
    "Weekday",
    "by_severity",
    "flag_category",
    "flag_request",
    "holds",
    "is_language",
    "is_number",
    "most_severe_per_category",
    "same_value",
]

DEFAULT_CONTENT_DIR = Path(__file__).resolve().parents[2] / "content"
FALLBACK_LANGUAGE = "en"
LABEL_MAX_CHARS = 30
TEXT_MAX_CHARS = 3000
REQUIRED_INSTRUMENTS = ("checkin", "weekly", "phq9", "gad7")
CHECKIN_INSTRUMENT = "checkin"

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
Domain = Literal["use", "risk", "protective"]

AnswerValue = int | str | Sequence[str] | None

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
NUMERIC_OPERATORS = frozenset({"at_least", "at_most", "above", "below", "between"})


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
            if same_value(option.value, value):
                return option
        raise ValueError(f"{value!r} is not an option of item {self.id!r}")

    def answer_label(self, value: Any) -> str:
        """A stored answer as people read it, never its stored value: the option's label
        ("I'd rather not say", not "prefer_not"); a number whose label does not show it keeps
        it in brackets ("Several days (1)"); several answers (a multi item) joined by commas.
        None is "–"; a value no option has any more is told in plain words."""
        if value is None or value == []:
            return "–"
        if isinstance(value, list | tuple):
            return ", ".join(self.answer_label(v) for v in value)
        for option in self.options:
            if same_value(option.value, value):
                label = str(option.label)
                return label if not is_number(value) or str(value) in label else f"{label} ({value})"
        return str(value).replace("_", " ")

    def score_range(self) -> tuple[int, int]:
        points = [o.points for o in self.options if o.points is not None]
        return (min(points), max(points)) if points else (0, 0)


class FlagRule(Model):
    id: Id
    when: Condition
    severity: FlagSeverity
    category: Id
    reason: PlainText
    # crisis_flow: the crisis reply at once; suicide_followup: stop the questionnaire and ask
    # the instrument's `suicide_followup` questions, which grade the flag.
    action: Literal["crisis_flow", "suicide_followup"] | None = None


class Instrument(Model):
    """An instrument in one language: the shape of ``content/<lang>/instruments/<id>.yaml``."""

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

    def answer_label(self, item_id: str, value: Any) -> str:
        """The stored answer to item `item_id` as people read it (`Item.answer_label`)."""
        try:
            return self.item(item_id).answer_label(value)
        except KeyError:
            return "–" if value is None else str(value).replace("_", " ")

    def band_label(self, band_id: str | None) -> str | None:
        return None if band_id is None else self.band_labels.get(band_id)


# ---------------------------------------------------------------------------------------
# Results (plain values for the services)
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FlagRequest:
    """A flag a rule asks for; the flag service opens it or adds an event to the open
    flag of the same category."""

    rule_id: str
    severity: FlagSeverity
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
# Conditions and flags (pure; each area's rules.py scores with them)
# ---------------------------------------------------------------------------------------


def is_language(name: str) -> bool:
    """True for a language code such as ``en`` or ``pt-br`` (a folder of ``content/``)."""
    return _LANG_DIR_RE.match(name) is not None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _compare(operator: str, value: Any, target: Any) -> bool:
    if operator == "equals":
        return same_value(value, target)
    if operator == "not_equals":
        return not same_value(value, target)
    if operator == "one_of":
        return any(same_value(value, t) for t in target)
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
        if current is None or Severity(flag.severity) > current.severity:
            best[flag.category] = flag
    return by_severity(best.values())


def by_severity(flags: Collection[FlagRequest]) -> tuple[FlagRequest, ...]:
    return tuple(sorted(flags, key=lambda f: -Severity(f.severity).rank()))


class RaisesFlags(Protocol):
    """A rule that can ask for a flag: a check-in or assessment flag rule, a silent-patient rule."""

    @property
    def id(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def category(self) -> str: ...
    @property
    def reason(self) -> str: ...


def flag_request(rule: RaisesFlags, **details: int | str) -> FlagRequest:
    return FlagRequest(
        rule_id=rule.id,
        severity=rule.severity,
        category=rule.category,
        reason=rule.reason,
        action=getattr(rule, "action", None),
        details=details,
    )
