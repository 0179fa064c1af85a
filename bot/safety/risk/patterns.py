"""Patterns as a clinician writes them in `content/risk/*.yaml` (step 2 of reading a message, see
the package), made into the regex that runs: `{name}` vocab entries inserted, folded like the
text, a single space that also matches no space, and word boundaries at both ends."""

from __future__ import annotations

import re

from bot.safety.risk.compiled import compile_regex
from bot.safety.risk.normalize import APOSTROPHES, fold_text

_VOCAB_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_QUANT_START = frozenset("?*+{")
BOUNDARY_L = r"(?<![a-z0-9])"
BOUNDARY_R = r"(?![a-z0-9])"


class PatternError(ValueError):
    pass


def expand_vocab(src: str, vocab: dict[str, str], _depth: int = 0) -> str:
    if _depth > 8:
        raise PatternError("vocab references nest too deeply (a loop?)")

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in vocab:
            raise PatternError(f"unknown vocab entry {{{name}}}")
        return "(?:" + expand_vocab(vocab[name], vocab, _depth + 1) + ")"

    return _VOCAB_REF.sub(repl, src)


def prepare_pattern(src: str) -> str:
    """Fold a regex source like the text: lower-case, no accents or apostrophes, squeezed
    letters, and a literal single space that also matches no space (outside lookbehinds)."""
    if "(?P" in src:
        raise PatternError("named groups are not allowed")
    out: list[str] = []
    stack: list[bool] = []
    in_class = False
    prev_letter = ""
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            out.append(src[i : i + 2])
            i += 2
            prev_letter = ""
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c if not c.isalpha() else fold_text(c) or c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and src[i] == "^":
                out.append("^")
                i += 1
            if i < n and src[i] == "]":
                out.append("]")
                i += 1
            prev_letter = ""
            continue
        if c == "(":
            if src.startswith("(?<=", i) or src.startswith("(?<!", i):
                stack.append(True)
                out.append(src[i : i + 4])
                i += 4
            else:
                stack.append(False)
                out.append(c)
                i += 1
            prev_letter = ""
            continue
        if c == ")":
            if stack:
                stack.pop()
            out.append(c)
            i += 1
            prev_letter = ""
            continue
        if c == "{":
            j = src.find("}", i)
            if j < 0:
                out.append("\\{")
                i += 1
            else:
                out.append(src[i : j + 1])
                i = j + 1
            prev_letter = ""
            continue
        if c == " ":
            nxt = src[i + 1] if i + 1 < n else ""
            tail = "".join(out[-3:])[-2:]
            # optional only after a letter or a group that does not end in an open repeat
            # ("\w+ " must stay a real word boundary, or "keeps" would read as "keep s")
            optional = not any(stack) and nxt not in _QUANT_START and (
                (tail[-1:].isalnum()) or (tail[-1:] == ")" and tail[:1] not in "+*")
            )
            out.append(" ?" if optional else " ")
            i += 1
            prev_letter = ""
            continue
        folded = fold_text(c) if not c.isascii() or c.isupper() or c in APOSTROPHES else c
        for ch in folded:
            if "a" <= ch <= "z":
                if ch == prev_letter:
                    continue
                prev_letter = ch
            else:
                prev_letter = ""
            out.append(ch)
        i += 1
    if in_class:
        raise PatternError("unterminated character class")
    return "".join(out)


def compile_pattern(src: str, vocab: dict[str, str], *, bounded: bool = True) -> str:
    """Return the final regex source for one pattern (raises PatternError or re.error)."""
    body = prepare_pattern(expand_vocab(src, vocab))
    final = f"{BOUNDARY_L}(?:{body}){BOUNDARY_R}" if bounded else f"(?:{body})"
    compile_regex(final)
    return final
