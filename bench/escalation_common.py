"""Shared set-up for the escalation benchmarks: a temporary database, the fake Bot API, the bot."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.safety import service as safety  # noqa: E402
from bot.safety.service import Detector  # noqa: E402


def quiet_logs() -> None:
    """The chaos is intended: keep the figures readable."""
    import logging

    logging.basicConfig(level=logging.CRITICAL)


def pick_detector() -> tuple[str, Detector | None]:
    """The project's detector when its content loads (None: the bot's own); otherwise a small
    stand-in for the bot to screen with. Its name is printed."""
    try:
        from bot.safety.risk.registry import get_detector

        get_detector().detect("test")
        return "bot.safety.risk", None
    except Exception as exc:
        from tests.escalation_support import StubDetector

        return f"stand-in detector (bot.safety.risk unavailable: {type(exc).__name__})", StubDetector()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name}: n={len(ms)} p50={percentile(ms, 50):.0f} ms p95={percentile(ms, 95):.0f} ms "
        f"max={max(ms):.0f} ms mean={statistics.mean(ms):.0f} ms"
    )


__all__ = ["percentile", "pick_detector", "quiet_logs", "safety", "summary"]
