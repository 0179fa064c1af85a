"""The detector: the compiled rules and combinations applied to one message (steps 3 and 4 of
reading it, see the package), with the learned model's second opinion. Built by the loader
(bot/safety/risk/loader.py); pure and synchronous."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.vocabulary import Category, Severity
from bot.safety.risk.model import LearnedModel
from bot.safety.risk.normalize import Normalizer
from bot.safety.risk.prefilter import Prefilter, required_literals
from bot.safety.risk.result import DETECTED_SEVERITIES, NO_RISK, Match, RiskResult, priority

COMMON = "common"  # the rules and context of content/risk/common.yaml, in every language
LEARNED_RULE = "learned"  # the rule id of the learned model's findings
EVIDENCE_MAX = 80
MAX_MATCHES = 12
_FUTURE_BEFORE = 32  # characters before a phrase where an intention marker still applies
_LOOKBACK = 160  # a match may start this far before the first of its required words
_NEGATION_REACH = 160  # characters before a phrase searched for a negation cue (a few words)


@dataclass(frozen=True)
class Rule:
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
class Combo:
    id: str
    category: Category
    severity: Severity
    uncertain: bool
    groups: tuple[tuple[str, ...], ...]


@dataclass
class Context:
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


class RiskDetector:
    def __init__(
        self,
        normalizer: Normalizer,
        rules: list[Rule],
        combos: list[Combo],
        contexts: dict[str, Context],
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
        self._prefilter = Prefilter(lits)
        self.model: LearnedModel | None = None  # set by the loader when labelled messages exist

    def normalize(self, text: str) -> str:
        return self._normalizer.normalize(text).text

    def detect(self, text: str, lang: str | None = None) -> RiskResult:
        """Classify one message. `lang` (e.g. "en", "es-MX") selects that language's rules;
        the other languages still run, but only their high and crisis findings count, since
        people switch languages. None, or an unknown language, runs everything in full.
        What the rules leave below high, the learned model may raise to high (bot/safety/risk/model.py)."""
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
        found: list[tuple[Rule, Severity, bool, int, int]] = []
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
            for sev in DETECTED_SEVERITIES:
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
        real.sort(key=lambda t: (-t[0].severity.rank(), priority(t[0].category), t[1]))
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
        self, rule: Rule, s: str, a: int, b: int, seg: _Segments, joke_cache: dict[str, Any]
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


def _combo_hit(combo: Combo, matches: list[_Hit]) -> list[_Hit] | None:
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


def _negated(before: str, ctx: Context) -> bool:
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


def _is_past(s: str, a: int, b: int, s0: int, s1: int, c0: int, c1: int, ctx: Context,
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


def _over(s: str, a: int, b: int, c0: int, ctx: Context, cache: dict[str, Any] | None = None) -> int | None:
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


def _not_own(s: str, a: int, b: int, s0: int, c0: int, ctx: Context) -> bool:
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
