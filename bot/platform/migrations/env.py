"""Alembic environment (async), batch mode on SQLite, the project's naming convention."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import bot.schema  # noqa: F401  (registers every table)
from bot.platform.db import Base, Database

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    is_sqlite = (url or config.get_main_option("sqlalchemy.url") or "").startswith("sqlite")
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,
        compare_type=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"))
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
        return
    # Migrations serve no one while they wait: on SQLite, wait up to 30 s for a running bot's
    # short write transactions instead of failing on a lock.
    db = Database(config.get_main_option("sqlalchemy.url") or "", sqlite_busy_timeout_ms=30_000)
    async with db.engine.connect() as conn:
        await conn.run_sync(_run_sync)
        await conn.commit()
    await db.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
