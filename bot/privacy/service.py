"""Data rights (DESIGN §2.10): what is stored, an export of it, and erasure.

Both the export and the erasure are generic over the schema: a table belongs to a patient when it
has a `patient_id` column, or a foreign key to `patients`, or (transitively) a foreign key to a
table that belongs to a patient. Tables added later by other areas are therefore included without
changes here.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import state
from bot.core.audit import audit
from bot.core.models import AuditEntry, ChatState
from bot.core.people import patient_by_telegram
from bot.core.vocabulary import FlagStatus
from bot.escalation.models import Flag
from bot.escalation.rules import label
from bot.platform.content import FALLBACK_LANGUAGE, Content, Html, get_content
from bot.platform.db import Base
from bot.platform.models import BlockedChat, OutboxMessage, ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.privacy import erasure

PATIENTS = "patients"
# Plumbing tables handled explicitly (by chat or user id) rather than through the patient id.
_EXPLICIT = {"chat_states", "outbox", "blocked_chats", "scheduled_items", "audit_log", "inbox", "staff_messages"}


@dataclass(frozen=True)
class PrivacySummary:
    code: str
    consent_version: str | None
    consented_at: datetime | None
    records: dict[str, int]


@dataclass(frozen=True)
class Erasure:
    code: str
    deleted: dict[str, int]


def _tables() -> list[Table]:
    """Every table: the application imports every model (bot/schema.py) before it runs."""
    return list(Base.metadata.sorted_tables)


def _conditions(patient_id: int) -> dict[str, ColumnElement[bool]]:
    """For each table holding a patient's rows, the condition selecting them."""
    conds: dict[str, ColumnElement[bool]] = {}
    tables = {t.name: t for t in _tables()}
    patients = tables[PATIENTS]
    conds[PATIENTS] = patients.c.id == patient_id
    changed = True
    while changed:
        changed = False
        for t in tables.values():
            if t.name in conds or t.name in _EXPLICIT:
                continue
            parts: list[ColumnElement[bool]] = []
            if "patient_id" in t.c:
                parts.append(t.c.patient_id == patient_id)
            for fk in t.foreign_keys:
                ref = fk.column.table
                if ref.name in conds and not (ref.name == PATIENTS and fk.parent.name == "patient_id"):
                    parts.append(fk.parent.in_(select(fk.column).where(conds[ref.name])))
            if parts:
                conds[t.name] = or_(*parts)
                changed = True
    return conds


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


async def summary(session: AsyncSession, telegram_id: int) -> PrivacySummary | None:
    p = await patient_by_telegram(session, telegram_id)
    if p is None or p.status not in ("active", "inactive"):
        return None
    counts: dict[str, int] = {}
    tables = {t.name: t for t in _tables()}
    for name, cond in _conditions(p.id).items():
        if name == PATIENTS:
            continue
        n = int((await session.execute(select(func.count()).select_from(tables[name]).where(cond))).scalar_one())
        if n:
            counts[name] = n
    return PrivacySummary(p.code, p.consent_version, p.consented_at, counts)


def _exported(t: Table, row: Any, telegram_id: int, staff: str) -> dict[str, Any]:
    """One row for the patient's export. Columns that name a staff member (`info=STAFF` in the
    models: ids and names of counselors who claimed, resolved, viewed or wrote) say `staff`
    instead; the patient's own id stays."""
    out: dict[str, Any] = {}
    for k, v in dict(row).items():
        if v is not None and v != telegram_id and t.c[k].info.get("staff"):
            v = staff
        out[k] = _plain(v)
    return out


async def export(
    session: AsyncSession, telegram_id: int, *, now: datetime, content: Content | None = None
) -> dict[str, Any] | None:
    """Everything stored about an enrolled patient, as plain JSON-ready values: their record,
    including the outcome notes counselors write when they resolve a flag (a patient may see their
    record), but never who on the staff did what ("a counselor" instead)."""
    p = await patient_by_telegram(session, telegram_id)
    if p is None or p.status not in ("active", "inactive"):
        return None
    tables = {t.name: t for t in _tables()}
    staff = (content or get_content()).t("privacy.export_staff", p.language or FALLBACK_LANGUAGE)
    data: dict[str, Any] = {}
    for name, cond in _conditions(p.id).items():
        t = tables[name]
        rows = (await session.execute(select(t).where(cond))).mappings().all()
        if name == PATIENTS:
            data["patient"] = _exported(t, rows[0], telegram_id, staff)
        elif rows:
            data[name] = [_exported(t, r, telegram_id, staff) for r in rows]
    waiting = await state.get(session, telegram_id)
    if waiting is not None:
        data["conversation_state"] = {"kind": waiting.kind, "data": _plain(waiting.data)}
    items = (
        await session.execute(
            select(ScheduledItem).where(
                ScheduledItem.patient_id == p.id, ScheduledItem.status.in_(("pending", "running"))
            )
        )
    ).scalars()
    scheduled = [{"kind": i.kind, "due_at": _plain(i.due_at)} for i in items]
    if scheduled:
        data["scheduled"] = scheduled
    audits = (await session.execute(select(AuditEntry).where(AuditEntry.subject == p.code))).scalars()
    data["audit_log"] = [
        {"at": _plain(a.at), "action": a.action, "by_you": a.actor_id == telegram_id} for a in audits
    ]
    await audit(session, telegram_id, "patient.export", p.code, now=now)
    return {"exported_at": _plain(now), "patient_code": p.code, "data": data}


def export_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False).encode()


@dataclass(frozen=True)
class StaffNotice:
    """Where and in which words the care team hears of an erasure that closes an open flag."""

    group: int
    content: Content
    lang: str


async def erase(
    session: AsyncSession, telegram_id: int, *, now: datetime, removed: str, staff: StaffNotice | None = None
) -> Erasure | None:
    """Erase a patient's operational data; keep one audit entry (patient code, no health data).

    Rows of every patient-owned table are deleted (children first), along with the chat state,
    messages waiting in the outbox for them, and scheduled items for them. A later `/start`
    with a new invite starts from scratch with a new code. What staff were sent about them and
    can no longer be deleted is edited to `removed` (`erasure.removed_text`).

    A flag still open or claimed is a concern the care team has not closed: the counselors'
    group (`staff`) is told, with the code and each flag's number, severity and category only,
    that the patient erased their data while it was open, so no alert disappears unnoticed.
    """
    p = await patient_by_telegram(session, telegram_id)
    if p is None:
        return None
    code, pid = p.code, p.id
    still_open = (
        await session.execute(
            select(Flag.id, Flag.severity, Flag.category)
            .where(Flag.patient_id == pid, Flag.status.in_((FlagStatus.OPEN, FlagStatus.CLAIMED)))
            .order_by(Flag.id)
        )
    ).all()
    tables = {t.name: t for t in _tables()}
    conds = _conditions(pid)
    deleted: dict[str, int] = {}
    # What staff were sent about this patient (Details, relayed words, flag posts and cards) is
    # taken back in Telegram, and waiting outbox rows about them go: found through their
    # conversations, flags and cards, before those rows go.
    deleted.update(await erasure.take_back(session, pid, telegram_id, now, removed=removed))
    order = [t.name for t in reversed(_tables()) if t.name in conds]
    # Children first; the patients row last.
    for name in order:
        res = await session.execute(delete(tables[name]).where(conds[name]))
        if res.rowcount:
            deleted[name] = int(res.rowcount)
    # By the indexed patient column: the patient's own items, never a scan of everyone's.
    res = await session.execute(delete(ScheduledItem).where(ScheduledItem.patient_id == pid))
    if res.rowcount:
        deleted["scheduled_items"] = int(res.rowcount)
    res = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.chat_id == telegram_id
        )
    )
    if res.rowcount:
        deleted["outbox"] = int(res.rowcount)
    await session.execute(delete(ChatState).where(ChatState.user_id == telegram_id))
    await session.execute(delete(BlockedChat).where(BlockedChat.chat_id == telegram_id))
    await session.execute(delete(AuditEntry).where(AuditEntry.subject == code))
    # The one remaining trace: a pseudonymous code and which kinds of record were erased.
    detail: dict[str, Any] = {"tables": sorted(deleted)}
    if still_open:
        detail["open_flags"] = [f.id for f in still_open]
        if staff is not None:
            c, lang = staff.content, staff.lang
            flags = "; ".join(
                c.t(
                    "privacy.erased_open_flag",
                    lang,
                    id=f.id,
                    severity=Html(label(c, lang, "severity", f.severity)),
                    category=label(c, lang, "category", f.category),
                )
                for f in still_open
            )
            # No ref: this notice is not about a stored patient and is never taken back.
            await enqueue(session, Outgoing(staff.group, c.t("privacy.erased_with_open_flags", lang, code=code, flags=Html(flags))), now=now)
    await audit(session, None, "patient.delete", code, detail, now=now)
    return Erasure(code, deleted)

