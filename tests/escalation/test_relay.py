"""Message patient: the counselor writes in DM, replies come back, text encrypted at rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from bot.core import state
from bot.escalation import area as escalation_area
from bot.escalation import relay
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_flag
from bot.platform import crypto
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from tests import escalation_support as sup

COUNSELOR = 31


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> AsyncIterator[SimpleNamespace]:
    hub = sup.hub(db, clock, sup.settings())
    escalation_area.install(hub)
    crypto.configure(Fernet.generate_key().decode())
    pid = await sup.add_patient(db, clock.now())
    async with db.transaction() as s:
        r = await raise_flag(
            s, hub.get(Workflow), patient_id=pid, category="talk_request", severity="moderate", reason="talk", source="talk", now=clock.now()
        )
    try:
        yield SimpleNamespace(pid=pid, db=db, clock=clock, flag_id=r.flag_id, wf=hub.get(Workflow))
    finally:
        crypto.configure(None)


async def _to(db: Database, chat_id: int) -> list[OutboxMessage]:
    async with db.session() as s:
        q = select(OutboxMessage).where(OutboxMessage.chat_id == chat_id).order_by(OutboxMessage.id)
        return list((await s.execute(q)).scalars())


async def test_a_full_conversation(env: SimpleNamespace):
    async with env.db.transaction() as s:
        started = await relay.start(s, env.flag_id, counselor_id=COUNSELOR, counselor_name="Dana", now=env.clock.now())
    assert started.ok and started.conversation is not None
    conv_id = started.conversation.id
    async with env.db.session() as s:
        aw = await state.get(s, COUNSELOR)
    assert aw is not None and aw.kind == relay.WRITE_STATE and aw.data == {"conversation": conv_id}

    async with env.db.transaction() as s:
        assert await relay.counselor_writes(s, env.wf, conv_id, counselor_id=COUNSELOR, text="How are you <today>?", now=env.clock.now())
    (to_patient,) = await _to(env.db, 5001)
    assert "Message from your care team" in to_patient.payload["text"]
    assert "How are you &lt;today&gt;?" in to_patient.payload["text"]
    assert "Dana" not in to_patient.payload["text"]

    async with env.db.transaction() as s:
        back = await relay.patient_replies(s, env.wf, 5001, "Better, thanks", now=env.clock.now())
    assert back is not None and back.counselor_id == COUNSELOR
    (to_counselor,) = await _to(env.db, COUNSELOR)
    assert "P-1234" in to_counselor.payload["text"] and "Better, thanks" in to_counselor.payload["text"]

    # Relayed words are encrypted at rest.
    async with env.db.session() as s:
        raw = [r[0] for r in (await s.execute(text("SELECT text FROM relay_messages"))).all()]
    assert len(raw) == 2 and all(r.startswith("enc1:") for r in raw)

    async with env.db.transaction() as s:
        ended = await relay.end(s, env.wf, conv_id, counselor_id=COUNSELOR, now=env.clock.now())
    assert ended is not None
    assert "ended" in (await _to(env.db, 5001))[-1].payload["text"]
    async with env.db.transaction() as s:
        assert await relay.patient_replies(s, env.wf, 5001, "hello?", now=env.clock.now()) is None
        assert await relay.counselor_writes(s, env.wf, conv_id, counselor_id=COUNSELOR, text="x", now=env.clock.now()) is None
        assert await relay.end(s, env.wf, conv_id, counselor_id=COUNSELOR, now=env.clock.now()) is None
    async with env.db.session() as s:
        assert await state.get(s, COUNSELOR) is None


async def test_one_conversation_per_patient(env: SimpleNamespace):
    async with env.db.transaction() as s:
        first = await relay.start(s, env.flag_id, counselor_id=COUNSELOR, counselor_name="Dana", now=env.clock.now())
    async with env.db.transaction() as s:
        other = await relay.start(s, env.flag_id, counselor_id=32, counselor_name="Sam", now=env.clock.now())
        again = await relay.start(s, env.flag_id, counselor_id=COUNSELOR, counselor_name="Dana", now=env.clock.now())
    assert not other.ok and other.reason == "busy"
    assert again.ok and again.conversation.id == first.conversation.id


async def test_someone_else_cannot_write_or_end(env: SimpleNamespace):
    async with env.db.transaction() as s:
        started = await relay.start(s, env.flag_id, counselor_id=COUNSELOR, counselor_name="Dana", now=env.clock.now())
    cid = started.conversation.id
    async with env.db.transaction() as s:
        assert await relay.counselor_writes(s, env.wf, cid, counselor_id=99, text="hi", now=env.clock.now()) is None
        assert await relay.end(s, env.wf, cid, counselor_id=99, now=env.clock.now()) is None
    async with env.db.transaction() as s:
        missing = await relay.start(s, 9999, counselor_id=COUNSELOR, counselor_name="Dana", now=env.clock.now())
    assert not missing.ok and missing.reason == "not_found"
