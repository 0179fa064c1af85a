"""SQLite statements run in the event loop's own thread (the connection SQLAlchemy's aiosqlite
dialect is handed through `async_creator`).

aiosqlite runs every cursor call on a worker thread and wakes the event loop when it is done:
about 35 thread hand-offs per button press, each costing far more than the statement itself
(our statements are indexed lookups and single-row writes that SQLite finishes in microseconds).
Here the same calls run inline. What makes that safe:

- Writers never wait inside SQLite: `Database.transaction()` queues them on an asyncio lock and
  takes SQLite's write lock with `BEGIN IMMEDIATE` up front, retrying with asyncio sleeps if
  another process holds it; the busy timeout here is short (`BUSY_TIMEOUT_MS`), so no call can
  stall the loop for long.
- WAL mode: readers never wait for the writer.
- Commits do not fsync (synchronous=NORMAL in WAL); only checkpoints do, rarely.

PostgreSQL keeps asyncpg, which is asynchronous all the way down.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

# How long one statement may wait for a lock held by another process before SQLite reports
# "database is locked" (the event loop is blocked while it waits).
BUSY_TIMEOUT_MS = 50


class InlineCursor:
    """The asyncio cursor interface SQLAlchemy's adapter awaits, over a sqlite3 cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The asyncio connection interface SQLAlchemy's aiosqlite adapter uses, over sqlite3."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn

    @property
    def _connection(self) -> sqlite3.Connection | None:  # the adapter checks this before commit
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._live().isolation_level

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("Connection closed")
        return self._conn

    def begin(self, mode: str) -> None:
        """BEGIN DEFERRED or IMMEDIATE, issued straight to SQLite (SQLAlchemy asks for it in its
        `begin` event; going through its statement machinery would cost more than the work)."""
        self._live().execute(f"BEGIN {mode}")

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._live().cursor())

    async def commit(self) -> None:
        self._live().commit()

    async def rollback(self) -> None:
        self._live().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._live().create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close now (SQLAlchemy calls this when it terminates a connection)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def creator(path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Any:
    """An `async_creator` for `create_async_engine`: opens `path` in autocommit mode (SQLAlchemy
    issues BEGIN itself) with the pragmas every connection needs. A process that serves no one
    while it waits (a migration) may give a longer busy timeout."""

    async def connect() -> InlineConnection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        for pragma in ("journal_mode=WAL", f"busy_timeout={busy_timeout_ms}", "foreign_keys=ON", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        return InlineConnection(conn)

    return connect
