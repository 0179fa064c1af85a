"""The recovery library: tips (`content/<lang>/tips.yaml`) and coping exercises
(`content/<lang>/exercises.yaml`): schemas, loading and validation, per language with English as
the fallback. The rules for picking a tip and following up an urge are in `bot.recovery.rules`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from bot.core.clinical import (
    DEFAULT_CONTENT_DIR,
    FALLBACK_LANGUAGE,
    Html,
    Id,
    Label,
    Model,
)
from bot.core.rules_loader import Problem, Reader, loaded, pick_language, resolved

__all__ = [
    "Exercise",
    "ExerciseSet",
    "Library",
    "Tip",
    "check_library",
    "clear_cache",
    "load_library",
]

TIP_MAX_CHARS = 400


def _check_tip_text(text: str) -> str:
    if len(text) > TIP_MAX_CHARS:
        raise ValueError(f"tip is {len(text)} characters; the limit is {TIP_MAX_CHARS}")
    return text


Tag = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(:[a-z0-9_]+)?$")]
TipText = Annotated[Html, AfterValidator(_check_tip_text)]


class Tip(Model):
    id: Id
    text: TipText
    tags: list[Tag] = Field(min_length=1)


class TipFile(Model):
    tags: list[Tag] = Field(min_length=1)
    tips: list[Tip] = Field(min_length=1)


class Ask(Model):
    """A 0-10 rating stored under ``key`` (e.g. ``before`` / ``after``)."""

    key: Id
    min: int = 0
    max: int = 10

    @model_validator(mode="after")
    def _order(self) -> Ask:
        if not 0 <= self.min < self.max <= 10:
            raise ValueError("rating needs 0 <= min < max <= 10")
        return self


class Choice(Model):
    id: Id
    label: Label
    text: Html


class Step(Model):
    text: Html
    ask: Ask | None = None
    choices: list[Choice] | None = None

    @model_validator(mode="after")
    def _one(self) -> Step:
        if self.ask is not None and self.choices is not None:
            raise ValueError("a step has either ask or choices, not both")
        if self.choices is not None and len(self.choices) < 2:
            raise ValueError("choices needs at least 2 entries")
        return self


class Exercise(Model):
    id: Id
    title: Html
    button_label: Label
    steps: list[Step] = Field(min_length=1)
    closing: Html


class ExerciseSet(Model):
    """The shape of ``content/<lang>/exercises.yaml``."""

    next_label: Label
    done_label: Label
    exercises: list[Exercise] = Field(min_length=1)

    def get(self, exercise_id: str) -> Exercise | None:
        return next((e for e in self.exercises if e.id == exercise_id), None)


def _check_tips(reader: Reader, rel: str, model: TipFile) -> None:
    reader.unique(rel, [(("tags", i), t) for i, t in enumerate(model.tags)], "tag")
    reader.unique(rel, [(("tips", i, "id"), t.id) for i, t in enumerate(model.tips)], "tip id")
    vocabulary = set(model.tags)
    for i, tip in enumerate(model.tips):
        for j, tag in enumerate(tip.tags):
            if tag not in vocabulary:
                reader.at(rel, ("tips", i, "tags", j), f"tag {tag!r} is not in the tags list")


def _check_exercises(reader: Reader, rel: str, model: ExerciseSet) -> None:
    reader.unique(
        rel,
        [(("exercises", i, "id"), e.id) for i, e in enumerate(model.exercises)],
        "exercise id",
    )
    for i, exercise in enumerate(model.exercises):
        reader.unique(
            rel,
            [
                (("exercises", i, "steps", j, "ask", "key"), step.ask.key)
                for j, step in enumerate(exercise.steps)
                if step.ask is not None
            ],
            "rating key",
        )
        for j, step in enumerate(exercise.steps):
            reader.unique(
                rel,
                [
                    (("exercises", i, "steps", j, "choices", k, "id"), c.id)
                    for k, c in enumerate(step.choices or [])
                ],
                "choice id",
            )


@dataclasses.dataclass(frozen=True)
class Library:
    """Tips and exercises, validated. Per-language getters fall back to English."""

    tips_by_lang: Mapping[str, TipFile]
    exercises_by_lang: Mapping[str, ExerciseSet]

    def tips(self, lang: str | None = None) -> tuple[Tip, ...]:
        return tuple(pick_language(self.tips_by_lang, lang).tips)

    def exercises(self, lang: str | None = None) -> ExerciseSet:
        return pick_language(self.exercises_by_lang, lang)


def _read(root: Path) -> tuple[Library | None, list[Problem]]:
    reader = Reader(root)

    def build() -> Library:
        tips: dict[str, TipFile] = {}
        exercises: dict[str, ExerciseSet] = {}
        for lang in reader.languages():
            required = lang == FALLBACK_LANGUAGE
            tip_file = reader.model(f"{lang}/tips.yaml", TipFile, required=required)
            if tip_file is not None:
                _check_tips(reader, f"{lang}/tips.yaml", tip_file)
                tips[lang] = tip_file
            exercise_set = reader.model(f"{lang}/exercises.yaml", ExerciseSet, required=required)
            if exercise_set is not None:
                _check_exercises(reader, f"{lang}/exercises.yaml", exercise_set)
                exercises[lang] = exercise_set
        return Library(tips_by_lang=tips, exercises_by_lang=exercises)

    return reader.result(build)


def load_library(content_dir: Path | None = None) -> Library:
    """Load and validate tips and exercises; cached per directory.

    Raises :class:`bot.core.rules_loader.ContentError` listing every problem when anything is wrong."""
    return _load_cached(resolved(content_dir or DEFAULT_CONTENT_DIR))


@lru_cache(maxsize=8)
def _load_cached(content_dir: Path) -> Library:
    return loaded(_read(content_dir))


def clear_cache() -> None:
    """Forget the loaded library, so the next ``load_library`` reads the files again."""
    _load_cached.cache_clear()


def check_library(content_dir: Path) -> list[Problem]:
    """Every problem in the tips and exercises as (file relative to ``content_dir``, line,
    problem). Empty when all is well."""
    return _read(Path(content_dir))[1]
