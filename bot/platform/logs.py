"""Logging that never prints the bot token, names or message text (DESIGN §5).

The token travels in every Bot API URL, so it turns up in exception text (python-telegram-bot's
`InvalidToken`, an HTTP client's error naming the URL) and in tracebacks. `redact` masks it in
any text; the filter on the root handlers applies it to every record, message and traceback
alike, and `iop-bot`'s last words go through it too.
"""

from __future__ import annotations

import logging
import re

MASK = "<token>"
# Anything shaped like a bot token (digits, a colon, a long secret), known or not.
_TOKEN_RE = re.compile(r"\d{3,}(?::|%3[Aa])[A-Za-z0-9_-]{20,}")
_secrets: set[str] = set()
_plain = logging.Formatter()


def register_secret(token: str | None) -> None:
    """Remember the process's token (and its secret half on its own) so `redact` masks it."""
    if not token:
        return
    _secrets.add(token)
    _secrets.add(token.replace(":", "%3A"))
    secret = token.partition(":")[2]
    if len(secret) >= 8:
        _secrets.add(secret)


def redact(text: str, token: str | None = None) -> str:
    """`text` with the bot token (the registered one, `token`, or anything token-shaped) masked."""
    for secret in sorted(_secrets | ({token} if token else set()), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _TOKEN_RE.sub(MASK, text)


class RedactTokenFilter(logging.Filter):
    """Masks the token in a record's message, its formatted traceback and its stack."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        register_secret(token)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg = clean
            record.args = None
        if record.exc_info and not record.exc_text:
            # Formatted here, once, so that every handler prints the masked text.
            record.exc_text = _plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(level: str = "INFO", token: str | None = None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokenFilter(token))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and the URL contains the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # At DEBUG these print whole updates (names, typed text) and SQL parameters: never below INFO.
    for name in ("telegram", "aiosqlite", "asyncpg"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
