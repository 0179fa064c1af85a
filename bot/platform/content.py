"""Words and rules from `content/` (DESIGN §3): loading, lookup and validation.

Layout:
- `content/<lang>/messages/*.yaml`: patient- and staff-facing sentences, nested mappings
  flattened to dotted keys (`checkin.done`); a key missing in a language falls back to English.
- `content/<lang>/...`, `content/rules/...`, `content/resources/...`, `content/risk/...`:
  instruments, clinical rules and word lists, each validated by the module that uses it.

`iop-bot content check` runs every area's validator (`bot.areas.content_checks`) and reports each
problem with its file and line.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.platform.config import REPO_ROOT

DEFAULT_CONTENT_DIR = REPO_ROOT / "content"
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class Html(str):
    """Text that is already safe HTML: `Content.t` does not escape it."""


# A validator for part of `content/`: (file, line, problem) for each problem. Each area names its
# own (bot/areas.py); `check` runs the ones it is given.
Checker = Callable[[Path], Sequence[tuple[str, int, str]]]


def _flatten(prefix: str, node: Any, out: dict[str, str], where: dict[str, str], file: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out, where, file)
    elif isinstance(node, list):
        out[prefix] = node  # type: ignore[assignment]
        where[prefix] = file
    else:
        out[prefix] = "" if node is None else str(node)
        where[prefix] = file


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Content:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.messages: dict[str, dict[str, Any]] = {}
        self.languages: list[str] = sorted(
            p.name for p in root.iterdir() if p.is_dir() and (p / "messages").is_dir()
        )
        for lang in self.languages:
            flat: dict[str, Any] = {}
            where: dict[str, str] = {}
            for f in sorted((root / lang / "messages").glob("*.yaml")):
                # libyaml's parser where it is installed: the same data, a sixteenth of the time
                data = yaml.load(f.read_text(encoding="utf-8"), Loader=_SafeLoader) or {}
                part: dict[str, Any] = {}
                _flatten("", data, part, where, f.name)
                flat.update(part)
            self.messages[lang] = flat

    def has(self, key: str, lang: str) -> bool:
        return key in self.messages.get(lang, {}) or key in self.messages.get(FALLBACK_LANGUAGE, {})

    def raw(self, key: str, lang: str) -> Any:
        msgs = self.messages.get(lang) or {}
        if key in msgs:
            return msgs[key]
        return self.messages[FALLBACK_LANGUAGE][key]

    def t(self, key: str, lang: str, /, **kwargs: Any) -> str:
        """The sentence `key` in `lang` (required: the caller knows whom it speaks to, e.g. `ctx.lang`),
        with `{placeholders}` filled; a key the language lacks is English's.

        String values are HTML-escaped (anything a person typed is safe); wrap trusted markup in
        `Html` to keep it as is.
        """
        template = self.raw(key, lang)
        if not kwargs:
            return str(template)
        safe = {
            k: (v if isinstance(v, Html) or not isinstance(v, str) else html.escape(v, quote=False))
            for k, v in kwargs.items()
        }
        return str(template).format_map(safe)

    def data(self, relpath: str, lang: str | None) -> Any:
        """Raw YAML of a content file: with a language, `<lang>/<relpath>` falling back to English;
        with None, `<relpath>` (a file every language shares)."""
        if lang is not None:
            p = self.root / lang / relpath
            if not p.exists():
                p = self.root / FALLBACK_LANGUAGE / relpath
        else:
            p = self.root / relpath
        return _load_yaml(p)


@lru_cache(maxsize=64)
def _load_yaml_cached(path: str, mtime: float) -> Any:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _load_yaml(p: Path) -> Any:
    return _load_yaml_cached(str(p), p.stat().st_mtime)


_cache: dict[Path, Content] = {}


def get_content(root: Path | None = None) -> Content:
    root = (root or DEFAULT_CONTENT_DIR).resolve()
    if root not in _cache:
        _cache[root] = Content(root)
    return _cache[root]


def _check_messages(root: Path) -> list[tuple[str, int, str]]:
    problems: list[tuple[str, int, str]] = []
    fmt = string.Formatter()
    en_keys: dict[str, set[str]] = {}
    for lang_dir in sorted(p for p in root.iterdir() if (p / "messages").is_dir()):
        seen: dict[str, str] = {}
        for f in sorted((lang_dir / "messages").glob("*.yaml")):
            rel = str(f.relative_to(root))
            try:
                node = yaml.compose(f.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                line = getattr(getattr(exc, "problem_mark", None), "line", 0) + 1
                problems.append((rel, line, f"YAML syntax error: {getattr(exc, 'problem', exc)}"))
                continue
            if node is None:
                continue
            if not isinstance(node, yaml.MappingNode):
                problems.append((rel, node.start_mark.line + 1, "expected a mapping of keys to texts"))
                continue
            stack: list[tuple[str, yaml.Node]] = [("", node)]
            while stack:
                prefix, n = stack.pop()
                if isinstance(n, yaml.MappingNode):
                    for k, v in n.value:
                        key = f"{prefix}.{k.value}" if prefix else str(k.value)
                        if isinstance(v, yaml.MappingNode):
                            stack.append((key, v))
                            continue
                        line = k.start_mark.line + 1
                        if key in seen:
                            problems.append((rel, line, f"duplicate message key {key!r} (also in {seen[key]})"))
                        seen[key] = rel
                        if isinstance(v, yaml.ScalarNode):
                            try:
                                names = {fld for _, fld, _, _ in fmt.parse(str(v.value)) if fld}
                            except ValueError as exc:
                                problems.append((rel, line, f"{key}: bad placeholder: {exc}"))
                                continue
                            if lang_dir.name == FALLBACK_LANGUAGE:
                                en_keys[key] = names
                            elif key in en_keys and names - en_keys[key]:
                                problems.append((rel, line, f"{key}: placeholders {sorted(names - en_keys[key])} unknown in English"))
    return problems


def check(root: Path | None, checkers: Mapping[str, Checker]) -> list[Problem]:
    """Validate every content file: YAML syntax everywhere, the messages, then each checker
    (`bot.areas.content_checks()` gives every area's)."""
    root = (root or DEFAULT_CONTENT_DIR).resolve()
    problems: list[Problem] = []
    for f in sorted(root.rglob("*.yaml")):
        try:
            yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = (mark.line + 1) if mark is not None else 0
            problems.append(Problem(str(f.relative_to(root)), line, f"YAML syntax error: {getattr(exc, 'problem', None) or exc}"))
    if problems:
        return problems
    for p in _check_messages(root):
        problems.append(Problem(*p))
    for name, checker in sorted(checkers.items()):
        try:
            for p in checker(root):
                problems.append(Problem(*p))
        except Exception as exc:  # a checker must never hide the others
            problems.append(Problem(name, 0, f"checker failed: {exc}"))
    return problems


# Where a start records that the content passed `check` (in the data folder, next to the database).
CHECKED_FILE = "content-checked.json"
_CODE_DIR = Path(__file__).resolve().parents[1]


def fingerprint(root: Path) -> str:
    """A hash of every file under `root` and of the code that validates it (bot/, the version):
    it changes when either does."""
    from bot import __version__

    h = hashlib.sha256(f"iop-bot {__version__}".encode())
    for base, pattern in ((root.resolve(), "*"), (_CODE_DIR, "*.py")):
        for f in sorted(base.rglob(pattern)):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def pending_check(root: Path, data_dir: Path) -> str | None:
    """The fingerprint of this content and code when no start has recorded that they passed
    `check` (in `data_dir`); None when one has. The full check takes seconds a restart must not
    spend; `iop-bot content check` always runs it all."""
    key = fingerprint(root)
    try:
        if json.loads((data_dir / CHECKED_FILE).read_text(encoding="utf-8")).get("fingerprint") == key:
            return None
    except (OSError, ValueError, AttributeError):
        pass  # not checked yet (or an unreadable record): check now
    return key


def record_check(root: Path, data_dir: Path, key: str) -> None:
    """Record that the content and code of fingerprint `key` passed the full check. A data
    folder that cannot be written is logged, never fatal (the next start checks again)."""
    marker = data_dir / CHECKED_FILE
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = marker.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"fingerprint": key, "content_dir": str(root.resolve())}, out)
        os.replace(tmp, marker)
    except OSError as exc:
        logging.getLogger(__name__).warning("content: could not record the check (%s)", type(exc).__name__)
