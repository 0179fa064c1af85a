"""flag_cards, flags.card_id and flags.why: one card per patient and day in the group; why a flag

Revision ID: 0004_flag_cards
Revises: 0003_outbox_leases
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.platform.db

revision: str = "0004_flag_cards"
down_revision: str | None = "0003_outbox_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flag_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.Column("created_at", bot.platform.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_flag_cards_patient_id_patients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flag_cards")),
    )
    with op.batch_alter_table("flag_cards", schema=None) as batch_op:
        batch_op.create_index("ix_flag_cards_patient_day", ["patient_id", "day"], unique=False)
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("card_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("why", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_flags_card_id"), ["card_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flags_card_id"))
        batch_op.drop_column("why")
        batch_op.drop_column("card_id")
    with op.batch_alter_table("flag_cards", schema=None) as batch_op:
        batch_op.drop_index("ix_flag_cards_patient_day")
    op.drop_table("flag_cards")
