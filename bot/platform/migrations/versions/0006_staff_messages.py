"""staff_messages: messages sent to staff about a patient, taken back when the patient erases their data

Revision ID: 0006_staff_messages
Revises: 0005_group_members
Create Date: 2026-12-03 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.platform.db

revision: str = "0006_staff_messages"
down_revision: str | None = "0005_group_members"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", bot.platform.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_messages")),
    )
    with op.batch_alter_table("staff_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_staff_messages_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index("uq_staff_messages_chat_message", ["chat_id", "message_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("staff_messages", schema=None) as batch_op:
        batch_op.drop_index("uq_staff_messages_chat_message")
        batch_op.drop_index(batch_op.f("ix_staff_messages_patient_id"))
    op.drop_table("staff_messages")
