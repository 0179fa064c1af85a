"""patients.medication_schedule: how often a MAT patient takes their medication

Revision ID: 0002_medication_schedule
Revises: 0001
Create Date: 2026-12-03 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_medication_schedule"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # daily | weekly | monthly (an injection); NULL for patients not in MAT (read as daily).
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("medication_schedule", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("medication_schedule")
