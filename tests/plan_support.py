"""Which statements an operation ran, and how SQLite plans them (tests that keep statements on
the event loop bounded: no full scan of a large table)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event

from bot.platform.db import Database

Statement = tuple[str, Any]


async def statements_of(db: Database, run: Callable[[], Awaitable[object]], keep: Callable[[str], bool]) -> list[Statement]:
    """The statements (with their parameters) `run` executed that `keep` accepts (executemany left out)."""
    seen: list[Statement] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany and keep(statement):
            seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", listen)
    try:
        await run()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", listen)
    return seen


async def plans(db: Database, statements: list[Statement]) -> list[tuple[str, str]]:
    """Each statement with SQLite's query plan for it, as one line."""
    out = []
    async with db.engine.connect() as conn:
        for statement, parameters in statements:
            plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, tuple(parameters))).all()
            out.append((statement, " | ".join(str(r[-1]) for r in plan)))
    return out
