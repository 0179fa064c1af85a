"""Logging that never prints the bot token, names or message text (DESIGN §5)."""

from __future__ import annotations

import logging
import re

_TOKEN_RE = re.compile(r"\d{3,}:[A-Za-z0-9_-]{20,}")


class RedactTokenFilter(logging.Filter):
    """Defence in depth: masks anything shaped like a bot token in every record."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = _TOKEN_RE.sub("<token>", msg)
        if self.token:
            clean = clean.replace(self.token, "<token>")
        if clean != msg:
            record.msg = clean
            record.args = None
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
