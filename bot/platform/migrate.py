"""Schema migrations with Alembic (`iop-bot migrate`; `iop-bot run` applies them first)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_REVISION = re.compile(r"""^revision(?:\s*:\s*str)?\s*=\s*["']([^"']+)["']""", re.M)
_DOWN = re.compile(r"""^down_revision(?:\s*:[^=\n]*)?=\s*["']([^"']+)["']""", re.M)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply pending migrations (synchronous; call it before the event loop or in a thread)."""
    from bot.platform.db import _prepare_sqlite_path, is_sqlite

    if is_sqlite(url):
        if revision == "head" and _sqlite_version(url) == _head() is not None:
            return  # up to date: no need to load Alembic (a good part of a second at every start)
        _prepare_sqlite_path(url)
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def _head() -> str | None:
    """The newest revision, read from the migration files' text; None unless that is one clear
    head (a merge, or anything unusual, is left to Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for f in (MIGRATIONS / "versions").glob("*.py"):
        text = f.read_text(encoding="utf-8")
        found = _REVISION.findall(text)
        if len(found) != 1:
            return None
        revisions.add(found[0])
        parents.update(_DOWN.findall(text))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _sqlite_version(url: str) -> str | None:
    """The revision an SQLite database is at (read-only), or None when that cannot be told."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or not Path(database).is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(Path(database).resolve().as_uri() + "?mode=ro", uri=True)) as c:
            rows = c.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)
