"""Database plumbing: async engine, sessions, units of work (DESIGN §3, §5).

SQLite: WAL, a busy timeout and foreign keys on every connection; writing transactions begin
IMMEDIATE so concurrent read-modify-write never loses an update. PostgreSQL: the same code with
`postgresql+asyncpg://`; claims use `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from bot.platform import sqlite_inline

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


WRITE_WAIT_SECONDS = 30.0


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out, on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def conflict_insert(session: AsyncSession, target: Any) -> Any:
    """`INSERT` for the session's database that can take `ON CONFLICT` (PostgreSQL, SQLite)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # loaded only for PostgreSQL

        return pg_insert(target)
    return sqlite_insert(target)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _prepare_sqlite_path(url: str) -> None:
    """The database's folder (700) and file (600), private to the bot's user when created here:
    they hold patients' data. SQLite gives its -wal and -shm files the database file's mode."""
    u = make_url(url)
    if u.database and u.database != ":memory:":
        path = Path(u.database)
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_engine(url: str, *, sqlite_busy_timeout_ms: int = sqlite_inline.BUSY_TIMEOUT_MS, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        _prepare_sqlite_path(url)
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 10)
        path = make_url(url).database or ":memory:"
        # Statements run inline in the event loop (bot/platform/sqlite_inline.py says why and what makes
        # it safe); the connection is opened with WAL, a short busy timeout and foreign keys on.
        # hide_parameters: an error message never carries the values (names, typed text).
        engine = create_async_engine(
            url, async_creator=sqlite_inline.creator(path, sqlite_busy_timeout_ms), hide_parameters=True, **kwargs
        )

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.connection.driver_connection.begin(mode)

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    u = make_url(url)
    schema = u.query.get("search_path")
    if schema:
        # `?search_path=NAME` keeps the tables in one schema (several installations, or tests).
        u = u.difference_update_query(["search_path"])
        kwargs.setdefault("connect_args", {})["server_settings"] = {"search_path": str(schema)}
    return create_async_engine(u, pool_pre_ping=True, hide_parameters=True, **kwargs)


class Database:
    """One engine, and two kinds of short-lived session: read and write (a unit of work)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.engine = create_engine(url, **engine_kwargs)
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.sqlite else self.engine
        self._write = async_sessionmaker(writer, expire_on_commit=False)
        # SQLite has one writer at a time. Writers wait their turn here, in the event loop, rather
        # than in SQLite's busy handler, which sleeps in growing steps and wrecks latency.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.sqlite else None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-only session (rolled back at the end)."""
        async with self._read() as s:
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits on success, rolls back on error."""
        if self._write_lock is None:
            async with self._write() as s, s.begin():
                yield s
            return
        async with asyncio.timeout(WRITE_WAIT_SECONDS):
            await self._write_lock.acquire()
        try:
            s = await self._begin_immediate()
            try:
                yield s
                await s.commit()
            except BaseException:
                await s.rollback()
                raise
            finally:
                await s.close()
        finally:
            self._write_lock.release()

    async def _begin_immediate(self) -> AsyncSession:
        """A session holding SQLite's write lock. Another process may hold it for a moment (a
        migration, a backup): wait in the event loop, not in SQLite's busy handler."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_WAIT_SECONDS
        delay = 0.005
        while True:
            s = self._write()
            try:
                await s.connection()  # BEGIN IMMEDIATE
                return s
            except (OperationalError, sqlite3.OperationalError) as exc:
                await s.close()
                if "locked" not in str(exc) or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def create_all(self) -> None:
        """Create every table whose model is imported (tests and benchmarks; production uses
        migrations). `bot.schema` imports them all; the application imports it."""
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def drop_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)

    async def dispose(self) -> None:
        await self.engine.dispose()


# `info` of a column that names a staff member (a Telegram id or a name): a patient's data export
# says "a counselor" there instead (bot/privacy/service.py).
STAFF = {"staff": True}
