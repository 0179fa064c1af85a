"""Normalisation of what people really type (step 1 of reading a message, see the package), keeping
a map from each character of the normalised text back to the original, so evidence quotes the
patient's own words. The same folding makes patterns and cue words (`fold_text`)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.safety.risk.compiled import compile_regex

APOSTROPHES = frozenset("'\u2019\u2018\u02bc\u0060\u00b4\u02b9\u2032\uff07")
INVISIBLE = frozenset(
    "\ufe0f\ufe0e\u200d\u200b\u200c\u2060\ufeff\u00ad\u20e3"
    + "".join(chr(c) for c in range(0x1F3FB, 0x1F400))
)
_SPACED_LETTERS = re.compile(r"(?<![a-z0-9])[a-z](?:[ .\-_*~\u00b7\u2022][a-z](?![a-z0-9]))+")
_SQUEEZE = re.compile(r"([a-z])\1+")
_LEET_TOKEN = re.compile(r"[a-z0-9@$!]+")
_HAS_LETTER = re.compile(r"[a-z]")


_FAST_ASCII = re.compile(r"[^\x20-\x7e]")
_WS_FIX = re.compile(r"\s{2,}|[^\S ]|^\s+|\s+$")


@dataclass(frozen=True)
class Normalized:
    """Normalised text plus, for each of its characters, the original index it came from."""

    text: str
    starts: list[int]
    original_length: int

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if end <= start or start >= len(self.text):
            return (0, 0)
        a = self.starts[start]
        b = self.starts[end] if end < len(self.text) else self.original_length
        return a, max(b, a + 1)


def _delete(s: str, starts: list[int], drop: set[int]) -> tuple[str, list[int]]:
    out: list[str] = []
    kept: list[int] = []
    prev = 0
    for k in sorted(drop):
        if k > prev:
            out.append(s[prev:k])
            kept.extend(starts[prev:k])
        prev = k + 1
    out.append(s[prev:])
    kept.extend(starts[prev:])
    return "".join(out), kept


class Normalizer:
    def __init__(
        self,
        leet: dict[str, str],
        leet_keep: re.Pattern[str],
        emoji: dict[str, str],
        fillers: Sequence[str] = (),
    ) -> None:
        self.leet = leet
        self.leet_keep = leet_keep
        self.emoji = emoji
        words = sorted({_SQUEEZE.sub(r"\1", fold_text(w).strip()) for w in fillers if w.strip()}, key=len, reverse=True)
        self._fillers = (
            compile_regex(r"(?<![a-z0-9])(?:" + "|".join(re.escape(w) for w in words) + r")(?![a-z0-9]) ?")
            if words
            else None
        )
        self._leet_chars = frozenset(leet)
        self._leet_rx = compile_regex("[" + re.escape("".join(leet)) + "]") if leet else compile_regex(r"(?!)")
        self._char_cache: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Written to the prepared file (bot/safety/risk/prepared.py) without the cache, which texts
        # being screened meanwhile may be adding to.
        return {**self.__dict__, "_char_cache": {}}

    def _fold_char(self, c: str) -> str:
        cached = self._char_cache.get(c)
        if cached is not None:
            return cached
        if c in self.emoji:
            out = f" :{self.emoji[c]}: "
        elif c in INVISIBLE or c in APOSTROPHES:
            out = ""
        elif c == "\r":
            out = "\n"
        else:
            decomposed = unicodedata.normalize("NFKD", c.lower())
            out = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
        if len(self._char_cache) < 20000:
            self._char_cache[c] = out
        return out

    def normalize(self, text: str) -> Normalized:
        if not _FAST_ASCII.search(text):
            s = text.lower()
            starts = list(range(len(text)))
            if "'" in s or "`" in s:
                s, starts = _delete(s, starts, {k for k, ch in enumerate(s) if ch in "'`"})
        else:
            parts: list[str] = []
            starts = []
            fold = self._fold_char
            for i, c in enumerate(text):
                if c < "\x80" and c not in APOSTROPHES and c != "\r":
                    parts.append(c.lower())
                    starts.append(i)
                    continue
                out = fold(c)
                if out:
                    parts.append(out)
                    starts.extend([i] * len(out))
            s = "".join(parts)
        if self._leet_chars and self._leet_rx.search(s):
            s = self._leet(s)
        s, starts = self._join_spaced(s, starts)
        s, starts = _squeeze(s, starts)
        s, starts = _collapse_spaces(s, starts)
        if self._fillers is not None and self._fillers.search(s):
            drop = {k for m in self._fillers.finditer(s) for k in range(*m.span())}
            s, starts = _delete(s, starts, drop)
            s, starts = _collapse_spaces(s, starts)
        return Normalized(s, starts, len(text))

    def _leet(self, s: str) -> str:
        out: list[str] | None = None
        for m in _LEET_TOKEN.finditer(s):
            tok = m.group()
            if tok.isalpha() or tok.isdigit():
                continue
            if tok == "@" and "@" in self.leet:
                # a lone "@" between words stands for a word ("voy @ matarme", "@ the bar")
                a, b = m.span()
                if (a == 0 or s[a - 1] == " ") and (b == len(s) or s[b] == " "):
                    if out is None:
                        out = list(s)
                    out[a] = self.leet["@"]
                continue
            core = tok.strip("!")
            if not core or not _HAS_LETTER.search(core) or not self._leet_rx.search(core):
                continue
            if self.leet_keep.fullmatch(core):
                continue
            lead = len(tok) - len(tok.lstrip("!"))
            base = m.start() + lead
            if out is None:
                out = list(s)
            for k, ch in enumerate(core):
                rep = self.leet.get(ch)
                if rep is not None:
                    out[base + k] = rep
        return s if out is None else "".join(out)

    @staticmethod
    def _join_spaced(s: str, starts: list[int]) -> tuple[str, list[int]]:
        drop: set[int] = set()
        for m in _SPACED_LETTERS.finditer(s):
            run = m.group()
            if set(run[1::2]) == {" "} and len(run) < 5:
                continue
            drop.update(range(m.start() + 1, m.end(), 2))
        return _delete(s, starts, drop) if drop else (s, starts)


def _squeeze(s: str, starts: list[int]) -> tuple[str, list[int]]:
    drop: set[int] = set()
    for m in _SQUEEZE.finditer(s):
        drop.update(range(m.start() + 1, m.end()))
    return _delete(s, starts, drop) if drop else (s, starts)


def _collapse_spaces(s: str, starts: list[int]) -> tuple[str, list[int]]:
    if not _WS_FIX.search(s):
        return s, starts
    drop: set[int] = set()
    chars = list(s)
    n = len(s)
    for m in _WS_FIX.finditer(s):
        a, b = m.span()
        if a == 0 or b == n:
            drop.update(range(a, b))
            continue
        chars[a] = "\n" if "\n" in m.group() else " "
        drop.update(range(a + 1, b))
    return _delete("".join(chars), starts, drop)


def fold_text(text: str) -> str:
    """Lower-case, strip accents and drop apostrophes (used for patterns and cue words)."""
    out = []
    for c in text:
        if c in APOSTROPHES or c in INVISIBLE:
            continue
        decomposed = unicodedata.normalize("NFKD", c.lower())
        out.append("".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower())
    return "".join(out)
