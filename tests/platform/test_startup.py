"""Start-up: the risk detector read back from the file an earlier start prepared
(bot/safety/risk/prepared.py) instead of compiled again, trusted only when it is exactly right; and what
`iop-bot run` does with it (bot/cli.py)."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import pickle
import re
import stat
import threading
from pathlib import Path

import pytest

from bot import cli
from bot.core.vocabulary import Severity
from bot.platform import content
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.safety.risk import compiled, registry
from bot.safety.risk import prepared as risk_prepared
from bot.safety.risk.detector import RiskDetector
from bot.safety.risk.loader import DEFAULT_CONTENT_DIR
from fakeapi import FakeTelegram
from tests.harness import BotHarness

# Worded only as a combination (a means emoji and a farewell): no single crisis rule finds it, so
# before the full detector is there the crisis rules alone cannot tell it is a crisis.
COMBINATION = "💊💊💊 goodbye everyone"
TEXTS = [COMBINATION, "I can't do this anymore, I'm going to kill myself tonight", "I drank last night", "hello"]


@pytest.fixture(scope="module")
def built() -> RiskDetector:
    return registry.get_detector()


@pytest.fixture
def empty(monkeypatch: pytest.MonkeyPatch) -> dict[str, RiskDetector]:
    """No detector in this process yet (as at a start); the tests' own comes back afterwards."""
    detectors: dict[str, RiskDetector] = {}
    monkeypatch.setattr(registry, "_detectors", detectors)
    monkeypatch.setattr(compiled, "_codes", None)
    return detectors


def _prepare(data: Path, detector: RiskDetector) -> Path:
    """The file a start that built `detector` writes."""
    prepared = risk_prepared.Prepared(data)
    assert prepared.load() is False  # nothing there yet
    registry.install(detector)
    assert prepared.save() is True
    return data / risk_prepared.FILE


def test_the_fixed_texts_still_mean_what_this_test_needs(built: RiskDetector) -> None:
    assert built.detect(COMBINATION).severity == Severity.CRISIS
    assert registry.crisis_detector().detect(COMBINATION).severity != Severity.CRISIS


def test_a_prepared_detector_is_read_back_and_answers_as_the_built_one(
    built: RiskDetector, empty: dict[str, RiskDetector], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    path = _prepare(data, built)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
    empty.clear()  # the next start

    caplog.set_level(logging.INFO, logger="bot.safety.risk.prepared")
    prepared = risk_prepared.Prepared(data)
    assert prepared.load() is True and prepared.tried.is_set()
    assert "read from the prepared file" in caplog.text
    loaded = registry.get_detector()
    assert loaded is not built
    for text in TEXTS + risk_prepared.probe_texts(DEFAULT_CONTENT_DIR):
        assert loaded.detect(text) == built.detect(text), text
    for lang in ("en", "es"):
        assert loaded.detect(COMBINATION, lang) == built.detect(COMBINATION, lang)
    assert prepared.save() is False  # what runs came from the file: nothing to write


def test_patterns_made_from_their_code_are_the_ones_re_compiles(built: RiskDetector) -> None:
    sources = {rx.pattern for rule in built._rules for rx in rule.parts}
    assert sources
    for src in sorted(sources):
        assert compiled.PatternCode.of(src).compile() == re.compile(src), src  # equal code, flags, source


@pytest.mark.parametrize("change", ["content", "code"])
def test_a_change_to_content_or_code_sets_it_aside_and_the_rebuilt_one_is_written(
    change: str, built: RiskDetector, empty: dict[str, RiskDetector], code: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "data"
    path = _prepare(data, built)
    before = path.read_bytes()
    empty.clear()
    if change == "code":
        (code / "rules.py").write_text("RULES = 2\n")
    else:  # content: the fingerprint covers every file of the content folder
        real = content.fingerprint
        monkeypatch.setattr(content, "fingerprint", lambda root: real(root) + "-edited")

    caplog.set_level(logging.INFO, logger="bot.safety.risk.prepared")
    prepared = risk_prepared.Prepared(data)
    assert prepared.load() is False
    assert "made for another fingerprint" in caplog.text
    assert registry.built() is None  # not used: the detector is built instead
    registry.install(built)  # (built, as screening does)
    assert prepared.save() is True
    assert path.read_bytes() != before
    empty.clear()
    assert risk_prepared.Prepared(data).load() is True  # the rewritten one is for this content and code


def _header(raw: bytes) -> tuple[dict[str, object], int]:
    end = raw.index(b"\n", len(risk_prepared.MAGIC))
    return json.loads(raw[len(risk_prepared.MAGIC) : end]), end


def _forged(raw: bytes, payload: bytes | None = None, probes: object = None) -> bytes:
    """The file with another payload (and a checksum that matches it) or other probes."""
    header, end = _header(raw)
    body = raw[end + 1 :] if payload is None else payload
    header.update(size=len(body), sha256=hashlib.sha256(body).hexdigest())
    if probes is not None:
        header["probes"] = probes
    return risk_prepared.MAGIC + json.dumps(header).encode() + b"\n" + body


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this file ran code",))


DAMAGE = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "a byte changed": lambda raw: raw[:-100] + bytes([raw[-100] ^ 0x01]) + raw[-99:],
    "empty": lambda raw: b"",
    "not ours": lambda raw: b"PK\x03\x04" + raw[4:],
    "header not JSON": lambda raw: risk_prepared.MAGIC + b"{oops\n" + raw[_header(raw)[1] + 1 :],
    "no header end": lambda raw: risk_prepared.MAGIC + b"x" * 100,
    "another class inside": lambda raw: _forged(raw, payload=pickle.dumps(_Evil())),
    "not a detector inside": lambda raw: _forged(raw, payload=pickle.dumps({"rules": []})),
    "other answers": lambda raw: _forged(raw, probes=[[COMBINATION, ["none", None, [], False]]]),
    "no probes": lambda raw: _forged(raw, probes=[]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_or_forged_file_is_never_trusted_and_is_written_again(
    damage: str, built: RiskDetector, empty: dict[str, RiskDetector], tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    path = _prepare(data, built)
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    empty.clear()

    caplog.set_level(logging.INFO, logger="bot.safety.risk.prepared")
    prepared = risk_prepared.Prepared(data)
    assert prepared.load() is False
    assert "the prepared file is set aside" in caplog.text
    assert registry.built() is None
    assert "this file ran code" not in capsys.readouterr().out
    registry.install(built)
    assert prepared.save() is True
    empty.clear()
    assert risk_prepared.Prepared(data).load() is True


def test_a_file_that_cannot_be_written_leaves_the_bot_running(
    built: RiskDetector, empty: dict[str, RiskDetector], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the folder should be")
    prepared = risk_prepared.Prepared(blocked)
    assert prepared.load() is False
    registry.install(built)
    assert prepared.save() is False
    assert "could not write the prepared file" in caplog.text


def _start(
    data: Path, monkeypatch: pytest.MonkeyPatch, rules: RiskDetector
) -> tuple[risk_prepared.Prepared, list[str], threading.Event]:
    """`iop-bot run`'s first step, recording whether the crisis rules were built."""
    built_rules: list[str] = []
    done = threading.Event()

    def crisis_detector(content_dir: Path | None = None) -> RiskDetector:
        built_rules.append("crisis rules")
        done.set()
        return rules

    monkeypatch.setattr(registry, "crisis_detector", crisis_detector)
    prepared = cli._prepare_risk_detector(data, DEFAULT_CONTENT_DIR)
    assert prepared.tried.wait(60)
    return prepared, built_rules, done


def test_run_screens_with_the_prepared_detector_from_the_first_update(
    built: RiskDetector, empty: dict[str, RiskDetector], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    _prepare(data, built)
    empty.clear()
    prepared, built_rules, _ = _start(data, monkeypatch, built)
    # Ready before the bot takes its first update: a crisis worded only as a combination gets the
    # crisis reply at once, and no crisis rules are built.
    assert prepared.loaded and registry.detector_ready()
    assert registry.get_detector().detect(COMBINATION).severity == Severity.CRISIS
    assert built_rules == []


def test_run_without_a_prepared_detector_answers_from_the_crisis_rules_first(
    built: RiskDetector, empty: dict[str, RiskDetector], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared, built_rules, done = _start(tmp_path / "data", monkeypatch, built)
    assert done.wait(60)
    assert not prepared.loaded and not registry.detector_ready()
    assert built_rules == ["crisis rules"]


async def test_the_collector_paused_for_start_up_resumes_once_the_bot_receives(
    fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    gc.disable()  # as `iop-bot run` does before it starts
    try:
        h = BotHarness(fake, db, clock)
        await h.start()
        try:
            assert gc.isenabled()
        finally:
            await h.stop()
    finally:
        gc.enable()
