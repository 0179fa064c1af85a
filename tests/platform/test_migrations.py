"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.platform import migrate
from bot.platform.db import Base, Database


async def test_upgrade_to_head_matches_the_models(db_url: str):
    url = db_url
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
        await db.dispose()
