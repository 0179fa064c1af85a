"""A second opinion for the risk detector, learned from the labelled messages in
`content/risk/labelled/*.jsonl` (DESIGN §2.6).

The rules in `content/risk/*.yaml` read a message the way a clinician wrote them down; people
find endless other ways to say the same thing. This model has seen every labelled message
(several thousand, English and Spanish, each written and labelled by people) and scores a new
one by the words, word pairs and letter sequences it shares with them: naive Bayes over the
detector's normalised text, trained when the detector loads (well under a second).

It can only raise a message the rules left below high, to high (never to crisis, never lower),
and not where the rules found a risky phrase and held it back (negated, past, a joke),
and what it finds is marked uncertain where a question to the patient fits ("Are you in danger
right now?"), so the crisis path asks before it alarms. Its threshold is in
`content/risk/common.yaml` (`model.threshold`, `model.min_words`: shorter messages are left
to the rules); `iop-bot risk check` shows its findings as rule
`learned`. Adding labelled messages is how a clinician teaches it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.core.vocabulary import Severity
from bot.safety.risk.result import DETECTED_SEVERITIES

# A labelled message's label is one of the detector's severities (most severe first); high and
# crisis are what the model learns to flag.
LABELS = tuple(s.value for s in reversed(DETECTED_SEVERITIES))
FLAGGED = tuple(s for s in LABELS if Severity(s) >= Severity.HIGH)
_WORD = re.compile(r"[a-z0-9ñ]+")
_SMOOTHING = 0.5
_CHAR_NGRAMS = (4, 5)


def features(normalised: str) -> set[str]:
    """Words, word pairs and 4–5 letter sequences (across word boundaries) of normalised text."""
    words = _WORD.findall(normalised)
    out = {"w:" + w for w in words}
    out.update(f"b:{a}_{b}" for a, b in zip(words, words[1:], strict=False))
    joined = " " + " ".join(words) + " "
    for n in _CHAR_NGRAMS:
        out.update(f"c{n}:" + joined[i : i + n] for i in range(len(joined) - n + 1))
    return out


@dataclass(frozen=True)
class Finding:
    score: float
    category: str
    evidence: str


class LearnedModel:
    def __init__(
        self, weights: dict[str, float], categories: dict[str, dict[str, float]], threshold: float, min_words: int
    ) -> None:
        self._weights = weights
        self._categories = categories
        self.threshold = threshold
        self.min_words = min_words

    @classmethod
    def train(
        cls, rows: list[tuple[str, str, str | None]], normalise: Callable[[str], str], threshold: float,
        min_words: int = 0,
    ) -> LearnedModel:
        """rows: (text, label, category). Flagged (crisis, high) against everything else; the
        category of a finding is the likeliest among the flagged rows' categories."""
        counts: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
        totals = [0, 0]
        by_cat: dict[str, Counter[str]] = {}
        cat_totals: Counter[str] = Counter()
        for text, label, category in rows:
            f = features(normalise(text))
            flagged = int(label in FLAGGED)
            totals[flagged] += 1
            counts[flagged].update(f)
            if flagged and category:
                by_cat.setdefault(category, Counter()).update(f)
                cat_totals[category] += 1
        a = _SMOOTHING
        p1, p0 = totals[1] + 2 * a, totals[0] + 2 * a
        weights = {
            k: math.log((counts[1][k] + a) / p1) - math.log((counts[0][k] + a) / p0)
            for k in set(counts[0]) | set(counts[1])
        }
        categories = {
            cat: {k: math.log((c[k] + a) / (cat_totals[cat] + 2 * a)) for k in c} for cat, c in by_cat.items()
        }
        return cls(weights, categories, threshold, min_words)

    def _score(self, f: set[str]) -> float:
        # Summed log-odds of the features, scaled by the square root of their number (a long
        # message is not flagged for being long).
        return sum(self._weights.get(k, 0.0) for k in f) / math.sqrt(len(f)) if f else float("-inf")

    def score(self, normalised: str) -> float:
        return self._score(features(normalised))

    def judge(self, normalised: str) -> Finding | None:
        """A finding when the message scores at or above the threshold, else None."""
        if len(_WORD.findall(normalised)) < self.min_words:
            return None  # short messages: the rules' exact wording is the better judge
        f = features(normalised)
        score = self._score(f)
        if score < self.threshold or not self._categories:
            return None

        def fit(cat: str) -> float:
            table = self._categories[cat]
            floor = min(table.values(), default=0.0) - 1.0
            return sum(table.get(k, floor) for k in f)

        category = max(self._categories, key=fit)
        words = sorted((k for k in f if k.startswith(("w:", "b:"))), key=lambda k: -self._weights.get(k, 0.0))
        evidence = ", ".join(k[2:].replace("_", " ") for k in words[:3] if self._weights.get(k, 0.0) > 0)
        return Finding(score, category, evidence or "(wording like labelled risk messages)")


def read_labelled(
    files: Iterable[Path], rel: Callable[[Path], str], categories: set[str], problems: list[tuple[str, int, str]]
) -> list[tuple[str, str, str | None]]:
    """Every labelled message in `files` (JSONL): one object per line with `text`, `label`
    (crisis, high, moderate, none) and, for crisis and high, `category`. Problems are reported
    with file and line."""
    rows: list[tuple[str, str, str | None]] = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append((rel(path), n, f"not JSON: {exc.msg}"))
                continue
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                problems.append((rel(path), n, "each line needs a non-empty \"text\""))
                continue
            label = row.get("label")
            if label not in LABELS:
                problems.append((rel(path), n, f"label must be one of {', '.join(LABELS)}"))
                continue
            category = row.get("category")
            if category in (None, "", "none"):
                category = None
            elif category not in categories:
                problems.append((rel(path), n, f"unknown category {category!r}"))
                continue
            rows.append((row["text"], label, category))
    return rows
