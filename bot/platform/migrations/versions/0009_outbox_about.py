"""outbox.about: what a row is about (its ref's first two parts), indexed, so erasure finds the
rows about a patient by exact match instead of reading the outbox with LIKE; audit_log.subject and
relay_conversations.flag_id indexed, so erasure deletes by them without a scan

Revision ID: 0009_outbox_about
Revises: 0008_scheduled_patient
Create Date: 2026-12-03 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_outbox_about"
down_revision: str | None = "0008_scheduled_patient"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 5000


def _about(ref: str) -> str:
    # As bot.platform.outbox.ref_about (a migration keeps its own copy: the code may change later).
    return ":".join(ref.split(":", 2)[:2])


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("about", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_about"), ["about"], unique=False)
    # Rows already stored: `about` from each ref, a chunk of rows at a time.
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("ref", sa.String), sa.column("about", sa.String))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.ref)
            .where(outbox.c.id > last, outbox.c.ref.is_not(None))
            .order_by(outbox.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        found = [{"i": i, "a": _about(ref)} for i, ref in rows if ref]
        if found:
            conn.execute(sa.update(outbox).where(outbox.c.id == sa.bindparam("i")).values(about=sa.bindparam("a")), found)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_subject"), ["subject"], unique=False)
    with op.batch_alter_table("relay_conversations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relay_conversations_flag_id"), ["flag_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("relay_conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relay_conversations_flag_id"))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_subject"))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_about"))
        batch_op.drop_column("about")
