"""indexes by which finished inbox, outbox and scheduled rows are pruned

Revision ID: 0007_prune_indexes
Revises: 0006_staff_messages
Create Date: 2026-12-03 14:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_prune_indexes"
down_revision: str | None = "0006_staff_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_done", ["status", "done_at"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_sent", ["status", "sent_at"], unique=False)
    with op.batch_alter_table("scheduled_items", schema=None) as batch_op:
        batch_op.create_index("ix_scheduled_done", ["status", "done_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scheduled_items", schema=None) as batch_op:
        batch_op.drop_index("ix_scheduled_done")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_sent")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_done")
