"""The detector's compiled patterns: one cache for all of them, and, while a built detector is to
be written to the data folder (bot/safety/risk/prepared.py), the engine's code of each, so the
next start makes the same patterns again without parsing or compiling anything."""

from __future__ import annotations

import _sre
import functools
import re
from array import array
from dataclasses import dataclass
from re import _compiler, _parser  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PatternCode:
    """A regular expression as `re` compiles it: its source, flags and the engine's code, from
    which the same pattern is made again without parsing or compiling."""

    source: str
    flags: int
    code: bytes  # the engine's code words, as array("I")
    groups: int
    groupindex: dict[str, int]
    indexgroup: tuple[str | None, ...]

    @classmethod
    def of(cls, source: str, flags: int = 0) -> PatternCode:
        """What `re.compile(source, flags)` compiles (the steps of `re._compiler.compile`)."""
        p = _parser.parse(source, flags)
        code = _compiler._code(p, flags)
        indexgroup: list[str | None] = [None] * p.state.groups
        for name, i in p.state.groupdict.items():
            indexgroup[i] = name
        return cls(
            source, flags | p.state.flags, array("I", code).tobytes(), p.state.groups - 1,
            dict(p.state.groupdict), tuple(indexgroup),
        )

    def compile(self) -> re.Pattern[str]:
        # The engine checks the code it is given (it refuses malformed code).
        return _sre.compile(  # type: ignore[no-any-return]
            self.source, self.flags, array("I", self.code).tolist(), self.groups, self.groupindex, self.indexgroup
        )


def supported() -> bool:
    """Whether this Python's engine can be given compiled code as `PatternCode` keeps it."""
    return (
        array("I").itemsize == getattr(_sre, "CODESIZE", 0)
        and hasattr(_sre, "compile") and hasattr(_compiler, "_code") and hasattr(_parser, "parse")
    )


# The compiled code of each pattern the detector compiles, kept while a built detector is to be
# written to the data folder, so the next start reads it back instead of compiling again
# (bot/safety/risk/prepared.py); None when nothing is to be written (tests, `iop-bot risk check`).
_codes: dict[re.Pattern[str], PatternCode] | None = None


def keep_codes(on: bool) -> None:
    """Keep (or stop keeping, and forget) the compiled code of the patterns compiled from now on."""
    global _codes
    _codes = {} if on else None


def kept_code(rx: re.Pattern[str]) -> PatternCode | None:
    """The code kept for `rx` when it was compiled (see `keep_codes`), if any."""
    codes = _codes
    return codes.get(rx) if codes is not None else None


def _compile_source(source: str) -> re.Pattern[str]:
    codes = _codes
    if codes is None:
        return re.compile(source)
    code = PatternCode.of(source)
    rx = code.compile()
    codes[rx] = code
    return rx


# Every pattern is compiled when checked and again in its rule; there are more of them than
# `re` keeps in its own cache, so loading keeps its own.
compile_regex = functools.lru_cache(maxsize=None)(_compile_source)
