"""group_members: the roster of the counselors' group (crisis alerts reach every member)

Revision ID: 0005_group_members
Revises: 0004_flag_cards
Create Date: 2026-12-03 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.platform.db

revision: str = "0005_group_members"
down_revision: str | None = "0004_flag_cards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_members",
        sa.Column("telegram_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("is_member", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("updated_at", bot.platform.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("telegram_id", name=op.f("pk_group_members")),
    )


def downgrade() -> None:
    op.drop_table("group_members")
