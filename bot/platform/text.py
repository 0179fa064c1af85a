"""Fitting text into Telegram messages (4096 characters at most)."""

from __future__ import annotations

from collections.abc import Sequence

# Below Telegram's 4096, leaving room for a header or a count added by the caller.
MESSAGE_LIMIT = 4000


def pack(blocks: Sequence[str], *, limit: int = MESSAGE_LIMIT, sep: str = "\n\n") -> list[str]:
    """Join blocks into as few messages as fit under `limit` (long blocks split at lines)."""
    parts: list[str] = []
    current = ""
    pieces: list[tuple[str, str]] = []
    for block in blocks:
        if len(block) <= limit:
            pieces.append((sep, block))
            continue
        first = True
        for line in block.split("\n"):
            while len(line) > limit:
                pieces.append(("\n", line[:limit]))
                line = line[limit:]
            pieces.append((sep if first else "\n", line))
            first = False
    for joiner, piece in pieces:
        candidate = f"{current}{joiner}{piece}" if current else piece
        if len(candidate) > limit:
            parts.append(current)
            current = piece
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split a long text into messages, at paragraph breaks first, then at line breaks."""
    if len(text) <= limit:
        return [text]
    return pack(text.split("\n\n"), limit=limit)
