"""The prefilter: literal strings of which every match of a pattern must contain one, found in one
pass over the text, so a message wakes only the few rules that can possibly match it. It only
affects speed, never what is found."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bot.safety.risk.compiled import compile_regex

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


class Prefilter:
    """Finds, in one pass, which rules can possibly match a text."""

    def __init__(self, rule_lits: list[_Lits | None]) -> None:
        self.always = [i for i, lits in enumerate(rule_lits) if lits is None]
        self.by_lit: dict[str, list[int]] = {}
        for i, lits in enumerate(rule_lits):
            for lit in {x.replace(" ", "") for x in lits or ()}:
                if len(lit) >= 2 and i not in self.by_lit.get(lit, ()):
                    self.by_lit.setdefault(lit, []).append(i)
        self.max_len = max((len(x) for x in self.by_lit), default=0)
        self.regex = compile_regex("(?=(" + _trie_regex(self.by_lit) + "))") if self.by_lit else None

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
