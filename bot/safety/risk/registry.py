"""The detectors of this process, one per content folder, each built once however many threads
ask: the full detector (`get_detector`), and the crisis rules alone (`crisis_detector`) that
answer a crisis while the full one builds at start-up."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from pathlib import Path

from bot.safety.risk.detector import RiskDetector
from bot.safety.risk.loader import DEFAULT_CONTENT_DIR, RiskContentError, build, load_detector

_detectors: dict[str, RiskDetector] = {}
_building = threading.Lock()  # two threads asking at once build it once

# The detector that screens the update being handled, when it is not the full one: while the full
# detector builds at start-up, a message the crisis rules find a crisis is answered with those
# (bot/safety/screening.py). Set per update (a context variable), never for the whole process.
in_use: ContextVar[RiskDetector | None] = ContextVar("risk_detector_in_use", default=None)


def content_key(content_dir: Path | None = None) -> str:
    """The folder a detector is kept under: `content_dir` (default: the repository's content/),
    resolved."""
    return str((content_dir or DEFAULT_CONTENT_DIR).resolve())


def get_detector(content_dir: Path | None = None) -> RiskDetector:
    """The detector for `content_dir` (default: the repository's content/), built once; inside
    an update screened with another detector (`in_use`), that one."""
    chosen = in_use.get()
    if chosen is not None:
        return chosen
    key = content_key(content_dir)
    detector = _detectors.get(key)
    if detector is None:
        with _building:
            detector = _detectors.get(key)
            if detector is None:
                detector = _detectors[key] = load_detector(Path(key))
    return detector


def detector_ready(content_dir: Path | None = None) -> bool:
    """Whether `get_detector` answers at once (built, or kept from `check_content`)."""
    return content_key(content_dir) in _detectors


def built(content_dir: Path | None = None) -> RiskDetector | None:
    """The full detector for `content_dir` when it is there already (never builds it)."""
    return _detectors.get(content_key(content_dir))


def install(detector: RiskDetector, content_dir: Path | None = None) -> bool:
    """Make `detector` the one `get_detector` answers with (read from the prepared file,
    bot/safety/risk/prepared.py), unless one is there already; whether it was installed."""
    key = content_key(content_dir)
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
    key = content_key(content_dir)
    with _building_crisis:
        detector = _crisis_detectors.get(key)
        if detector is None:
            detector, problems = build(Path(key), crisis_only=True)
            if problems or detector is None:
                raise RiskContentError(problems or [(key, 0, "no risk content")])
            _crisis_detectors[key] = detector
    return detector


def check_content(content_dir: Path) -> list[tuple[str, int, str]]:
    """Problems in content_dir/risk/*.yaml as (file, line, problem); empty when valid. The
    detector built to check is kept, so a start that checks content does not build it twice."""
    detector, problems = build(Path(content_dir))
    if detector is not None and not problems:
        _detectors.setdefault(content_key(Path(content_dir)), detector)
    return problems
