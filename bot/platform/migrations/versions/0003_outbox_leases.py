"""outbox.lease_until and outbox.priority: leases that expire, urgent rows first

Revision ID: 0003_outbox_leases
Revises: 0002_medication_schedule
Create Date: 2026-12-03 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.platform.db

revision: str = "0003_outbox_leases"
down_revision: str | None = "0002_medication_schedule"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", bot.platform.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("priority")
        batch_op.drop_column("lease_until")
