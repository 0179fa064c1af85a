"""Taking back what the bot told staff about a patient, when the patient erases their data.

Every message the bot sends to staff that shows a patient is known: those sent through the outbox
by their `ref` (flag posts and DMs `flag:<id>:…`, cards `card:<id>:…`, relayed words `relay:<id>`;
recorded here when Telegram takes them), those sent directly (Details, relay prompts) by
`remember`. On erasure, `take_back` enqueues one removal per message in the erasure's own
transaction, so a restart loses none: the outbox deletes the message, or, where Telegram no longer
allows that (older than 48 hours), edits it to a neutral line (`privacy.removed_for_staff`). The
caller wakes the sender once the erasure is committed, so the removals go out at once.

A message that lands after its patient was erased (it was in flight) is taken back as it lands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.hub import Hub
from bot.core.models import Patient
from bot.escalation.models import Flag, FlagCard, RelayConversation
from bot.platform.content import Content
from bot.platform.db import conflict_insert
from bot.platform.models import OutboxMessage
from bot.platform.outbox import REMOVED_TEXT, Outgoing, enqueue
from bot.privacy.models import StaffMessage

log = logging.getLogger(__name__)

REMOVE_METHOD = "deleteMessage"
REMOVAL_REF = "erased"
# Outbox subjects looked up per statement (a patient with many flags: several short statements).
SUBJECTS_PER_STATEMENT = 500


def removed_text(content: Content, lang: str) -> str:
    """The neutral line a message that can no longer be deleted is edited to, in `lang` (the
    staff's: DEFAULT_LANGUAGE). The functions below take it as `removed`."""
    return content.t("privacy.removed_for_staff", lang)


async def _remove(session: AsyncSession, chat_id: int, message_id: int, now: datetime, text: str) -> None:
    await enqueue(
        session,
        Outgoing(chat_id, method=REMOVE_METHOD, params={"message_id": message_id, REMOVED_TEXT: text}),
        now=now,
        ref=REMOVAL_REF,
    )


async def remember(
    session: AsyncSession, patient_id: int, chat_id: int, message_ids: Iterable[int], now: datetime, *, removed: str
) -> None:
    """Messages sent straight to a staff chat about this patient. If the patient was erased
    meanwhile, they are taken back at once instead."""
    ids = [m for m in message_ids if m is not None]
    if not ids:
        return
    alive = (
        await session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update())
    ).scalar_one_or_none()
    if alive is None:
        for mid in ids:
            await _remove(session, chat_id, mid, now, removed)
        return
    for mid in ids:
        ins = conflict_insert(session, StaffMessage).values(patient_id=patient_id, chat_id=chat_id, message_id=mid, sent_at=now)
        await session.execute(ins.on_conflict_do_nothing(index_elements=["chat_id", "message_id"]))


def _parse(ref: str) -> tuple[str, int] | None:
    parts = ref.split(":")
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    kind = {"flag": "flag", "flagedit": "flag", "card": "card", "cardedit": "card", "relay": "relay"}.get(parts[0])
    return (kind, int(parts[1])) if kind else None


async def record_outbox(
    session: AsyncSession, ref: str, chat_id: int, message_id: int, now: datetime, *, removed: str
) -> None:
    """An outbox message showing a patient landed in `chat_id`: remember it (or take it back, when
    what it shows was erased while it was on its way)."""
    parsed = _parse(ref)
    if parsed is None:
        return
    kind, ident = parsed
    q: Any
    if kind == "flag":
        q = select(Flag.patient_id).where(Flag.id == ident)
    elif kind == "card":
        q = select(FlagCard.patient_id).where(FlagCard.id == ident)
    else:
        q = select(RelayConversation.patient_id).where(RelayConversation.id == ident)
    patient_id = (await session.execute(q)).scalar_one_or_none()
    if patient_id is None:
        await _remove(session, chat_id, message_id, now, removed)
        return
    own = (await session.execute(select(Patient.telegram_id).where(Patient.id == patient_id))).scalar_one_or_none()
    if own == chat_id:
        return  # the patient's own chat (a counselor's message relayed to them): theirs to keep
    await remember(session, patient_id, chat_id, [message_id], now, removed=removed)


async def take_back(
    session: AsyncSession, patient_id: int, telegram_id: int, now: datetime, *, removed: str
) -> dict[str, int]:
    """In the erasure's transaction: enqueue the removal of every message staff were sent about
    this patient, and drop the outbox rows about them that are still waiting (or were sent: their
    payloads hold the patient's words). Returns counts for the erasure's summary."""
    conv_ids = list((await session.execute(select(RelayConversation.id).where(RelayConversation.patient_id == patient_id))).scalars())
    flag_rows = list((await session.execute(select(Flag.id, Flag.posts).where(Flag.patient_id == patient_id))).all())
    card_rows = list(
        (await session.execute(select(FlagCard.id, FlagCard.chat_id, FlagCard.message_id).where(FlagCard.patient_id == patient_id))).all()
    )
    targets: set[tuple[int, int]] = set()
    for (mid_chat, mid) in (await session.execute(
        select(StaffMessage.chat_id, StaffMessage.message_id).where(StaffMessage.patient_id == patient_id)
    )).all():
        targets.add((int(mid_chat), int(mid)))
    for _fid, posts in flag_rows:
        for post in posts or []:
            if len(post) == 2:
                targets.add((int(post[0]), int(post[1])))
    for _cid, chat_id, message_id in card_rows:
        if message_id is not None:
            targets.add((int(chat_id), int(message_id)))
    # The outbox rows about them, found by their indexed `about` (a ref's first two parts).
    subjects = [f"relay:{i}" for i in conv_ids]
    for fid, _posts in flag_rows:
        subjects += [f"flag:{fid}", f"flagedit:{fid}"]
    for cid, _chat, _mid in card_rows:
        subjects += [f"card:{cid}", f"cardedit:{cid}"]
    dropped = 0
    for i in range(0, len(subjects), SUBJECTS_PER_STATEMENT):
        about = OutboxMessage.about.in_(subjects[i : i + SUBJECTS_PER_STATEMENT])
        # By `about` alone (the patient's own rows): with the status in the query, a planner may
        # walk every sent row by the status index instead.
        rows = (
            await session.execute(
                select(OutboxMessage.chat_id, OutboxMessage.telegram_message_id, OutboxMessage.status).where(about)
            )
        ).all()
        targets |= {(int(c), int(m)) for c, m, status in rows if status == "sent" and m is not None}
        res = await session.execute(delete(OutboxMessage).where(about))
        dropped += int(res.rowcount or 0)
    targets = {(c, m) for c, m in targets if c != telegram_id}  # the patient's own chat is theirs
    for chat_id, message_id in sorted(targets):
        await _remove(session, chat_id, message_id, now, removed)
    await session.execute(delete(StaffMessage).where(StaffMessage.patient_id == patient_id))
    out: dict[str, int] = {}
    if dropped:
        out["outbox_staff"] = dropped
    if targets:
        out["staff_messages"] = len(targets)
    return out


def install(hub: Hub) -> None:
    """Remember outbox messages about patients as Telegram takes them."""

    removed = removed_text(hub.content, hub.settings.default_language)

    async def on_sent(row: OutboxMessage, message_id: int | None) -> None:
        if message_id is None or not row.ref or row.ref == REMOVAL_REF:
            return
        async with hub.db.transaction() as s:
            await record_outbox(s, row.ref, row.chat_id, message_id, hub.clock.now(), removed=removed)

    hub.sender.sent_hooks.append(on_sent)
