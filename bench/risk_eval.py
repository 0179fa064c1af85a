"""Confusion figures of the risk detector on labelled JSONL files.

    .venv/bin/python bench/risk_eval.py content/risk/labelled/set01.jsonl [more.jsonl] [--show-misses]

Each line: {"text": ..., "label": "crisis" | "high" | "moderate" | "none", ...}. "Flagged" means
high or crisis. The summary mirrors the acceptance targets: every crisis message flagged, at
least 95% of high-risk messages (crisis + high) flagged, at most 10% false alerts on "none".
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.safety.risk.detector import RiskDetector  # noqa: E402
from bot.safety.risk.loader import DEFAULT_CONTENT_DIR, LABELLED_SUBDIR, RISK_SUBDIR  # noqa: E402
from bot.safety.risk.model import FLAGGED, LABELS, LearnedModel, read_labelled  # noqa: E402
from bot.safety.risk.registry import get_detector  # noqa: E402
from bot.safety.risk.result import DETECTED_CATEGORIES  # noqa: E402


def _count(confusion: Counter[tuple[str, str]], label: str, got: tuple[str, ...] = LABELS) -> int:
    return sum(confusion[(label, g)] for g in got)


def _unseen(det: RiskDetector, path: Path) -> RiskDetector:
    """The detector with its learned model retrained without `path`: how the model does on
    messages it has not seen (the rules may still have been written with them in view)."""
    if det.model is None:
        return det
    folder = DEFAULT_CONTENT_DIR / RISK_SUBDIR / LABELLED_SUBDIR
    others = [f for f in sorted(folder.glob("*.jsonl")) if f.resolve() != path.resolve()]
    problems: list[tuple[str, int, str]] = []
    rows = read_labelled(others, str, {c.value for c in DETECTED_CATEGORIES}, problems)
    if problems:
        raise SystemExit(f"labelled data has problems: {problems[:3]}")
    clone = copy.copy(det)
    clone.model = LearnedModel.train(rows, det.normalize, det.model.threshold, det.model.min_words)
    return clone


def evaluate(path: Path, show_misses: bool, unseen: bool = False) -> None:
    det = get_detector()
    if unseen:
        det = _unseen(det, path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    confusion: Counter[tuple[str, str]] = Counter()
    misses: list[str] = []
    started = time.perf_counter()
    for row in rows:
        result = det.detect(row["text"])
        got = result.severity.value
        confusion[(row["label"], got)] += 1
        flagged = got in FLAGGED
        if (row["label"] in FLAGGED and not flagged) or (row["label"] == "none" and flagged) or (
            row["label"] == "moderate" and got == "none"
        ):
            misses.append(f"  {row['label']:>8} -> {got:<8} {row['text']!r} {[m.rule_id for m in result.matches]}")
    per_message = (time.perf_counter() - started) / max(len(rows), 1) * 1000
    print(f"{path}: {len(rows)} messages, {per_message:.3f} ms each")
    print("label \\ got " + "".join(f"{g:>10}" for g in LABELS))
    for label in LABELS:
        print(f"{label:>11} " + "".join(f"{confusion[(label, g)]:>10}" for g in LABELS))
    crisis_hit, crisis_n = _count(confusion, "crisis", FLAGGED), _count(confusion, "crisis")
    risky_hit = crisis_hit + _count(confusion, "high", FLAGGED)
    risky_n = crisis_n + _count(confusion, "high")
    false_alerts, none_n = _count(confusion, "none", FLAGGED), _count(confusion, "none")
    all_flags = risky_hit + false_alerts + _count(confusion, "moderate", FLAGGED)
    print(
        f"crisis flagged: {crisis_hit}/{crisis_n}; high-risk flagged (recall): {risky_hit}/{risky_n}"
        f" ({risky_hit / max(risky_n, 1):.1%}); false alerts on none: {false_alerts}/{none_n}"
        f" ({false_alerts / max(none_n, 1):.1%}); precision of flags: {risky_hit}/{all_flags}"
        f" ({risky_hit / max(all_flags, 1):.1%})"
    )
    if show_misses and misses:
        print("misses:")
        print("\n".join(misses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument(
        "--unseen", action="store_true",
        help="retrain the learned model without each file before scoring it (an estimate for new messages)",
    )
    args = parser.parse_args(argv)
    for path in args.files:
        evaluate(path, args.show_misses, args.unseen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
