"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from bot import migrate
from bot.db import Base, Database
from tests.conftest import database_url


async def test_upgrade_to_head_matches_the_models(tmp_path: Path):
    url = database_url(tmp_path)
    db = Database(url)
    await db.drop_all()
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await db.dispose()

    await migrate.upgrade_async(url)

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": False}), Base.metadata)
            )
        assert diff == [], f"models and migrations differ: {diff}"
        await migrate.upgrade_async(url)  # idempotent
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        await db.drop_all()
        await db.dispose()
