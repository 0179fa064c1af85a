"""The risk detector, prepared: written to the data folder once it is built, and read back at the
next start in a fraction of a second instead of seconds of compiling (DESIGN §2.6).

Building the detector compiles several hundred regular expressions from `content/risk/*.yaml`
and trains the learned model: seconds of CPU at every start, while the bot should be answering.
Once built, it is written to `data/risk-detector.bin` (600 in a 700 folder, beside the record of
the content check), each regular expression as the engine's compiled code, so reading it back
neither parses nor compiles anything (bot/safety/risk/compiled.py).

The file is trusted only when everything about it matches, and otherwise set aside (the detector
is built as before and the file written again):

- it was made from exactly this content and this code (`content.fingerprint`, the same key as
  the content check's), by this Python with this regular-expression engine;
- its size and SHA-256 are those recorded in its header (a torn or damaged file is refused);
- it holds nothing but the detector's own classes (a restricted unpickler: no other class or
  function can be named in it);
- read back, the detector gives exactly the answers the built one gave for a sample of the
  labelled messages (recorded in the header when it was written).

File layout: the line `iop-bot risk detector`, one line of JSON (the header), then the detector.
"""

from __future__ import annotations

import _sre
import functools
import hashlib
import io
import json
import logging
import os
import pickle
import re
import sys
import threading
from pathlib import Path
from typing import Any

from bot.safety.risk import compiled, registry
from bot.safety.risk.compiled import PatternCode, supported
from bot.safety.risk.detector import RiskDetector
from bot.safety.risk.loader import LABELLED_SUBDIR, RISK_SUBDIR
from bot.safety.risk.model import read_labelled
from bot.safety.risk.result import DETECTED_CATEGORIES

log = logging.getLogger(__name__)

FILE = "risk-detector.bin"
MAGIC = b"iop-bot risk detector\n"
FORMAT = 1
PROBES = 64  # labelled messages whose answers a file read back must give again
# Texts checked when there are no labelled messages (a clinic's content may have none).
_FALLBACK_PROBES = (
    "I can't do this anymore, I'm going to kill myself tonight",
    "I took all my pills, goodbye everyone",
    "I drank last night",
    "hello, how are you",
)
_HEADER_MAX = 1 << 20  # a header line longer than this is not one of ours
# What the file may name: the detector's own classes, and how a compiled pattern is made again.
_ALLOWED = frozenset(
    {
        ("bot.safety.risk.detector", "RiskDetector"),
        ("bot.safety.risk.detector", "Rule"),
        ("bot.safety.risk.detector", "Combo"),
        ("bot.safety.risk.detector", "Context"),
        ("bot.safety.risk.normalize", "Normalizer"),
        ("bot.safety.risk.prefilter", "Prefilter"),
        ("bot.safety.risk.loader", "_LineStr"),
        ("bot.core.vocabulary", "Severity"),
        ("bot.core.vocabulary", "Category"),
        ("bot.safety.risk.model", "LearnedModel"),
        (__name__, "_pattern"),
    }
)


class PreparedFileError(Exception):
    """The prepared file cannot be used (the message says why, without any of its content)."""


class _Stale(PreparedFileError):
    """Made for other content, code or Python: expected after any change, not a fault."""


def _pattern(source: str, flags: int, code: bytes, groups: int, groupindex: dict[str, int],
             indexgroup: tuple[str | None, ...]) -> re.Pattern[str]:
    return PatternCode(source, flags, code, groups, groupindex, indexgroup).compile()


def key(content_dir: Path) -> dict[str, Any]:
    """What a prepared file must have been made for: this content and code, this Python."""
    from bot.platform.content import fingerprint

    return {
        "format": FORMAT,
        "fingerprint": fingerprint(content_dir),
        "python": sys.version,
        "sre": getattr(_sre, "MAGIC", None),
        "codesize": getattr(_sre, "CODESIZE", None),
        "byteorder": sys.byteorder,
    }


def answer(detector: RiskDetector, text: str) -> list[Any]:
    """What a probe compares: severity, category, the rules found, whether uncertain."""
    r = detector.detect(text)
    return [r.severity.value, r.category.value if r.category else None, sorted({m.rule_id for m in r.matches}), r.uncertain]


def probe_texts(content_dir: Path) -> list[str]:
    """A fixed sample of the labelled messages (every kind of label), or a few texts when none."""
    folder = content_dir / RISK_SUBDIR / LABELLED_SUBDIR
    rows: list[tuple[str, str, str | None]] = []
    if folder.is_dir():
        problems: list[tuple[str, int, str]] = []
        rows = read_labelled(sorted(folder.glob("*.jsonl")), str, {c.value for c in DETECTED_CATEGORIES}, problems)
    if not rows:
        return list(_FALLBACK_PROBES)
    step = max(1, len(rows) // PROBES)
    return [text for text, _, _ in rows[::step][:PROBES]]


# --------------------------------------------------------------------------------------------
# Writing and reading
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _code_of(source: str, flags: int) -> PatternCode:
    return PatternCode.of(source, flags)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, re.Pattern):
            code = compiled.kept_code(obj)
            if code is None:  # compiled before its code was kept: compiled again to be written
                code = _code_of(obj.pattern, obj.flags)
            return _pattern, (code.source, code.flags, code.code, code.groups, code.groupindex, code.indexgroup)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise PreparedFileError("names something other than the detector")
        return super().find_class(module, name)


def write(data_dir: Path, detector: RiskDetector, made_for: dict[str, Any], content_dir: Path) -> Path:
    """Write `detector` (built for `made_for`, see `key`) to `data_dir`, atomically, 600."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(detector)
    payload = buf.getvalue()
    header = {
        **made_for,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "probes": [[text, answer(detector, text)] for text in probe_texts(content_dir)],
    }
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC)
            out.write(json.dumps(header, ensure_ascii=True).encode("ascii") + b"\n")
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read(path: Path, made_for: dict[str, Any]) -> RiskDetector:
    """The detector in `path`, when it was made for `made_for` and passes every check; raises
    PreparedFileError (or OSError) otherwise."""
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise PreparedFileError("not a prepared risk detector")
    end = raw.find(b"\n", len(MAGIC), len(MAGIC) + _HEADER_MAX)
    if end < 0:
        raise PreparedFileError("no header")
    try:
        header = json.loads(raw[len(MAGIC) : end])
    except ValueError:
        raise PreparedFileError("the header is not JSON") from None
    if not isinstance(header, dict):
        raise PreparedFileError("the header is not a mapping")
    for name, value in made_for.items():
        if header.get(name) != value:
            raise _Stale(f"made for another {name}")
    payload = memoryview(raw)[end + 1 :]
    if len(payload) != header.get("size") or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise PreparedFileError("its size or checksum does not match")
    probes = header.get("probes")
    if not isinstance(probes, list) or not probes:
        raise PreparedFileError("no probes")
    try:
        detector = _Unpickler(io.BytesIO(payload)).load()
    except PreparedFileError:
        raise
    except Exception as exc:
        raise PreparedFileError(f"could not be read ({type(exc).__name__})") from None
    if not isinstance(detector, RiskDetector):
        raise PreparedFileError("holds no detector")
    for probe in probes:
        if not (isinstance(probe, list) and len(probe) == 2 and isinstance(probe[0], str)):
            raise PreparedFileError("a malformed probe")
        try:
            got = answer(detector, probe[0])
        except Exception as exc:
            raise PreparedFileError(f"failed on a probe ({type(exc).__name__})") from None
        if got != probe[1]:
            raise PreparedFileError("gives other answers than the detector it was made from")
    return detector


# --------------------------------------------------------------------------------------------
# At start-up
# --------------------------------------------------------------------------------------------


class Prepared:
    """The prepared detector of one `iop-bot run`: read at start, written once built."""

    def __init__(self, data_dir: Path, content_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.content_dir = Path(registry.content_key(content_dir))  # the folder `registry.get_detector()` reads
        self.made_for: dict[str, Any] | None = None
        self.loaded = False  # the detector in use came from the file
        self.tried = threading.Event()  # set once the file was tried (loaded or not)
        self._lock = threading.Lock()
        self._written = False
        compiled.keep_codes(supported())  # a detector built from now on can be written

    def load(self) -> bool:
        """Read the prepared file and, when it passes every check, make it the detector
        (`registry.get_detector`); otherwise say why in one line. Never raises."""
        try:
            if not supported():
                log.info("risk detector: this Python cannot read a prepared detector; building it")
                return False
            self.made_for = key(self.content_dir)
            path = self.data_dir / FILE
            try:
                detector = read(path, self.made_for)
            except FileNotFoundError:
                log.info("risk detector: none prepared yet; building it")
                return False
            except _Stale as exc:
                log.info("risk detector: the prepared one was %s; building it", exc)
                return False
            except (PreparedFileError, OSError) as exc:
                reason = exc if isinstance(exc, PreparedFileError) else type(exc).__name__
                log.warning("risk detector: the prepared file is set aside (%s); building it", reason)
                return False
            self.loaded = registry.install(detector, self.content_dir)
            if self.loaded:
                compiled.keep_codes(False)
                log.info("risk detector: read from the prepared file")
            return self.loaded
        except Exception:
            log.exception("risk detector: could not try the prepared file; building it")
            return False
        finally:
            self.tried.set()

    def save(self) -> bool:
        """Write the detector in use, when it was built in this process (not read from the file);
        once. A failure is logged, never raised: the next start builds it again."""
        with self._lock:
            detector = registry.built(self.content_dir)
            if self.loaded or self._written or self.made_for is None or detector is None:
                return False
            self._written = True  # tried once: a failure is not retried in this process
            try:
                write(self.data_dir, detector, self.made_for, self.content_dir)
            except Exception as exc:
                log.warning("risk detector: could not write the prepared file (%s)", type(exc).__name__)
                return False
            finally:
                compiled.keep_codes(False)
            log.info("risk detector: prepared for the next start")
            return True
