"""scheduled_items.patient_id: the patient an item is about, indexed, so erasure finds their items

Revision ID: 0008_scheduled_patient
Revises: 0007_prune_indexes
Create Date: 2026-12-03 14:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_scheduled_patient"
down_revision: str | None = "0007_prune_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 5000


def _patient(payload: object) -> int | None:
    pid = payload.get("patient_id") if isinstance(payload, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def upgrade() -> None:
    with op.batch_alter_table("scheduled_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_scheduled_items_patient_id"), ["patient_id"], unique=False)
    # Items already stored: the patient from each payload, a chunk of rows at a time.
    items = sa.table(
        "scheduled_items", sa.column("id", sa.Integer), sa.column("payload", sa.JSON), sa.column("patient_id", sa.Integer)
    )
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(items.c.id, items.c.payload).where(items.c.id > last).order_by(items.c.id).limit(CHUNK)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        found = [{"i": i, "p": _patient(payload)} for i, payload in rows if _patient(payload) is not None]
        if found:
            conn.execute(
                sa.update(items).where(items.c.id == sa.bindparam("i")).values(patient_id=sa.bindparam("p")), found
            )


def downgrade() -> None:
    with op.batch_alter_table("scheduled_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduled_items_patient_id"))
        batch_op.drop_column("patient_id")
