"""The crisis rules alone (`registry.crisis_detector`), which screen texts while the full detector
builds at start-up: the same crisis rules, and on every labelled message no crisis the full
detector would not also find."""

from __future__ import annotations

import json
from pathlib import Path

from bot.core.vocabulary import Severity
from bot.safety.risk import registry
from bot.safety.risk.loader import DEFAULT_CONTENT_DIR, LABELLED_SUBDIR, RISK_SUBDIR

LABELLED = sorted((DEFAULT_CONTENT_DIR / RISK_SUBDIR / LABELLED_SUBDIR).glob("*.jsonl"))


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_it_has_every_crisis_rule_and_nothing_else() -> None:
    full, crisis = registry.get_detector(), registry.crisis_detector()
    want = {(r.id, r.lang) for r in full._rules if r.severity == Severity.CRISIS}
    assert want and {(r.id, r.lang) for r in crisis._rules} == want
    assert crisis.model is None and crisis._combos == []


def test_on_every_labelled_message_it_agrees_with_the_full_detector_about_a_crisis() -> None:
    full, crisis = registry.get_detector(), registry.crisis_detector()
    rule_ids = {r.id for r in full._rules}
    assert LABELLED
    for path in LABELLED:
        for text in _texts(path):
            whole = full.detect(text)
            fast = crisis.detect(text).severity == Severity.CRISIS
            if fast:  # never a crisis reply the full detector would not give
                assert whole.severity == Severity.CRISIS, (path.name, text)
            by_rule = any(m.severity == Severity.CRISIS and m.rule_id in rule_ids for m in whole.matches)
            if by_rule:  # a crisis a rule finds is found at once (combos wait for the full detector)
                assert fast, (path.name, text)
