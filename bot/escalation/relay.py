"""Message patient (DESIGN §2.6): a counselor writes in DM, the patient reads it as a message from
the care team, and the patient's replies go back to that counselor until the counselor ends it.

One open conversation per patient. Every relayed text is stored encrypted at rest and sent
through the outbox, so it survives Telegram errors and restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import state
from bot.core.audit import audit
from bot.core.models import Patient
from bot.escalation import buttons
from bot.escalation.models import Flag, FlagEvent, RelayConversation, RelayMessage
from bot.escalation.oncall import get_oncall, set_oncall
from bot.escalation.rules import Workflow
from bot.platform.content import Content
from bot.platform.keyboards import inline_keyboard
from bot.platform.outbox import Outgoing, enqueue

WRITE_STATE = "relay:write"
TEXT_MAX = 3000


@dataclass(frozen=True)
class Conversation:
    id: int
    patient_id: int
    patient_code: str
    patient_telegram_id: int
    counselor_id: int
    flag_id: int | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class StartResult:
    ok: bool
    reason: str | None  # not_found | busy
    conversation: Conversation | None
    busy_with: str | None = None


def _conv(c: RelayConversation, p: Patient) -> Conversation:
    return Conversation(c.id, p.id, p.code, p.telegram_id, c.counselor_id, c.flag_id, c.started_at, c.ended_at)


async def _open_for_patient(session: AsyncSession, patient_id: int) -> RelayConversation | None:
    return (
        await session.execute(
            select(RelayConversation)
            .where(RelayConversation.patient_id == patient_id, RelayConversation.ended_at.is_(None))
            .order_by(RelayConversation.id.desc())
            .with_for_update()
        )
    ).scalars().first()


async def start(
    session: AsyncSession, flag_id: int, *, counselor_id: int, counselor_name: str | None, now: datetime
) -> StartResult:
    """Open (or rejoin) the conversation with the patient of a flag; the counselor's next texts go there."""
    flag = await session.get(Flag, flag_id)
    if flag is None:
        return StartResult(False, "not_found", None)
    patient = await session.get(Patient, flag.patient_id)
    if patient is None or patient.status not in ("active", "inactive"):
        return StartResult(False, "not_found", None)
    conv = await _open_for_patient(session, patient.id)
    if conv is not None and conv.counselor_id != counselor_id:
        busy = (
            await session.execute(select(Flag.claimed_by_name).where(Flag.claimed_by == conv.counselor_id).limit(1))
        ).scalar_one_or_none()
        return StartResult(False, "busy", _conv(conv, patient), busy or str(conv.counselor_id))
    if conv is None:
        conv = RelayConversation(patient_id=patient.id, counselor_id=counselor_id, flag_id=flag.id, started_at=now)
        session.add(conv)
        await session.flush()
        session.add(FlagEvent(flag_id=flag.id, at=now, kind="message", actor_id=counselor_id))
        await audit(session, counselor_id, "relay.start", f"flag:{flag.id}", {"patient": patient.code}, now=now)
    await state.set_(session, counselor_id, WRITE_STATE, {"conversation": conv.id}, now)
    return StartResult(True, None, _conv(conv, patient))


async def counselor_writes(
    session: AsyncSession, wf: Workflow, conversation_id: int, *, counselor_id: int, text: str, now: datetime
) -> Conversation | None:
    """Deliver the counselor's text to the patient (None: the conversation is not theirs or ended)."""
    row = (
        await session.execute(
            select(RelayConversation, Patient)
            .join(Patient, Patient.id == RelayConversation.patient_id)
            .where(RelayConversation.id == conversation_id)
        )
    ).first()
    if row is None:
        return None
    conv, patient = row
    if conv.counselor_id != counselor_id or conv.ended_at is not None:
        return None
    text = text[:TEXT_MAX]
    session.add(RelayMessage(conversation_id=conv.id, direction="to_patient", text=text, at=now))
    c = wf.content
    await enqueue(
        session,
        Outgoing(patient.telegram_id, c.t("flags.relay_to_patient", patient.language or "en", text=text)),
        now=now,
        ref=f"relay:{conv.id}",
    )
    return _conv(conv, patient)


async def open_for_counselor(session: AsyncSession, counselor_id: int) -> list[Conversation]:
    """The conversations a counselor has open, newest first."""
    rows = await session.execute(
        select(RelayConversation, Patient)
        .join(Patient, Patient.id == RelayConversation.patient_id)
        .where(RelayConversation.counselor_id == counselor_id, RelayConversation.ended_at.is_(None))
        .order_by(RelayConversation.id.desc())
    )
    return [_conv(c, p) for c, p in rows.all()]


async def active_for_patient(session: AsyncSession, telegram_id: int) -> Conversation | None:
    row = (
        await session.execute(
            select(RelayConversation, Patient)
            .join(Patient, Patient.id == RelayConversation.patient_id)
            .where(Patient.telegram_id == telegram_id, RelayConversation.ended_at.is_(None))
            .order_by(RelayConversation.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else _conv(row[0], row[1])


async def patient_replies(session: AsyncSession, wf: Workflow, telegram_id: int, text: str, *, now: datetime) -> Conversation | None:
    """Send the patient's text back to their counselor (None: no open conversation)."""
    conv = await active_for_patient(session, telegram_id)
    if conv is None:
        return None
    text = text[:TEXT_MAX]
    session.add(RelayMessage(conversation_id=conv.id, direction="to_counselor", text=text, at=now))
    c, lang = wf.content, wf.lang
    await enqueue(
        session,
        Outgoing(conv.counselor_id, c.t("flags.relay_from_patient", lang, code=conv.patient_code, text=text), reply_markup=end_keyboard(c, lang, conv.id)),
        now=now,
        ref=f"relay:{conv.id}",
    )
    return conv


def end_keyboard(c: Content, lang: str, conversation_id: int) -> dict[str, object]:
    return inline_keyboard([[(c.t("flags.button.end", lang), buttons.END.pack(conversation_id))]])


async def end(session: AsyncSession, wf: Workflow, conversation_id: int, *, counselor_id: int, now: datetime) -> Conversation | None:
    """The counselor ends the conversation; the patient is told (None: not theirs, or already ended)."""
    row = (
        await session.execute(
            select(RelayConversation, Patient)
            .join(Patient, Patient.id == RelayConversation.patient_id)
            .where(RelayConversation.id == conversation_id)
            .with_for_update(of=RelayConversation)
        )
    ).first()
    if row is None:
        return None
    conv, patient = row
    if conv.counselor_id != counselor_id or conv.ended_at is not None:
        return None
    conv.ended_at = now
    await state.clear(session, counselor_id, WRITE_STATE)
    await audit(session, counselor_id, "relay.end", None if conv.flag_id is None else f"flag:{conv.flag_id}", now=now)
    c = wf.content
    await enqueue(
        session,
        Outgoing(patient.telegram_id, c.t("flags.relay_ended_patient", patient.language or "en")),
        now=now,
        ref=f"relay:{conv.id}",
    )
    return _conv(conv, patient)


async def staff_access_lost(session: AsyncSession, wf: Workflow, counselor_id: int, *, now: datetime) -> int:
    """Someone is no longer a counselor: their conversations end and they are no longer on call.

    Returns how many conversations were ended (each patient is told).
    """
    ids = list(
        (
            await session.execute(
                select(RelayConversation.id).where(
                    RelayConversation.counselor_id == counselor_id, RelayConversation.ended_at.is_(None)
                )
            )
        ).scalars()
    )
    for conv_id in ids:
        await end(session, wf, conv_id, counselor_id=counselor_id, now=now)
    oncall = await get_oncall(session)
    if oncall is not None and oncall.telegram_id == counselor_id:
        await set_oncall(session, None, name=None, by=None, now=now)
    return len(ids)
