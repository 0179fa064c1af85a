"""Callback data as typed values: each area declares its buttons here once, packs them where a
keyboard is built and parses them where a button is handled.

On the wire a button is plain text, `prefix:tag:field:…` (at most 64 bytes, Telegram's limit):
buttons already sent keep working as long as each codec writes the same text. A `Buttons` family
is one prefix (one CallbackQueryHandler); each of its `Codec`s is one tag with typed fields.
Parsing has one failure path, `Stale`: data the bot did not make, or no longer understands, which
the handlers answer as an expired button.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.platform.keyboards import MAX_CALLBACK_BYTES, MAX_CALLBACK_NUMBER

SEP = ":"


class Stale(Exception):
    """Button data the bot did not make (or no longer understands): "this button has expired"."""


class Field(Protocol):
    def dump(self, value: object) -> str: ...
    def load(self, text: str) -> object: ...
    def widest(self) -> object: ...


@dataclass(frozen=True)
class Int:
    """A whole number in ASCII digits (with a minus sign when `low` is negative), `low`..`high`.
    Row ids are at most 2**31-1."""

    low: int = 0
    high: int = MAX_CALLBACK_NUMBER

    def dump(self, value: object) -> str:
        if not isinstance(value, int) or isinstance(value, bool) or not self.low <= value <= self.high:
            raise ValueError(f"callback number out of range: {value!r}")
        return str(value)

    def load(self, text: str) -> int:
        digits = text[1:] if self.low < 0 and text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()):
            raise Stale(text)
        value = int(text)
        if not self.low <= value <= self.high:
            raise Stale(text)
        return value

    def widest(self) -> int:
        return max(self.low, self.high, key=lambda v: len(str(v)))


@dataclass(frozen=True)
class OneOf:
    """One word from a fixed set."""

    values: tuple[str, ...]

    def dump(self, value: object) -> str:
        if value not in self.values:
            raise ValueError(f"callback value not among {self.values}: {value!r}")
        return str(value)

    def load(self, text: str) -> str:
        if text not in self.values:
            raise Stale(text)
        return text

    def widest(self) -> str:
        return max(self.values, key=lambda v: len(v.encode()))


@dataclass(frozen=True)
class Word:
    """A non-empty word of at most `max_bytes` bytes, without the separator (a content id, say)."""

    max_bytes: int

    def dump(self, value: object) -> str:
        if not isinstance(value, str) or not self._ok(value):
            raise ValueError(f"callback word not valid: {value!r}")
        return value

    def load(self, text: str) -> str:
        if not self._ok(text):
            raise Stale(text)
        return text

    def widest(self) -> str:
        return "w" * self.max_bytes

    def _ok(self, text: str) -> bool:
        return bool(text) and SEP not in text and len(text.encode()) <= self.max_bytes


@dataclass(frozen=True)
class Codec:
    """One kind of button: `prefix:tag` followed by its typed fields."""

    prefix: str
    tag: str
    fields: tuple[Field, ...] = ()

    def pack(self, *values: object) -> str:
        fields = self.fields
        if len(values) != len(fields):
            raise ValueError(f"{self.prefix}:{self.tag} takes {len(fields)} values, got {len(values)}")
        data = SEP.join([self.prefix, self.tag, *[f.dump(v) for f, v in zip(fields, values, strict=True)]])
        if len(data) > MAX_CALLBACK_BYTES // 4 and len(data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"callback data too long: {data!r}")
        return data

    def load(self, parts: Sequence[str]) -> tuple[Any, ...]:
        """The values of data already split (its prefix and tag are this codec's)."""
        if len(parts) != len(self.fields) + 2:
            raise Stale(SEP.join(parts))
        return tuple([f.load(p) for f, p in zip(self.fields, parts[2:], strict=True)])

    def parse(self, data: object) -> tuple[Any, ...]:
        """This codec's values from pressed data; `Stale` for anything else."""
        parts = _split(data)
        if parts[0] != self.prefix or parts[1] != self.tag:
            raise Stale(str(data))
        return self.load(parts)

    def made(self, data: object) -> bool:
        """Whether `data` is one of this codec's buttons."""
        try:
            self.parse(data)
        except Stale:
            return False
        return True

    def widest(self) -> str:
        """The data with every field at its longest (its length is what Telegram must accept)."""
        return self.pack(*(f.widest() for f in self.fields))


@dataclass(frozen=True)
class Pressed:
    """A parsed button: which codec, and its values (typed by the codec's fields)."""

    codec: Codec
    values: tuple[Any, ...]


@dataclass
class Buttons:
    """The buttons of one prefix: one CallbackQueryHandler parses them all."""

    prefix: str
    codecs: list[Codec] = field(default_factory=list)
    _by_shape: dict[tuple[str, int], Codec] = field(default_factory=dict, repr=False)

    @property
    def pattern(self) -> str:
        """The CallbackQueryHandler pattern of this family."""
        return f"^{self.prefix}{SEP}"

    def codec(self, tag: str, *fields: Field) -> Codec:
        """Declare one kind of button of this family."""
        made = Codec(self.prefix, tag, tuple(fields))
        if (tag, len(fields)) in self._by_shape:
            raise ValueError(f"{self.prefix}:{tag} with {len(fields)} fields is declared twice")
        self.codecs.append(made)
        self._by_shape[tag, len(fields)] = made
        return made

    def owns(self, data: object) -> bool:
        """Whether `data` is of this family (what its CallbackQueryHandler is given)."""
        return isinstance(data, str) and data.startswith(self.prefix + SEP)

    def parse(self, data: object) -> Pressed:
        """The button pressed; `Stale` for data none of this family's codecs made."""
        parts = _split(data)
        codec = self._by_shape.get((parts[1], len(parts) - 2)) if parts[0] == self.prefix else None
        if codec is None:
            raise Stale(str(data))
        return Pressed(codec, codec.load(parts))


def callback_data_ok(data: object) -> bool:
    """Whether pressed callback data could have come from the bot: at most 64 bytes, and every
    numeric field within MAX_CALLBACK_NUMBER. Anything else is a stale or forged button,
    answered as such before any handler parses it (the codecs check their own fields again)."""
    if not isinstance(data, str) or len(data.encode()) > MAX_CALLBACK_BYTES:
        return False
    for part in data.split(SEP):
        digits = part.lstrip("+-#")
        if digits.isdigit() and (not digits.isascii() or int(digits) > MAX_CALLBACK_NUMBER):
            return False
    return True


def _split(data: object) -> list[str]:
    if not isinstance(data, str) or len(data.encode()) > MAX_CALLBACK_BYTES:
        raise Stale(repr(data)[:80])
    parts = data.split(SEP)
    if len(parts) < 2:
        raise Stale(data)
    return parts
