"""Risk detector for free text (DESIGN §2.6): pure, synchronous, no database, no Telegram.

Every word list, pattern, emoji map and context cue lives in `content/risk/*.yaml`
(`common.yaml` for normalisation data and cross-language rules, one file per language for the
rest), so a clinician can change the rules without touching code.

How a message is read:

1. **Normalisation** of what people really type, keeping a map back to the original text:
   case, accents (`é`→`e`, `ñ`→`n`), curly apostrophes (dropped, so `don't` = `dont`), emoji
   (mapped to `:name:` tokens), simple leetspeak (`k1ll`, `5uicide`, `d13`), spaced or dotted
   letters (`k i l l`, `k.i.l.l`), repeated letters (every run of one letter is squeezed to a
   single letter, in the text and in the patterns alike, so `killlll` = `kill` = `kil`), and
   filler words (`literally`, `honestly`, `just`...) are dropped.
2. **Rules**: each rule has a category, a severity and regex patterns. Patterns are written as
   plain lower-case text: apostrophes are dropped, letters squeezed, a single space between
   words also matches no space (`kill myself` finds `killmyself`) and word boundaries are added
   at both ends. `{name}` inserts a shared `vocab` entry.
3. **Context**, per match: a negation cue a few words before (`not`, `never`, `no`...) cancels
   the match, but only when the words between the cue and the phrase are fillers (`going to`,
   `want to`...), never across a sentence, a comma or `but`; a past-time marker close by
   (`two years ago`, `when I was using`, `used to`) turns it into history unless a present-time
   marker in the same clause is closer or an intention (`I'm going to`) comes with the phrase,
   and a past-tense phrase is history too when the message says the feeling is over (`I don't
   feel like that anymore`); rules marked `own` ignore conditions (`what if I drank`) and
   sentences whose subject is someone else (`my brother came over and got drunk`);
   discussion cues (`we talked about`) silence topic rules; `unless` / `soften` patterns, joke
   cues (`lol`) and resolution cues (`but I called my sponsor`) adjust single rules; hyperbole
   spans (`dying to see`, `could kill for`) are ignored.
4. **Combinations** raise the level when separate signals meet (`💊` + `goodbye`, use + racing
   heart, a weapon + "he's outside").

The result is the highest-severity match; ties go to the category order of `Category`. A
literal-word prefilter decides which patterns can match at all, so a message costs well under
a millisecond.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import re
import sys
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import yaml

from bot.safety.risk_model import LearnedModel, read_labelled

DEFAULT_CONTENT_DIR = Path(__file__).resolve().parents[2] / "content"
RISK_SUBDIR = "risk"
LABELLED_SUBDIR = "labelled"  # risk/labelled/*.jsonl: labelled messages the learned model reads
LEARNED_RULE = "learned"  # the rule id of the learned model's findings
DEFAULT_MODEL_THRESHOLD = 0.5
COMMON = "common"
EVIDENCE_MAX = 80
MAX_MATCHES = 12
_FUTURE_BEFORE = 32  # characters before a phrase where an intention marker still applies
_LOOKBACK = 160  # a match may start this far before the first of its required words
_NEGATION_REACH = 160  # characters before a phrase searched for a negation cue (a few words)


class Severity(StrEnum):
    NONE = "none"
    MODERATE = "moderate"
    HIGH = "high"
    CRISIS = "crisis"

    def rank(self) -> int:
        return _SEVERITY_RANK[self.value]

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() < other.rank()
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() <= other.rank()
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() > other.rank()
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank() >= other.rank()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


_SEVERITY_RANK = {"none": 0, "moderate": 1, "high": 2, "crisis": 3}


class Category(StrEnum):
    SUICIDE_SELF_HARM = "suicide_self_harm"
    OVERDOSE_MEDICAL = "overdose_medical"
    HARM_TO_OTHERS = "harm_to_others"
    ABUSE_VIOLENCE = "abuse_violence"
    USE_DISCLOSURE = "use_disclosure"
    SEVERE_CRAVING = "severe_craving"

    def priority(self) -> int:
        """Tie-break order: lower wins (suicide first, craving last)."""
        return _CATEGORY_ORDER.index(self.value)


_CATEGORY_ORDER = [c.value for c in Category]


@dataclass(frozen=True)
class Match:
    category: Category
    severity: Severity
    rule_id: str
    evidence: str
    uncertain: bool = False

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category.value,
            "severity": self.severity.value,
            "rule": self.rule_id,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RiskResult:
    severity: Severity
    category: Category | None
    matches: tuple[Match, ...]
    uncertain: bool

    @property
    def flagged(self) -> bool:
        """High or crisis: what must reach a counselor quickly."""
        return self.severity >= Severity.HIGH

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "category": self.category.value if self.category else None,
            "uncertain": self.uncertain,
            "matches": [m.to_dict() for m in self.matches],
        }


NO_RISK = RiskResult(Severity.NONE, None, (), False)


class RiskContentError(ValueError):
    """The risk content is invalid; the message names the file and line of each problem."""

    def __init__(self, problems: Sequence[tuple[str, int, str]]) -> None:
        self.problems = list(problems)
        lines = [f"{f}:{line}: {msg}" for f, line, msg in self.problems[:20]]
        more = len(self.problems) - 20
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__("invalid risk content:\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

_APOSTROPHES = frozenset("'\u2019\u2018\u02bc\u0060\u00b4\u02b9\u2032\uff07")
_INVISIBLE = frozenset(
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
            _compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(w) for w in words) + r")(?![a-z0-9]) ?")
            if words
            else None
        )
        self._leet_chars = frozenset(leet)
        self._leet_rx = _compile("[" + re.escape("".join(leet)) + "]") if leet else _compile(r"(?!)")
        self._char_cache: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Written to the prepared file (bot/safety/risk_prepared.py) without the cache, which texts
        # being screened meanwhile may be adding to.
        return {**self.__dict__, "_char_cache": {}}

    def _fold_char(self, c: str) -> str:
        cached = self._char_cache.get(c)
        if cached is not None:
            return cached
        if c in self.emoji:
            out = f" :{self.emoji[c]}: "
        elif c in _INVISIBLE or c in _APOSTROPHES:
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
                if c < "\x80" and c not in _APOSTROPHES and c != "\r":
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
        if c in _APOSTROPHES or c in _INVISIBLE:
            continue
        decomposed = unicodedata.normalize("NFKD", c.lower())
        out.append("".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower())
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Pattern preparation: the same folding as the text, applied to regex source
# --------------------------------------------------------------------------------------------

_VOCAB_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_QUANT_START = frozenset("?*+{")
_BOUNDARY_L = r"(?<![a-z0-9])"
_BOUNDARY_R = r"(?![a-z0-9])"


class PatternError(ValueError):
    pass


def expand_vocab(src: str, vocab: dict[str, str], _depth: int = 0) -> str:
    if _depth > 8:
        raise PatternError("vocab references nest too deeply (a loop?)")

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in vocab:
            raise PatternError(f"unknown vocab entry {{{name}}}")
        return "(?:" + expand_vocab(vocab[name], vocab, _depth + 1) + ")"

    return _VOCAB_REF.sub(repl, src)


def prepare_pattern(src: str) -> str:
    """Fold a regex source like the text: lower-case, no accents or apostrophes, squeezed
    letters, and a literal single space that also matches no space (outside lookbehinds)."""
    if "(?P" in src:
        raise PatternError("named groups are not allowed")
    out: list[str] = []
    stack: list[bool] = []
    in_class = False
    prev_letter = ""
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            out.append(src[i : i + 2])
            i += 2
            prev_letter = ""
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c if not c.isalpha() else fold_text(c) or c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and src[i] == "^":
                out.append("^")
                i += 1
            if i < n and src[i] == "]":
                out.append("]")
                i += 1
            prev_letter = ""
            continue
        if c == "(":
            if src.startswith("(?<=", i) or src.startswith("(?<!", i):
                stack.append(True)
                out.append(src[i : i + 4])
                i += 4
            else:
                stack.append(False)
                out.append(c)
                i += 1
            prev_letter = ""
            continue
        if c == ")":
            if stack:
                stack.pop()
            out.append(c)
            i += 1
            prev_letter = ""
            continue
        if c == "{":
            j = src.find("}", i)
            if j < 0:
                out.append("\\{")
                i += 1
            else:
                out.append(src[i : j + 1])
                i = j + 1
            prev_letter = ""
            continue
        if c == " ":
            nxt = src[i + 1] if i + 1 < n else ""
            tail = "".join(out[-3:])[-2:]
            # optional only after a letter or a group that does not end in an open repeat
            # ("\w+ " must stay a real word boundary, or "keeps" would read as "keep s")
            optional = not any(stack) and nxt not in _QUANT_START and (
                (tail[-1:].isalnum()) or (tail[-1:] == ")" and tail[:1] not in "+*")
            )
            out.append(" ?" if optional else " ")
            i += 1
            prev_letter = ""
            continue
        folded = fold_text(c) if not c.isascii() or c.isupper() or c in _APOSTROPHES else c
        for ch in folded:
            if "a" <= ch <= "z":
                if ch == prev_letter:
                    continue
                prev_letter = ch
            else:
                prev_letter = ""
            out.append(ch)
        i += 1
    if in_class:
        raise PatternError("unterminated character class")
    return "".join(out)


# The compiled code of each pattern the detector compiles, kept while a built detector is to be
# written to the data folder, so the next start reads it back instead of compiling again
# (bot/safety/risk_prepared.py); None when nothing is to be written (tests, `iop-bot risk check`).
_codes: dict[re.Pattern[str], Any] | None = None


def keep_codes(on: bool) -> None:
    """Keep (or stop keeping, and forget) the compiled code of the patterns compiled from now on."""
    global _codes
    _codes = {} if on else None


def _compile_source(source: str) -> re.Pattern[str]:
    codes = _codes
    if codes is None:
        return re.compile(source)
    from bot.safety import risk_prepared

    code = risk_prepared.PatternCode.of(source)
    rx = code.compile()
    codes[rx] = code
    return rx


# Every pattern is compiled when checked and again in its rule; there are more of them than
# `re` keeps in its own cache, so loading keeps its own.
_compile = functools.lru_cache(maxsize=None)(_compile_source)


def compile_pattern(src: str, vocab: dict[str, str], *, bounded: bool = True) -> str:
    """Return the final regex source for one pattern (raises PatternError or re.error)."""
    body = prepare_pattern(expand_vocab(src, vocab))
    final = f"{_BOUNDARY_L}(?:{body}){_BOUNDARY_R}" if bounded else f"(?:{body})"
    _compile(final)
    return final


# --------------------------------------------------------------------------------------------
# Prefilter: literal strings that every match of a rule must contain
# --------------------------------------------------------------------------------------------

_MAX_SET = 96
_Lits = frozenset[str]


def _exact(items: Any) -> _Lits | None:
    """The finite set of strings a parsed sequence matches exactly, if small; else None."""
    from re import _constants as C  # noqa: N812 - regex internals, read-only

    out: set[str] = {""}
    for op, av in items:
        if op is C.LITERAL:
            alts: set[str] = {chr(av)}
        elif op is C.IN:
            if not all(o is C.LITERAL for o, _ in av) or len(av) > 4:
                return None
            alts = {chr(a) for _, a in av}
        elif op is C.SUBPATTERN:
            sub = _exact(av[-1])
            if sub is None:
                return None
            alts = set(sub)
        elif op is C.BRANCH:
            alts = set()
            for alt in av[1]:
                sub = _exact(alt)
                if sub is None:
                    return None
                alts |= sub
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] == 0 and av[1] == 1:
            sub = _exact(av[2])
            if sub is None:
                return None
            alts = set(sub) | {""}
        else:
            return None
        out = {a + b for a in out for b in alts}
        if len(out) > _MAX_SET:
            return None
    return frozenset(out)


# Frequent words make poor prefilter keys (they would wake a rule on almost every message);
# this only affects speed, never what is found.
_COMMON = frozenset(
    """
    a about after again all am an and any are as at be because been before being but by can cant
    could did do dont down even every feel feeling felt for from get go going gona got had has
    have he her here him his how i if im in into is it its ive just know last like me more my
    need no not now of off on one or out over plan planing rn realy right see she so some still
    than that the their them then there they thing think this time to today tomorow tonight too
    up us very want was we week well went were what when where which who why wil with would you
    your de el la los las que y en un una me mi no se lo le por para con es esta estoy ya hoy
    """.split()
)


def _quality(lits: _Lits) -> tuple[int, int, int]:
    common = sum(1 for x in lits if x.replace(" ", "") in _COMMON)
    return (-common, min(min((len(x) for x in lits), default=0), 4), -len(lits))


def _required(items: Any) -> _Lits | None:
    """Strings of which every match must contain at least one; None when unknown."""
    from re import _constants as C  # noqa: N812

    candidates: list[_Lits] = []
    run: set[str] | None = None

    def close_run() -> None:
        if run is not None:
            strings = {x for x in run if x}
            if strings and len(strings) == len(run):
                candidates.append(frozenset(strings))

    for item in items:
        op, av = item
        single = _exact([item])
        if single is not None:
            if run is None:
                run = set(single)
                continue
            grown = {a + b for a in run for b in single}
            if len(grown) <= _MAX_SET:
                run = grown
                continue
            close_run()
            run = set(single)
            continue
        close_run()
        run = None
        sub: _Lits | None = None
        if op is C.SUBPATTERN:
            sub = _required(av[-1])
        elif op is C.BRANCH:
            acc: set[str] = set()
            for alt in av[1]:
                r = _required(alt)
                if r is None:
                    acc = set()
                    break
                acc |= r
            sub = frozenset(acc) if acc else None
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and av[0] >= 1:
            sub = _required(av[2])
        if sub:
            candidates.append(sub)
    close_run()
    candidates = [c for c in candidates if c and min(len(x) for x in c) >= 2]
    if not candidates:
        return None
    return max(candidates, key=_quality)


def required_literals(regex: str) -> _Lits | None:
    try:
        from re import _parser as P  # noqa: N812

        return _required(P.parse(regex).data)
    except Exception:  # pragma: no cover - unknown regex internals: no prefilter
        return None


def _trie_regex(words: Iterable[str]) -> str:
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        kids = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not kids:
            return ""
        body = kids[0] if len(kids) == 1 else "(?:" + "|".join(kids) + ")"
        if end:
            return ("(?:" + body + ")?") if len(kids) == 1 else body + "?"
        return body

    return build(trie)


class _Prefilter:
    """Finds, in one pass, which rules can possibly match a text."""

    def __init__(self, rule_lits: list[_Lits | None]) -> None:
        self.always = [i for i, lits in enumerate(rule_lits) if lits is None]
        self.by_lit: dict[str, list[int]] = {}
        for i, lits in enumerate(rule_lits):
            for lit in {x.replace(" ", "") for x in lits or ()}:
                if len(lit) >= 2 and i not in self.by_lit.get(lit, ()):
                    self.by_lit.setdefault(lit, []).append(i)
        self.max_len = max((len(x) for x in self.by_lit), default=0)
        self.regex = _compile("(?=(" + _trie_regex(self.by_lit) + "))") if self.by_lit else None

    def candidates(self, s: str) -> dict[int, int]:
        """Rule index -> first position of one of its literals (0 for rules always run)."""
        found: dict[int, int] = dict.fromkeys(self.always, 0)
        if self.regex is None:
            return found
        by_lit = self.by_lit
        # spaces are optional inside patterns, so literals are looked up without them; a
        # position in the text without spaces is never after the real one
        for m in self.regex.finditer(s.replace(" ", "")):
            longest = m.group(1)
            pos = m.start()
            for k in range(2, len(longest) + 1):
                rules = by_lit.get(longest[:k])
                if rules:
                    for i in rules:
                        if i not in found:
                            found[i] = pos
        return found


# --------------------------------------------------------------------------------------------
# Loading YAML with line numbers
# --------------------------------------------------------------------------------------------


class _LineStr(str):
    line: int = 0


class _LineDict(dict[str, Any]):
    line: int = 0


class _LineList(list[Any]):
    line: int = 0


# libyaml's parser where it is installed (several times faster); both give each node its line.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> _LineStr:
    s = _LineStr(loader.construct_scalar(node))
    s.line = node.start_mark.line + 1
    return s


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict()
    d.line = node.start_mark.line + 1
    d.update(loader.construct_mapping(node, deep=True))
    return d


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _LineList:
    lst = _LineList(loader.construct_sequence(node, deep=True))
    lst.line = node.start_mark.line + 1
    return lst


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _line(obj: Any, default: int = 0) -> int:
    return int(getattr(obj, "line", default) or default)


# --------------------------------------------------------------------------------------------
# Compiled content
# --------------------------------------------------------------------------------------------

_SEVERITIES = {s.value for s in Severity}
_CATEGORIES = {c.value for c in Category}
_RULE_KEYS = {
    "id", "category", "severity", "uncertain", "patterns", "tags", "negatable", "past",
    "past_to", "discussion", "unless", "unless_message", "soften", "soften_to", "on_joke", "resolved_to",
    "own", "note",
}
_COMBO_KEYS = {"id", "category", "severity", "uncertain", "all", "note"}
_CONTEXT_LISTS = (
    "negation", "negation_fillers", "pseudo_negation", "clause_breaks", "past", "current",
    "current_strong", "future", "discussion", "joke", "resolution", "over", "past_tense",
    "hypothetical", "third_party", "first_person",
)


@dataclass(frozen=True)
class _Rule:
    id: str
    lang: str
    category: Category
    severity: Severity
    uncertain: bool
    parts: tuple[re.Pattern[str], ...]
    tags: frozenset[str]
    negatable: bool
    past: bool
    past_to: Severity
    discussion: bool
    unless: re.Pattern[str] | None
    soften: re.Pattern[str] | None
    soften_to: Severity
    on_joke: Severity | None
    resolved_to: Severity | None = None
    own: bool = False
    unless_message: re.Pattern[str] | None = None


@dataclass(frozen=True)
class _Combo:
    id: str
    category: Category
    severity: Severity
    uncertain: bool
    groups: tuple[tuple[str, ...], ...]


@dataclass
class _Context:
    negation: frozenset[str] = frozenset()
    fillers: frozenset[str] = frozenset()
    negation_window: int = 6
    pseudo: re.Pattern[str] | None = None
    past: re.Pattern[str] | None = None
    current: re.Pattern[str] | None = None
    current_strong: re.Pattern[str] | None = None
    future: re.Pattern[str] | None = None
    past_before: int = 60
    past_after: int = 45
    discussion: re.Pattern[str] | None = None
    joke: re.Pattern[str] | None = None
    resolution: re.Pattern[str] | None = None
    over: re.Pattern[str] | None = None
    past_tense: re.Pattern[str] | None = None
    hypothetical: re.Pattern[str] | None = None
    third_party: re.Pattern[str] | None = None
    first_person: re.Pattern[str] | None = None


@dataclass
class _Raw:
    """Collected content before compilation, with problems found along the way."""

    problems: list[tuple[str, int, str]] = field(default_factory=list)
    leet: dict[str, str] = field(default_factory=dict)
    leet_keep: list[str] = field(default_factory=list)
    emoji: dict[str, str] = field(default_factory=dict)
    common_vocab: dict[str, str] = field(default_factory=dict)
    langs: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def _alt(parts: Iterable[str]) -> str:
    return "|".join(f"(?:{p})" for p in parts)


class RiskDetector:
    def __init__(
        self,
        normalizer: Normalizer,
        rules: list[_Rule],
        combos: list[_Combo],
        contexts: dict[str, _Context],
        clause_breaks: re.Pattern[str],
        ignore: list[tuple[re.Pattern[str], frozenset[Category] | None, str]],
        *,
        prefilter: bool = True,
    ) -> None:
        self._normalizer = normalizer
        self._rules = rules
        self._combos = combos
        self._contexts = contexts
        self._clause_breaks = clause_breaks
        self._ignore = ignore
        self.languages = sorted(k for k in contexts if k != COMMON)
        self._parts: list[tuple[int, re.Pattern[str]]] = [(i, rx) for i, r in enumerate(rules) for rx in r.parts]
        # Without the prefilter (a small rule set) every rule runs on every text.
        lits = [required_literals(rx.pattern) if prefilter else None for _, rx in self._parts]
        lits += [required_literals(rx.pattern) if prefilter else None for rx, _, _ in ignore]
        self._prefilter = _Prefilter(lits)
        self.model: LearnedModel | None = None  # set by the loader when labelled messages exist

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dir(cls, content_dir: Path) -> RiskDetector:
        """Load `content_dir/risk/*.yaml`; raise RiskContentError naming file and line."""
        detector, problems = _build(Path(content_dir))
        if problems or detector is None:
            raise RiskContentError(problems or [(str(content_dir), 0, "no risk content")])
        return detector

    # ------------------------------------------------------------------ detection

    def normalize(self, text: str) -> str:
        return self._normalizer.normalize(text).text

    def detect(self, text: str, lang: str | None = None) -> RiskResult:
        """Classify one message. `lang` (e.g. "en", "es-MX") selects that language's rules;
        the other languages still run, but only their high and crisis findings count, since
        people switch languages. None, or an unknown language, runs everything in full.
        What the rules leave below high, the learned model may raise to high (bot/safety/risk_model.py)."""
        if not isinstance(text, str) or not text.strip():
            return NO_RISK
        result, held_back = self._detect_by_rules(text, lang)
        # The model does not overrule the rules where they read a risky phrase and held it back
        # (negated, in the past, a joke, someone else's story, an everyday meaning).
        if self.model is None or result.severity >= Severity.HIGH or held_back:
            return result
        finding = self.model.judge(self._normalizer.normalize(text).text)
        if finding is None:
            return result
        category = result.category or Category(finding.category)
        # Use and craving are flagged as they are (the lapse flow follows); for the other
        # categories the patient is asked first, since wording was all there was to go on.
        uncertain = category not in (Category.USE_DISCLOSURE, Category.SEVERE_CRAVING)
        learned = Match(category, Severity.HIGH, LEARNED_RULE, _evidence(finding.evidence), uncertain)
        return RiskResult(Severity.HIGH, category, (learned, *result.matches)[:MAX_MATCHES], uncertain)

    def _detect_by_rules(self, text: str, lang: str | None) -> tuple[RiskResult, bool]:
        """The rules' result, and whether a rule's phrase was found and held back."""
        primary = _base_lang(lang, self.languages)
        norm = self._normalizer.normalize(text)
        s = norm.text
        if not s:
            return NO_RISK, False
        candidates = self._prefilter.candidates(s)
        if not candidates:
            return NO_RISK, False
        seg = _Segments(s, self._clause_breaks)
        n_parts = len(self._parts)
        ignored = [
            (m.start(), m.end(), cats)
            for k, (rx, cats, _) in enumerate(self._ignore)
            if n_parts + k in candidates
            for m in rx.finditer(s, max(0, candidates[n_parts + k] - _LOOKBACK))
        ]
        joke_cache: dict[str, Any] = {}
        found: list[tuple[_Rule, Severity, bool, int, int]] = []
        held_back = bool(ignored)  # an everyday meaning of a risky phrase is in the message
        for idx in sorted(i for i in candidates if i < n_parts):
            rule_idx, part = self._parts[idx]
            rule = self._rules[rule_idx]
            for m in part.finditer(s, max(0, candidates[idx] - _LOOKBACK)):
                a, b = m.span()
                if a == b:
                    continue
                if ignored and _overlaps_ignored(ignored, a, b, rule.category):
                    held_back = True
                    continue
                outcome = self._judge(rule, s, a, b, seg, joke_cache)
                if outcome is None:
                    held_back = True
                    continue
                sev, unc = outcome
                if primary is not None and rule.lang not in (primary, COMMON) and sev < Severity.HIGH:
                    continue
                found.append((rule, sev, unc, a, b))
        if not found:
            return NO_RISK, held_back
        matches: list[_Hit] = []
        spans: dict[str, list[tuple[int, int]]] = {}
        # the longest finding of a rule first, so overlapping shorter ones of the same rule go
        found.sort(key=lambda f: (f[3], f[3] - f[4]))
        for rule, sev, unc, a, b in found:
            taken = spans.setdefault(rule.id, [])
            if any(a < tb and ta < b for ta, tb in taken):
                continue
            taken.append((a, b))
            oa, ob = norm.original_span(a, b)
            matches.append(_Hit(Match(rule.category, sev, rule.id, _evidence(text[oa:ob]), unc), a, b, rule.tags))
        present: set[str] = set()
        for h in matches:
            present.add(h.match.rule_id)
            present |= h.tags
            for sev in Severity:
                if sev <= h.match.severity:
                    present.add(f"{h.match.category.value}>={sev.value}")
                    present.add(f"*>={sev.value}")
        for combo in self._combos:
            if not all(any(k in present for k in group) for group in combo.groups):
                continue
            hit = _combo_hit(combo, matches)
            if hit is not None:
                parts = sorted(hit, key=lambda h: h.a)
                evidence = _evidence(" + ".join(h.match.evidence for h in parts))
                combo_match = Match(combo.category, combo.severity, combo.id, evidence, combo.uncertain)
                matches.append(_Hit(combo_match, parts[0].a, max(h.b for h in parts), frozenset()))
        real = [(h.match, h.a) for h in matches if h.match.severity > Severity.NONE]
        if not real:
            return NO_RISK, held_back
        real.sort(key=lambda t: (-t[0].severity.rank(), t[0].category.priority(), t[1]))
        top = real[0][0]
        top_level = [m for m, _ in real if m.severity == top.severity]
        uncertain = all(m.uncertain for m in top_level)
        out: list[Match] = []
        dedup: set[tuple[str, str]] = set()
        for m, _ in real:
            key = (m.rule_id, m.evidence)
            if key in dedup:
                continue
            dedup.add(key)
            out.append(m)
            if len(out) >= MAX_MATCHES:
                break
        return RiskResult(top.severity, top.category, tuple(out), uncertain), held_back

    def _judge(
        self, rule: _Rule, s: str, a: int, b: int, seg: _Segments, joke_cache: dict[str, Any]
    ) -> tuple[Severity, bool] | None:
        ctx = self._contexts[rule.lang]
        s0, s1 = seg.sentence(a)
        if rule.negatable and _negated(s[max(seg.clause_start(a), a - _NEGATION_REACH) : a], ctx):
            return None
        if rule.own and _not_own(s, a, b, s0, seg.clause_start(a), ctx):
            return None
        sentence = s[s0:s1]
        if rule.unless is not None and rule.unless.search(sentence):
            return None
        if rule.unless_message is not None and rule.unless_message.search(s):
            return None
        if rule.discussion and ctx.discussion is not None and ctx.discussion.search(sentence):
            return None
        sev = rule.severity
        unc = rule.uncertain
        if rule.past and _is_past(s, a, b, s0, s1, seg.clause_start(a), seg.clause_end(b), ctx, joke_cache):
            sev = min(sev, rule.past_to)
            unc = True
        if rule.soften is not None and rule.soften.search(sentence):
            sev = min(sev, rule.soften_to)
            unc = True
        if rule.resolved_to is not None and ctx.resolution is not None and ctx.resolution.search(s, a):
            sev = min(sev, rule.resolved_to)
            unc = True
        if rule.on_joke is not None and ctx.joke is not None:
            joking = joke_cache.get(rule.lang)
            if joking is None:
                joking = bool(ctx.joke.search(s))
                joke_cache[rule.lang] = joking
            if joking:
                sev = min(sev, rule.on_joke)
                unc = True
        if sev == Severity.NONE and (rule.severity > Severity.NONE or not rule.tags):
            return None  # history, hyperbole or a joke: it does not feed combinations either
        return sev, unc


def _overlaps_ignored(ignored: list[tuple[int, int, frozenset[Category] | None]], a: int, b: int, cat: Category) -> bool:
    for ia, ie, cats in ignored:
        if a < ie and ia < b and (cats is None or cat in cats):
            return True
    return False


def _base_lang(lang: str | None, known: Sequence[str]) -> str | None:
    if not lang:
        return None
    base = lang.strip().lower().replace("_", "-").split("-")[0]
    return base if base in known else None


def _evidence(span: str) -> str:
    span = " ".join(span.split())
    return span if len(span) <= EVIDENCE_MAX else span[: EVIDENCE_MAX - 1] + "…"


@dataclass(frozen=True)
class _Hit:
    match: Match
    a: int
    b: int
    tags: frozenset[str]


def _combo_hit(combo: _Combo, matches: list[_Hit]) -> list[_Hit] | None:
    """One match per condition, from different rules and different words."""
    picked: list[_Hit] = []
    for group in combo.groups:
        choice = None
        for h in matches:
            m = h.match
            if m.rule_id == combo.id or any(p.match.rule_id == m.rule_id or _same_words(h, p) for p in picked):
                continue
            if any(_satisfies(key, m, h.tags) for key in group):
                choice = h
                break
        if choice is None:
            return None
        picked.append(choice)
    return picked


def _same_words(x: _Hit, y: _Hit) -> bool:
    """Two findings on (nearly) the same words are one piece of evidence, not two."""
    overlap = min(x.b, y.b) - max(x.a, y.a)
    return overlap > 0.8 * max(x.b - x.a, y.b - y.a)


def _satisfies(key: str, m: Match, tags: frozenset[str]) -> bool:
    if ">=" in key:
        cat, _, sev = key.partition(">=")
        return (cat == "*" or m.category.value == cat) and m.severity >= Severity(sev)
    return key in tags or key == m.rule_id


class _Segments:
    """Sentence and clause boundaries of the normalised text."""

    _SENTENCE = re.compile(r"[.!?;\n]+|\s[-\u2013\u2014]+\s")
    _CLAUSE = re.compile(r"[,:()\"\u201c\u201d]")

    def __init__(self, s: str, breaks: re.Pattern[str]) -> None:
        self.n = len(s)
        sent: list[tuple[int, int]] = [(m.start(), m.end()) for m in self._SENTENCE.finditer(s)]
        sent += [(m.start(), m.end()) for m in breaks.finditer(s)]
        sent.sort()
        self._sent_starts = [0] + [e for _, e in sent]
        self._sent_ends = [st for st, _ in sent] + [self.n]
        clause = sorted(sent + [(m.start(), m.end()) for m in self._CLAUSE.finditer(s)])
        self._clause_starts = [0] + [e for _, e in clause]
        self._clause_ends = [st for st, _ in clause]

    def sentence(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_right(self._sent_starts, pos) - 1
        k = max(k, 0)
        start = self._sent_starts[k]
        end = self._sent_ends[k] if k < len(self._sent_ends) else self.n
        return start, max(end, start)

    def clause_start(self, pos: int) -> int:
        k = bisect.bisect_right(self._clause_starts, pos) - 1
        return self._clause_starts[max(k, 0)]

    def clause_end(self, pos: int) -> int:
        k = bisect.bisect_left(self._clause_ends, pos)
        return self._clause_ends[k] if k < len(self._clause_ends) else self.n


_TOKEN = re.compile(r"[a-z0-9_:]+")


def _negated(before: str, ctx: _Context) -> bool:
    if not ctx.negation or not before:
        return False
    if ctx.pseudo is not None:
        before = ctx.pseudo.sub(" _ ", before)
    tokens = _TOKEN.findall(before)
    for tok in reversed(tokens[-ctx.negation_window :]):
        if tok in ctx.negation:
            return True
        if tok not in ctx.fillers:
            return False
    return False


def _is_past(s: str, a: int, b: int, s0: int, s1: int, c0: int, c1: int, ctx: _Context,
             cache: dict[str, Any] | None = None) -> bool:
    """A past-time marker close by in the sentence, and no closer present-time marker in the
    same clause ("two years ago I overdosed, today I'm fine" is history)."""
    if ctx.past is None:
        return False
    lo = max(s0, a - ctx.past_before)
    hi = min(s1, b + ctx.past_after)
    past_d = _nearest(ctx.past, s[lo:hi], a - lo, b - lo)
    if past_d is None:
        past_d = _over(s, a, b, c0, ctx, cache)
    if past_d is None:
        return False
    if ctx.current_strong is not None and ctx.current_strong.search(s[s0:s1]):
        return False
    # an intention ("I'm going to", "I want to") in or just before the phrase is about now,
    # unless the past marker sits right against it ("I used to want to die")
    if ctx.future is not None and ctx.future.search(s, max(c0, a - _FUTURE_BEFORE), b):
        rel = a - lo
        if not any(rel - 1 <= m.end() <= rel for m in ctx.past.finditer(s[lo:hi])):
            return False
    if ctx.current is not None:
        clo, chi = max(lo, c0), min(hi, c1)
        cur_d = _nearest(ctx.current, s[clo:chi], a - clo, b - clo)
        if cur_d is not None and cur_d <= past_d:
            return False
    return True


def _over(s: str, a: int, b: int, c0: int, ctx: _Context, cache: dict[str, Any] | None = None) -> int | None:
    """A phrase in the past tense ("I wanted to die") in a message that says the feeling is
    over ("I don't feel like that anymore") is history; returns a distance like a past marker."""
    if ctx.over is None or ctx.past_tense is None:
        return None
    if not ctx.past_tense.search(s, max(c0, a - 24), b):
        return None
    key = f"over:{id(ctx)}"
    spans = cache.get(key) if cache is not None else None
    if spans is None:
        spans = [m.span() for m in ctx.over.finditer(s)]
        if cache is not None:
            cache[key] = spans
    for start, end in spans:
        if end <= a or start >= b:
            return len(s)  # farther than any marker in the phrase's own clause
    return None


def _not_own(s: str, a: int, b: int, s0: int, c0: int, ctx: _Context) -> bool:
    """The phrase is not the writer's own experience: a condition comes right before it
    ("what if I drank"), or the sentence's last subject before it is someone else ("my
    brother came over and got drunk")."""
    if ctx.hypothetical is not None and ctx.hypothetical.search(s, max(c0, a - 40), a):
        return True
    if ctx.third_party is None:
        return False
    if ctx.first_person is not None and ctx.first_person.search(s, a, b):
        return False
    last_other = -1
    for m in ctx.third_party.finditer(s, s0, a):
        last_other = m.start()
    if last_other < 0:
        return False
    return ctx.first_person is None or not ctx.first_person.search(s, last_other, a)


def _nearest(rx: re.Pattern[str], window: str, a: int, b: int) -> int | None:
    best: int | None = None
    for m in rx.finditer(window):
        if m.end() <= a:
            d = a - m.end()
        elif m.start() >= b:
            d = m.start() - b
        else:
            d = 0  # the marker is part of the phrase ("when I was using")
        if best is None or d < best:
            best = d
    return best


# --------------------------------------------------------------------------------------------
# Building from YAML
# --------------------------------------------------------------------------------------------


def _read_yaml(path: Path, rel: str, problems: list[tuple[str, int, str]]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append((rel, 0, f"cannot read: {exc}"))
        return None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problems.append((rel, line, f"YAML syntax error: {getattr(exc, 'problem', None) or exc}"))
        return None


def _str_list(value: Any, rel: str, where: str, problems: list[tuple[str, int, str]], parent: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((rel, _line(value, _line(parent)), f"{where} must be a list of strings"))
        return []
    return list(value)


def _check_regex(src: str, vocab: dict[str, str], rel: str, where: str, problems: list[tuple[str, int, str]],
                 *, bounded: bool = True) -> str | None:
    try:
        return compile_pattern(src, vocab, bounded=bounded)
    except (PatternError, re.error) as exc:
        problems.append((rel, _line(src), f"{where}: bad pattern {src!r}: {exc}"))
        return None


def _relpath(path: Path, content_dir: Path) -> str:
    try:
        return str(path.relative_to(content_dir))
    except ValueError:
        return str(path)


def _build(content_dir: Path, *, crisis_only: bool = False) -> tuple[RiskDetector | None, list[tuple[str, int, str]]]:
    """The detector from content_dir/risk, and the problems found. `crisis_only`: only the rules
    of crisis severity, with their contexts (negation, past, jokes ...), no combos and no
    learned model: a fraction of the build, for answering a crisis while the rest builds."""
    problems: list[tuple[str, int, str]] = []
    risk_dir = content_dir / RISK_SUBDIR
    files = sorted(risk_dir.glob("*.yaml")) if risk_dir.is_dir() else []
    if not files:
        problems.append((_relpath(risk_dir, content_dir), 0, "no risk content (expected risk/*.yaml)"))
        return None, problems
    docs: dict[str, tuple[str, Any]] = {}
    for path in files:
        rel = _relpath(path, content_dir)
        data = _read_yaml(path, rel, problems)
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append((rel, 1, "top level must be a mapping"))
            continue
        docs[path.stem.lower()] = (rel, data)
    if problems:
        return None, problems

    # normalisation data
    leet: dict[str, str] = {}
    keep: list[str] = []
    fillers: list[str] = []
    emoji: dict[str, str] = {}
    common_vocab: dict[str, str] = {}
    if COMMON in docs:
        rel, data = docs[COMMON]
        norm = data.get("normalize") or {}
        if not isinstance(norm, dict):
            problems.append((rel, _line(norm, 1), "normalize must be a mapping"))
            norm = {}
        for k, v in (norm.get("leet") or {}).items():
            if not isinstance(k, str) or not isinstance(v, str) or len(k) != 1 or len(v) != 1:
                problems.append((rel, _line(k, _line(norm)), f"leet entry {k!r}: {v!r} must map one character to one letter"))
                continue
            leet[k] = v
        for p in _str_list(norm.get("leet_keep"), rel, "leet_keep", problems, norm):
            try:
                re.compile(p)
                keep.append(p)
            except re.error as exc:
                problems.append((rel, _line(p), f"leet_keep: bad pattern {p!r}: {exc}"))
        fillers = _str_list(norm.get("fillers"), rel, "fillers", problems, norm)
        em = norm.get("emoji") or {}
        if not isinstance(em, dict):
            problems.append((rel, _line(em, 1), "emoji must be a mapping"))
            em = {}
        for k, v in em.items():
            key = "".join(ch for ch in str(k) if ch not in _INVISIBLE)
            if len(key) != 1:
                problems.append((rel, _line(k), f"emoji {k!r} must be a single character (joined sequences are not supported)"))
                continue
            if not isinstance(v, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", v):
                problems.append((rel, _line(v, _line(k)), f"emoji {k!r}: name {v!r} must be lower-case letters, digits, _"))
                continue
            emoji[key] = v
        common_vocab = _read_vocab(data, rel, problems)
    normalizer = Normalizer(leet, _compile(_alt(keep) if keep else r"(?!)"), emoji, fillers)

    rules: list[_Rule] = []
    combos: list[_Combo] = []
    contexts: dict[str, _Context] = {}
    breaks: list[str] = []
    ignore: list[tuple[re.Pattern[str], frozenset[Category] | None, str]] = []
    ctx_sources: dict[str, dict[str, list[str]]] = {}
    lang_vocab: dict[str, dict[str, str]] = {}
    for lang, (rel, data) in docs.items():
        vocab = dict(common_vocab)
        if lang != COMMON:
            vocab.update(_read_vocab(data, rel, problems))
        lang_vocab[lang] = vocab
        ctx_raw = data.get("context") or {}
        if not isinstance(ctx_raw, dict):
            problems.append((rel, _line(ctx_raw, 1), "context must be a mapping"))
            ctx_raw = {}
        srcs: dict[str, list[str]] = {}
        for key in _CONTEXT_LISTS:
            srcs[key] = _str_list(ctx_raw.get(key), rel, f"context.{key}", problems, ctx_raw)
        for key in ctx_raw:
            if key not in _CONTEXT_LISTS and key not in ("negation_window", "past_before", "past_after", "ignore"):
                problems.append((rel, _line(key), f"context: unknown key {key!r}"))
        ctx_sources[lang] = srcs
        for item in ctx_raw.get("ignore") or []:
            pat, cats = item, None
            if isinstance(item, dict):
                pat = item.get("pattern")
                raw_cats = _str_list(item.get("categories"), rel, "ignore.categories", problems, item)
                bad = [c for c in raw_cats if c not in _CATEGORIES]
                for c in bad:
                    problems.append((rel, _line(c, _line(item)), f"ignore: unknown category {c!r}"))
                cats = frozenset(Category(c) for c in raw_cats if c in _CATEGORIES) or None
            if not isinstance(pat, str):
                problems.append((rel, _line(item), "ignore entries need a pattern"))
                continue
            final = _check_regex(pat, vocab, rel, "context.ignore", problems)
            if final is not None:
                ignore.append((_compile(final), cats, lang))
        breaks += srcs["clause_breaks"]
        ctx = _Context()
        for key, attr in (("negation_window", "negation_window"), ("past_before", "past_before"), ("past_after", "past_after")):
            if key in ctx_raw:
                v = ctx_raw[key]
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    problems.append((rel, _line(ctx_raw), f"context.{key} must be a non-negative integer"))
                else:
                    setattr(ctx, attr, v)
        contexts[lang] = ctx
        for raw in data.get("rules") or []:
            if crisis_only and not (isinstance(raw, dict) and raw.get("severity") == Severity.CRISIS.value):
                continue
            rule = _read_rule(raw, lang, rel, vocab, problems)
            if rule is not None:
                rules.append(rule)
        for raw in [] if crisis_only else data.get("combos") or []:
            combo = _read_combo(raw, rel, problems)
            if combo is not None:
                combos.append(combo)
        for key in data:
            if key not in ("normalize", "vocab", "context", "rules", "combos", "language", "note", "model"):
                problems.append((rel, _line(key), f"unknown top-level key {key!r}"))

    # context regexes: per language (with its own vocab), and their union for the shared rules
    _REGEX_KEYS = (("pseudo_negation", "pseudo"), ("past", "past"), ("current", "current"),
                   ("current_strong", "current_strong"), ("future", "future"), ("discussion", "discussion"),
                   ("joke", "joke"),
                   ("resolution", "resolution"), ("over", "over"), ("past_tense", "past_tense"),
                   ("hypothetical", "hypothetical"), ("third_party", "third_party"),
                   ("first_person", "first_person"))
    finals_by_lang: dict[str, dict[str, list[str]]] = {}
    for lang in contexts:
        rel = docs[lang][0]
        vocab = lang_vocab[lang]
        finals_by_lang[lang] = {
            key: [f for f in (_check_regex(p, vocab, rel, f"context.{key}", problems) for p in ctx_sources[lang][key]) if f]
            for key, _ in _REGEX_KEYS
        }
    all_langs = [lang for lang in ctx_sources if lang != COMMON]
    for lang, ctx in contexts.items():
        src_langs = [lang] if lang != COMMON else all_langs + [COMMON]
        everyone = all_langs + [COMMON]
        if lang == COMMON:
            windows = [contexts[sl] for sl in all_langs] or [ctx]
            ctx.negation_window = max(c.negation_window for c in windows)
        ctx.negation = frozenset(fold_text(w).strip() for sl in src_langs for w in ctx_sources[sl]["negation"])
        ctx.fillers = frozenset(fold_text(w).strip() for sl in src_langs for w in ctx_sources[sl]["negation_fillers"])
        for key, attr in _REGEX_KEYS:
            # talk about a topic and joking are recognised in any language
            langs = everyone if key in ("discussion", "joke", "resolution") else src_langs
            finals = [f for sl in langs for f in finals_by_lang[sl][key]]
            source = "|".join(finals)
            if key == "hypothetical" and finals:
                source = f"(?:{source})[^a-z0-9]*$"  # a condition right before the phrase
            setattr(ctx, attr, _compile(source) if finals else None)
    break_finals = [f for f in (_check_regex(p, {}, "risk", "clause_breaks", problems, bounded=False) for p in breaks) if f]
    clause_breaks = _compile(f"{_BOUNDARY_L}(?:{'|'.join(break_finals)}){_BOUNDARY_R}" if break_finals else r"(?!)")

    # ids and combo references
    seen: dict[str, str] = {}
    known_refs: set[str] = set()
    for r in rules:
        if r.id in seen:
            problems.append((seen[r.id], 0, f"duplicate rule id {r.id!r}"))
        seen[r.id] = r.lang
        known_refs.add(r.id)
        known_refs |= r.tags
    for c in combos:
        if c.id in seen:
            problems.append(("risk", 0, f"duplicate rule/combo id {c.id!r}"))
        seen[c.id] = "combo"
        for group in c.groups:
            for key in group:
                if ">=" in key:
                    cat, _, sev = key.partition(">=")
                    if (cat != "*" and cat not in _CATEGORIES) or sev not in _SEVERITIES:
                        problems.append(("risk", 0, f"combo {c.id}: bad condition {key!r}"))
                elif key not in known_refs:
                    problems.append(("risk", _line(key), f"combo {c.id}: {key!r} is neither a rule id nor a tag"))
    if problems:
        return None, problems
    detector = RiskDetector(normalizer, rules, combos, contexts, clause_breaks, ignore, prefilter=not crisis_only)
    if not crisis_only:
        detector.model = _read_model(content_dir, docs.get(COMMON), normalizer, problems)
    if problems:
        return None, problems
    return detector, problems


def _read_model(
    content_dir: Path, common: tuple[str, Any] | None, normalizer: Normalizer, problems: list[tuple[str, int, str]]
) -> LearnedModel | None:
    """The learned second opinion (bot/safety/risk_model.py), from risk/labelled/*.jsonl; none when
    that folder is absent or `model.enabled` is false."""
    settings: Any = (common[1].get("model") if common else None) or {}
    rel = common[0] if common else RISK_SUBDIR
    if not isinstance(settings, dict):
        problems.append((rel, _line(settings, 1), "model must be a mapping"))
        return None
    threshold = settings.get("threshold", DEFAULT_MODEL_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        problems.append((rel, _line(settings), "model.threshold must be a number"))
        return None
    min_words = settings.get("min_words", 0)
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 0:
        problems.append((rel, _line(settings), "model.min_words must be a whole number, 0 or more"))
        return None
    folder = content_dir / RISK_SUBDIR / LABELLED_SUBDIR
    if settings.get("enabled", True) is False or not folder.is_dir():
        return None
    rows = read_labelled(sorted(folder.glob("*.jsonl")), lambda p: _relpath(p, content_dir), set(_CATEGORIES), problems)
    if not rows:
        return None
    return LearnedModel.train(rows, lambda t: normalizer.normalize(t).text, float(threshold), min_words)


def _read_vocab(data: dict[str, Any], rel: str, problems: list[tuple[str, int, str]]) -> dict[str, str]:
    raw = data.get("vocab") or {}
    if not isinstance(raw, dict):
        problems.append((rel, _line(raw, 1), "vocab must be a mapping"))
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", k):
            problems.append((rel, _line(k), f"vocab name {k!r} must be lower-case letters, digits, _"))
            continue
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = "|".join(f"(?:{x})" for x in v)
        elif isinstance(v, str):
            out[k] = v
        else:
            problems.append((rel, _line(k), f"vocab {k}: must be a string or a list of strings"))
    return out


def _severity(value: Any, rel: str, where: str, problems: list[tuple[str, int, str]], line: int) -> Severity | None:
    if not isinstance(value, str) or value not in _SEVERITIES:
        problems.append((rel, _line(value, line), f"{where}: severity must be one of {sorted(_SEVERITIES)}, not {value!r}"))
        return None
    return Severity(value)


def _read_head(
    raw: Any, kind: str, keys: set[str], rel: str, problems: list[tuple[str, int, str]]
) -> tuple[str, int, str, str, Severity] | None:
    """What rules and combos share: a mapping with a well-formed id, known keys, a category
    and a severity. Returns (id, line, where, category, severity), or None after a problem."""
    if not isinstance(raw, dict):
        problems.append((rel, _line(raw), f"each {kind} must be a mapping"))
        return None
    line = _line(raw)
    rid = raw.get("id")
    if not isinstance(rid, str) or not re.fullmatch(r"[a-z0-9_.\-]+", rid):
        problems.append((rel, line, f"{kind} id {rid!r} must be lower-case letters, digits, _ . -"))
        return None
    where = f"{kind} {rid}"
    for key in raw:
        if key not in keys:
            problems.append((rel, _line(key, line), f"{where}: unknown key {key!r}"))
    cat = raw.get("category")
    if cat not in _CATEGORIES:
        problems.append((rel, _line(cat, line), f"{where}: category must be one of {_CATEGORY_ORDER}, not {cat!r}"))
        return None
    return rid, line, where, cat, _severity(raw.get("severity"), rel, where, problems, line)


def _read_rule(raw: Any, lang: str, rel: str, vocab: dict[str, str], problems: list[tuple[str, int, str]]) -> _Rule | None:
    head = _read_head(raw, "rule", _RULE_KEYS, rel, problems)
    if head is None:
        return None
    rid, line, where, cat, sev = head
    past_to = _severity(raw.get("past_to", "none"), rel, f"{where} past_to", problems, line)
    soften_to = _severity(raw.get("soften_to", "none"), rel, f"{where} soften_to", problems, line)
    on_joke = raw.get("on_joke")
    joke_sev = _severity(on_joke, rel, f"{where} on_joke", problems, line) if on_joke is not None else None
    resolved = raw.get("resolved_to")
    resolved_sev = _severity(resolved, rel, f"{where} resolved_to", problems, line) if resolved is not None else None
    flags: dict[str, bool] = {}
    for key, default in (("uncertain", False), ("negatable", True), ("past", True), ("discussion", False),
                         ("own", False)):
        v = raw.get(key, default)
        if not isinstance(v, bool):
            problems.append((rel, _line(v, line), f"{where}: {key} must be true or false"))
            v = default
        flags[key] = v
    pats = _str_list(raw.get("patterns"), rel, f"{where} patterns", problems, raw)
    if not pats:
        problems.append((rel, line, f"{where}: needs at least one pattern"))
        return None
    finals = [f for f in (_check_regex(p, vocab, rel, where, problems) for p in pats) if f]
    unless = [f for f in (_check_regex(p, vocab, rel, f"{where} unless", problems, bounded=True)
                          for p in _str_list(raw.get("unless"), rel, f"{where} unless", problems, raw)) if f]
    unless_message = [f for f in (_check_regex(p, vocab, rel, f"{where} unless_message", problems, bounded=True)
                                  for p in _str_list(raw.get("unless_message"), rel, f"{where} unless_message",
                                                     problems, raw)) if f]
    soften = [f for f in (_check_regex(p, vocab, rel, f"{where} soften", problems, bounded=True)
                          for p in _str_list(raw.get("soften"), rel, f"{where} soften", problems, raw)) if f]
    tags = _str_list(raw.get("tags"), rel, f"{where} tags", problems, raw)
    if sev is None or past_to is None or soften_to is None or (on_joke is not None and joke_sev is None):
        return None
    if resolved is not None and resolved_sev is None:
        return None
    if len(finals) != len(pats):
        return None
    if sev == Severity.NONE and not tags:
        problems.append((rel, line, f"{where}: a rule with severity none must have tags (it only feeds combos)"))
        return None
    return _Rule(
        id=rid,
        lang=lang,
        category=Category(cat),
        severity=sev,
        uncertain=flags["uncertain"],
        parts=tuple(_compile(f) for f in finals),
        tags=frozenset(tags),
        negatable=flags["negatable"],
        past=flags["past"],
        past_to=past_to,
        discussion=flags["discussion"],
        unless=_compile("|".join(unless)) if unless else None,
        soften=_compile("|".join(soften)) if soften else None,
        soften_to=soften_to,
        on_joke=joke_sev,
        resolved_to=resolved_sev,
        own=flags["own"],
        unless_message=_compile("|".join(unless_message)) if unless_message else None,
    )


def _read_combo(raw: Any, rel: str, problems: list[tuple[str, int, str]]) -> _Combo | None:
    head = _read_head(raw, "combo", _COMBO_KEYS, rel, problems)
    if head is None:
        return None
    cid, line, where, cat, sev = head
    unc = raw.get("uncertain", False)
    groups_raw = raw.get("all")
    if not isinstance(groups_raw, list) or len(groups_raw) < 2:
        problems.append((rel, line, f"{where}: 'all' must list at least two conditions"))
        return None
    groups: list[tuple[str, ...]] = []
    for g in groups_raw:
        if isinstance(g, str):
            groups.append((g,))
        elif isinstance(g, list) and g and all(isinstance(x, str) for x in g):
            groups.append(tuple(g))
        else:
            problems.append((rel, _line(g, line), f"{where}: each condition is a tag, a rule id, a list of them, or category>=severity"))
            return None
    if sev is None or sev == Severity.NONE or not isinstance(unc, bool):
        if sev == Severity.NONE:
            problems.append((rel, line, f"{where}: severity none makes no sense for a combo"))
        if not isinstance(unc, bool):
            problems.append((rel, line, f"{where}: uncertain must be true or false"))
        return None
    return _Combo(cid, Category(cat), sev, unc, tuple(groups))


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


_detectors: dict[str, RiskDetector] = {}
_building = threading.Lock()  # two threads asking at once build it once

# The detector that screens the update being handled, when it is not the full one: while the full
# detector builds at start-up, a message the crisis rules find a crisis is answered with those
# (bot/safety/screening.py). Set per update (a context variable), never for the whole process.
in_use: ContextVar[RiskDetector | None] = ContextVar("risk_detector_in_use", default=None)


def _key(content_dir: Path | None) -> str:
    return str((content_dir or DEFAULT_CONTENT_DIR).resolve())


def get_detector(content_dir: Path | None = None) -> RiskDetector:
    """The detector for `content_dir` (default: the repository's content/), built once; inside
    an update screened with another detector (`in_use`), that one."""
    chosen = in_use.get()
    if chosen is not None:
        return chosen
    key = _key(content_dir)
    detector = _detectors.get(key)
    if detector is None:
        with _building:
            detector = _detectors.get(key)
            if detector is None:
                detector = _detectors[key] = RiskDetector.from_dir(Path(key))
    return detector


def detector_ready(content_dir: Path | None = None) -> bool:
    """Whether `get_detector` answers at once (built, or kept from `check_content`)."""
    return _key(content_dir) in _detectors


def built(content_dir: Path | None = None) -> RiskDetector | None:
    """The full detector for `content_dir` when it is there already (never builds it)."""
    return _detectors.get(_key(content_dir))


def install(detector: RiskDetector, content_dir: Path | None = None) -> bool:
    """Make `detector` the one `get_detector` answers with (read from the prepared file,
    bot/safety/risk_prepared.py), unless one is there already; whether it was installed."""
    key = _key(content_dir)
    with _building:
        if key in _detectors:
            return False
        _detectors[key] = detector
        return True


_crisis_detectors: dict[str, RiskDetector] = {}
_building_crisis = threading.Lock()


def crisis_detector(content_dir: Path | None = None) -> RiskDetector:
    """Only the crisis rules (with negation, past, jokes ...): built in a fraction of the full
    detector's time, to answer a crisis while the full detector builds. Finds a crisis where the
    full detector would; below crisis, its answer is not final (no combos, no learned model).
    Built once; a second thread asking meanwhile waits for the first."""
    key = _key(content_dir)
    with _building_crisis:
        detector = _crisis_detectors.get(key)
        if detector is None:
            detector, problems = _build(Path(key), crisis_only=True)
            if problems or detector is None:
                raise RiskContentError(problems or [(key, 0, "no risk content")])
            _crisis_detectors[key] = detector
    return detector


def check_content(content_dir: Path) -> list[tuple[str, int, str]]:
    """Problems in content_dir/risk/*.yaml as (file, line, problem); empty when valid. The
    detector built to check is kept, so a start that checks content does not build it twice."""
    detector, problems = _build(Path(content_dir))
    if detector is not None and not problems:
        _detectors.setdefault(_key(Path(content_dir)), detector)
    return problems


# --------------------------------------------------------------------------------------------
# `iop-bot risk check`
# --------------------------------------------------------------------------------------------


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iop-bot risk check", description="Run the risk detector on text.")
    p.add_argument("text", nargs="*", help="the text to check (words are joined with spaces)")
    p.add_argument("--jsonl", help="file of JSON lines with a 'text' key; '-' reads stdin")
    p.add_argument("--lang", help="language hint, e.g. en or es (default: all languages)")
    p.add_argument("--content-dir", help="content directory (default: the repository's content/)")
    return p


def _iter_jsonl(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            yield n, line


def main_check(argv: list[str], stdout: IO[str] | None = None, stdin: IO[str] | None = None) -> int:
    """`iop-bot risk check "text"` prints one JSON line; `--jsonl FILE` (or '-') prints one
    result per input line, in order, echoing the input's other keys (id, label, ...). A bad
    input line gives an {"error": ...} line. Returns 0, or 2 for a usage or file problem."""
    out = stdout or sys.stdout
    args_in = list(argv)
    if args_in and args_in[0] == "check" and (len(args_in) > 1):
        args_in = args_in[1:]
    parser = _check_parser()
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    try:
        detector = get_detector(Path(args.content_dir) if args.content_dir else None)
    except RiskContentError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.jsonl:
        if args.text:
            print("give either text or --jsonl, not both", file=sys.stderr)
            return 2
        if args.jsonl == "-":
            _run_jsonl(detector, stdin or sys.stdin, out, args.lang)
            return 0
        try:
            with open(args.jsonl, encoding="utf-8") as fh:
                _run_jsonl(detector, fh, out, args.lang)
        except OSError as exc:
            print(f"cannot read {args.jsonl}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:
            print(f"cannot read {args.jsonl}: not UTF-8 text", file=sys.stderr)
            return 2
        return 0
    if not args.text:
        parser.print_usage(sys.stderr)
        print('give the text to check, or --jsonl FILE', file=sys.stderr)
        return 2
    result = detector.detect(" ".join(args.text), args.lang)
    out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    out.flush()
    return 0


def _run_jsonl(detector: RiskDetector, stream: IO[str], out: IO[str], lang: str | None) -> None:
    for n, line in _iter_jsonl(stream):
        record: dict[str, Any]
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, ValueError) as exc:
            record = {"line": n, "error": f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}"}
        else:
            if not isinstance(obj, dict):
                record = {"line": n, "error": "each line must be a JSON object with a 'text' key"}
            elif not isinstance(obj.get("text"), str):
                record = {k: v for k, v in obj.items() if k != "text"}
                record.update({"line": n, "error": "missing 'text' string"})
            else:
                record = {k: v for k, v in obj.items() if k != "text"}
                try:
                    record.update(detector.detect(obj["text"], lang).to_dict())
                except Exception as exc:  # one bad line must not stop a batch
                    record = {"line": n, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
