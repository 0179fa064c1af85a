"""The kernel's reader of content files: each file read into its schema, every problem kept with
its file and line (``Reader``), and the instruments of every language loaded and checked.

Each area reads its own rule files with a :class:`Reader` and checks them against the facts its
rules may name (``Reader.check_condition``): ``bot.checkins.rules``, ``bot.assessments.rules``,
``bot.recovery.library``, ``bot.safety.crisis``. Their checks and this module's run together in
``iop-bot content check`` (``bot.areas``), with one check across files: a flag rule's id is
unique in all of them (:func:`check_rule_ids`).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bot.core.clinical import (
    CHECKIN_INSTRUMENT,
    DEFAULT_CONTENT_DIR,
    FALLBACK_LANGUAGE,
    NUMERIC_OPERATORS,
    REQUIRED_INSTRUMENTS,
    Condition,
    Instrument,
    is_language,
    same_value,
)
from bot.platform.content import Content

__all__ = [
    "ContentError",
    "FactSpec",
    "Instruments",
    "KeyPath",
    "RuleIds",
    "Problem",
    "Reader",
    "check_content",
    "check_rule_ids",
    "instrument_files",
    "instruments_for",
    "load_instruments",
    "loaded",
    "pick_instrument",
    "pick_language",
    "resolved",
]

Problem = tuple[str, int, str]

_T = TypeVar("_T")
_I = TypeVar("_I")


def pick_language(available: Mapping[str, _T], lang: str | None) -> _T:
    if lang:
        if lang in available:
            return available[lang]
        base = lang.split("-")[0].split("_")[0].lower()
        if base in available:
            return available[base]
    return available[FALLBACK_LANGUAGE]


def pick_instrument(
    instruments_by_lang: Mapping[str, Mapping[str, _I]], instrument_id: str, lang: str | None
) -> _I:
    """The instrument in ``lang`` (or its base language, or English); KeyError when English
    has no such instrument."""
    available = {
        code: by_id[instrument_id]
        for code, by_id in instruments_by_lang.items()
        if instrument_id in by_id
    }
    if FALLBACK_LANGUAGE not in available:
        raise KeyError(instrument_id)
    return pick_language(available, lang)


class ContentError(Exception):
    """Content failed validation; ``problems`` lists (file, line, problem)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(f"{f}:{line}: {msg}" for f, line, msg in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"content has {len(self.problems)} problem(s): {shown}{more}")


@lru_cache(maxsize=8)
def resolved(content_dir: Path | str) -> Path:
    # Asked on every check-in step; resolving a path costs system calls.
    return Path(content_dir).resolve()


def loaded(result: tuple[_T | None, Sequence[Problem]]) -> _T:
    """The value a reader built, or :class:`ContentError` with every problem."""
    value, problems = result
    if problems or value is None:
        raise ContentError(problems or [(".", 0, "content could not be loaded")])
    return value


_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_M = TypeVar("_M", bound=BaseModel)
KeyPath = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class FactSpec:
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

    def at(self, rel: str, path: KeyPath, message: str) -> None:
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
            p.name for p in self.root.iterdir() if p.is_dir() and is_language(p.name)
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

    def unique(self, rel: str, values: Sequence[tuple[KeyPath, Any]], what: str) -> None:
        seen: set[Any] = set()
        for path, value in values:
            key = (type(value).__name__, value)
            if key in seen:
                self.at(rel, path, f"duplicate {what} {value!r}")
            seen.add(key)

    def check_placeholders(self, rel: str, path: KeyPath, text: str, allowed: set[str]) -> None:
        try:
            names = _placeholders(text)
        except ValueError as exc:
            self.at(rel, path, f"braces: {exc}; write a literal brace as {{{{ or }}}}")
            return
        unknown = sorted(names - allowed)
        if unknown:
            known = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
            self.at(rel, path, f"unknown placeholder {{{unknown[0]}}} (allowed: {known})")

    def rule_id(self, rel: str, path: KeyPath, rule_id: str) -> None:
        if rule_id in self.rule_ids:
            self.at(rel, path, f"duplicate rule id {rule_id!r} (also in {self.rule_ids[rule_id]})")
        else:
            self.rule_ids[rule_id] = rel

    def check_condition(
        self,
        rel: str,
        path: KeyPath,
        condition: Condition,
        facts: Mapping[str, FactSpec],
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
        if operator in NUMERIC_OPERATORS:
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
    def value_problem(spec: FactSpec, field: str, value: Any) -> str | None:
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
        if not any(same_value(value, v) for v in spec.values):
            options = ", ".join(sorted(str(v) for v in spec.values))
            hint = " (yes/no/on/off are true/false in YAML)" if isinstance(value, bool) else ""
            return f"{value!r} is not an option of {field!r}: {options}{hint}"
        return None


# ---------------------------------------------------------------------------------------
# The instruments
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruments:
    """Every instrument of every language, validated. Per-language getters fall back to English."""

    content_dir: Path
    languages: tuple[str, ...]
    instruments_by_lang: Mapping[str, Mapping[str, Instrument]]

    def instrument(self, instrument_id: str, lang: str | None = None) -> Instrument:
        return pick_instrument(self.instruments_by_lang, instrument_id, lang)

    def checkin(self, lang: str | None = None) -> Instrument:
        return self.instrument(CHECKIN_INSTRUMENT, lang)


class _InstrumentReader(Reader):
    """``content/<lang>/instruments/*.yaml``: English has every required instrument; another
    language's instrument has English's items, kinds, options and scores."""

    def run(self) -> tuple[Instruments | None, list[Problem]]:
        return self.result(self.build)

    def build(self) -> Instruments | None:
        files = self.instruments()
        if self.problems:
            return None
        return Instruments(self.root, tuple(files), files)

    def instruments(self) -> dict[str, dict[str, Instrument]]:
        """The instruments that could be read, by language and id (every language folder)."""
        languages = self.languages()
        files: dict[str, dict[str, Instrument]] = {}
        for lang in languages:
            required = lang == FALLBACK_LANGUAGE
            instruments: dict[str, Instrument] = {}
            names = set(REQUIRED_INSTRUMENTS) if required else set()
            inst_dir = self.root / lang / "instruments"
            if inst_dir.is_dir():
                names.update(p.stem for p in inst_dir.glob("*.yaml"))
            for name in sorted(names):
                rel = f"{lang}/instruments/{name}.yaml"
                model = self.model(rel, Instrument, required=required)
                if model is not None:
                    instruments[name] = model
                    self.check_instrument(rel, name, model)
            files[lang] = instruments

        base = files[FALLBACK_LANGUAGE]
        for lang in languages:
            if lang != FALLBACK_LANGUAGE:
                for name, model in files[lang].items():
                    if name in base:
                        self.check_same_structure(
                            f"{lang}/instruments/{name}.yaml", model, base[name]
                        )
        return files

    def check_instrument(self, rel: str, name: str, model: Instrument) -> None:
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

    def check_same_structure(self, rel: str, model: Instrument, base: Instrument) -> None:
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


def instrument_files(content_dir: Path) -> dict[str, dict[str, Instrument]]:
    """The instruments that can be read, by language and id, for an area's checks across files
    (their own problems are :func:`check_content`'s)."""
    return _InstrumentReader(Path(content_dir)).instruments()


def instruments_for(content: Content) -> Instruments:
    """The instruments next to the messages of ``content``."""
    return load_instruments(content.root)


def load_instruments(content_dir: Path | None = None) -> Instruments:
    """Load and validate the instruments; cached per directory.

    Raises :class:`ContentError` listing every problem when anything is wrong."""
    return _load_cached(resolved(content_dir or DEFAULT_CONTENT_DIR))


@lru_cache(maxsize=8)
def _load_cached(content_dir: Path) -> Instruments:
    return loaded(_InstrumentReader(content_dir).run())


def check_content(content_dir: Path) -> list[Problem]:
    """Every problem in the instruments as (file relative to ``content_dir``, line, problem).
    Line 0 means the whole file (e.g. a missing file). Empty when all is well."""
    return _InstrumentReader(Path(content_dir)).run()[1]


# Where an area's flag rules are: it reads its rule files with the reader it is given and lists
# (file, path in the file, rule id) for each.
RuleIds = Callable[[Reader], Iterable[tuple[str, KeyPath, str]]]


def check_rule_ids(content_dir: Path, parts: Sequence[RuleIds]) -> list[Problem]:
    """A flag names the rule that raised it: every flag rule's id is unique across the areas'
    rule files (``parts``, in order: a repeated id is reported where it comes again)."""
    reader = Reader(Path(content_dir))

    def build() -> None:
        found = [entry for part in parts for entry in part(reader)]
        reader.problems.clear()  # a file's own problems are its area's check's
        for rel, path, rule_id in found:
            reader.rule_id(rel, path, rule_id)

    return reader.result(build)[1]
