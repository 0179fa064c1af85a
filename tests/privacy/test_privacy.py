"""Privacy and data rights: /privacy, /mydata (JSON export), /delete (two steps, erasure)."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from bot.core.models import AuditEntry, ChatState, Patient
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_flag
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Base, Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.platform.scheduler import schedule
from bot.privacy import erasure
from bot.privacy import service as privacy
from tests.conftest import CONTENT_DIR
from tests.onboarding_support import enrol, make_invite, running_bot, text_of

REMOVED = erasure.removed_text(get_content(CONTENT_DIR), "en")


async def _count(db: Database, model: type[Base], *where: object) -> int:
    async with db.session() as s:
        q = select(func.count()).select_from(model)
        for w in where:
            q = q.where(w)  # type: ignore[arg-type]
        return int((await s.execute(q)).scalar_one())


async def _add_health_data(wf: Workflow, db: Database, clock: FrozenClock, telegram_id: int) -> Patient:
    async with db.transaction() as s:
        p = (await s.execute(select(Patient).where(Patient.telegram_id == telegram_id))).scalar_one()
        await raise_flag(
            s, wf, patient_id=p.id, category="severe_craving", severity="moderate", reason="rule.craving",
            source="checkin", now=clock.now(), evidence="I really want a drink tonight",
        )
        await schedule(s, "checkin", f"checkin:{p.id}:2026-03-03", clock.now() + timedelta(days=1), {"patient_id": p.id})
        await schedule(s, "checkin", f"checkin:{p.id}1:2026-03-03", clock.now() + timedelta(days=1))
        await enqueue(s, Outgoing(telegram_id, "later"), now=clock.now() + timedelta(days=3))
        return p


async def test_privacy_export_and_delete(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Marlowe")
        await enrol(h, fake, u, code)
        p = await _add_health_data(h.hub.get(Workflow), db, clock, u.id)

        await h.send(u, "/privacy")
        info = text_of(fake.last(u.id))
        assert p.code in info and "2026-12-1" in info and "flags (1)" in info

        await h.send(u, "/mydata")
        doc_msg = fake.last(u.id)
        assert doc_msg.kind == "document" and doc_msg.file_bytes is not None
        doc = json.loads(doc_msg.file_bytes)
        assert doc["patient_code"] == p.code
        assert doc["data"]["patient"]["first_name"] == "Marlowe"
        assert doc["data"]["flags"][0]["category"] == "severe_craving"
        assert doc["data"]["flag_events"][0]["evidence"] == "I really want a drink tonight"
        assert "checkin" in [i["kind"] for i in doc["data"]["scheduled"]]

        await h.send(u, "/delete")
        ask = fake.last(u.id)
        await h.press(u, ask, "pv:keep")
        assert "nothing was erased" in text_of(fake.last(u.id))
        assert await _count(db, Patient) == 1
        # The final step alone (a forged or replayed button) does nothing.
        qid = await h.press(u, ask, "pv:del:2")
        assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
        await h.send(u, "/delete")
        await h.press(u, fake.last(u.id), "pv:del:1")
        assert "Are you sure" in text_of(fake.last(u.id))
        await h.press(u, fake.last(u.id), "pv:del:2")
        assert "has been erased" in text_of(fake.last(u.id))
        fake.assert_no_errors()

        assert await _count(db, Patient) == 0
        assert await _count(db, Flag) == 0 and await _count(db, FlagEvent) == 0
        assert await _count(db, ChatState, ChatState.user_id == u.id) == 0
        assert await _count(db, OutboxMessage, OutboxMessage.chat_id == u.id) == 0
        keys = await _scheduled_keys(db)
        assert f"checkin:{p.id}1:2026-03-03" in keys  # another patient's item stays
        assert not [k for k in keys if str(p.id) in k.split(":")]
        async with db.session() as s:
            entries = list((await s.execute(select(AuditEntry).where(AuditEntry.subject == p.code))).scalars())
        assert [e.action for e in entries] == ["patient.delete"]
        assert "drink" not in json.dumps(entries[0].detail)

        # A later /start with a new invite starts fresh, with a new code.
        await h.send(u, "/settings")
        assert "invite link" in text_of(fake.last(u.id))
        code2 = await make_invite(h, fake)
        await enrol(h, fake, u, code2)
        async with db.session() as s:
            again = (await s.execute(select(Patient))).scalar_one()
        assert again.code != p.code and again.first_name == "Marlowe"
        fake.assert_no_errors()


async def _scheduled_keys(db: Database) -> list[str]:
    async with db.session() as s:
        return list((await s.execute(select(ScheduledItem.key))).scalars())


async def test_export_and_erase_cover_every_patient_table(db: Database, clock: FrozenClock):
    """Generic over the schema: every table with a patient id (directly or by a foreign key)."""
    conds = privacy._conditions(1)
    for table in Base.metadata.sorted_tables:
        direct = "patient_id" in table.c or any(fk.column.table.name == "patients" for fk in table.foreign_keys)
        if direct and table.name not in privacy._EXPLICIT:
            assert table.name in conds, table.name
    assert "flag_events" in conds  # through flags


async def test_erase_of_someone_unknown_is_a_no_op(db: Database, clock: FrozenClock):
    async with db.transaction() as s:
        assert await privacy.erase(s, 12345, now=clock.now(), removed=REMOVED) is None
        assert await privacy.export(s, 12345, now=clock.now()) is None
        assert await privacy.summary(s, 12345) is None


async def test_names_are_encrypted_at_rest_when_a_key_is_set(db: Database, clock: FrozenClock):
    from cryptography.fernet import Fernet
    from sqlalchemy import text

    from bot.platform import crypto

    try:
        async with running_bot(db, clock, encryption_key=Fernet.generate_key().decode()) as (h, fake, _g):
            u = fake.add_user(first_name="Cassiopeia")
            await enrol(h, fake, u, await make_invite(h, fake))
            async with db.session() as s:
                raw = (await s.execute(text("SELECT first_name FROM patients"))).scalar_one()
            assert raw.startswith("enc1:") and "Cassiopeia" not in raw
            await h.send(u, "/mydata")
            doc = json.loads(fake.last(u.id).file_bytes or b"{}")
            assert doc["data"]["patient"]["first_name"] == "Cassiopeia"
            fake.assert_no_errors()
    finally:
        crypto.configure(None)


async def test_conversation_state_is_one_row_per_person_and_encrypted_at_rest(db: Database, clock: FrozenClock):
    """What the next typed message answers may carry what was typed (e.g. a plan entry's draft)."""
    from cryptography.fernet import Fernet
    from sqlalchemy import text

    from bot.core import state
    from bot.platform import crypto

    crypto.configure(Fernet.generate_key().decode())
    try:
        async with db.transaction() as s:
            await state.set_(s, 77, "plans:add", {"draft": "call Lee"}, clock.now())
        async with db.transaction() as s:
            await state.set_(s, 77, "checkins:note", {"entry": 3}, clock.now())  # replaces it
        async with db.session() as s:
            rows = (await s.execute(text("SELECT kind, data FROM chat_states"))).all()
            assert [r[0] for r in rows] == ["checkins:note"]
            assert rows[0][1].startswith("enc1:")
            assert await state.get(s, 77) == state.Awaiting("checkins:note", {"entry": 3})
        async with db.transaction() as s:
            await state.clear(s, 77, "plans:add")  # another kind: kept
            assert await state.get(s, 77) is not None
            await state.clear(s, 77)
            assert await state.get(s, 77) is None
    finally:
        crypto.configure(None)
