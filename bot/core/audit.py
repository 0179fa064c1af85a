"""The audit trail: who viewed or changed what (DESIGN §2.10).

Every staff action, and every change a patient makes to their own record, is written here in the
same transaction as the action. Entries never hold health data or free text: a subject is a
pseudonymous reference (a patient code, a flag id, a user id) and the detail is a small mapping of
plain identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import AuditEntry


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor_id: int | None
    action: str
    subject: str | None
    detail: dict[str, Any] | None


async def audit(
    session: AsyncSession,
    actor_id: int | None,
    action: str,
    subject: str | int | None = None,
    detail: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> None:
    """Record an action (e.g. `audit(s, counselor_id, "patient.view", "P-4821", now=now)`)."""
    session.add(
        AuditEntry(
            at=now or datetime.now(UTC),
            actor_id=actor_id,
            action=action[:48],
            subject=None if subject is None else str(subject)[:32],
            detail=detail or None,
        )
    )


async def entries(
    session: AsyncSession,
    *,
    subject: str | None = None,
    action: str | None = None,
    actor_id: int | None = None,
    limit: int = 200,
) -> list[AuditRecord]:
    q = select(AuditEntry).order_by(AuditEntry.id)
    if subject is not None:
        q = q.where(AuditEntry.subject == subject)
    if action is not None:
        q = q.where(AuditEntry.action == action)
    if actor_id is not None:
        q = q.where(AuditEntry.actor_id == actor_id)
    rows = (await session.execute(q.limit(limit))).scalars()
    return [AuditRecord(r.id, r.at, r.actor_id, r.action, r.subject, r.detail) for r in rows]
