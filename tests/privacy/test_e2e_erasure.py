"""/delete takes back what staff were sent about the patient, in Telegram too: Details DMs, relay
DMs, the /patient view and the group card are deleted, or, where Telegram no longer allows it (older than 48 hours),
edited to a neutral line. The removals go through the outbox, so a restart in the middle loses none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.models import AuditEntry
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.privacy.models import StaffMessage
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

pytestmark = pytest.mark.usefixtures("stub_detector")

CRISIS = "I'm going to end it all tonight"
# What shows the patient in a staff chat: the code, the name, their words.
TRACES = ("P-1234", "Jordan", "end it all", "ZEBRA")
REMOVED = get_content().t("privacy.removed_for_staff", "en")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))


@pytest.fixture
async def fake(clock: FrozenClock) -> AsyncIterator[FakeTelegram]:
    """The fake dates its messages by the bot's clock, so '48 hours later' is the same for both."""
    async with FakeTelegram(clock=lambda: clock.now().timestamp()) as f:
        yield f


def _shows_patient(m: Any) -> bool:
    seen = [t or "" for t in m.texts] + list(m.button_texts)
    return any(trace in s for s in seen for trace in TRACES)


def _still_visible(m: Any) -> bool:
    """Anything of the patient the counselor can still read in that message."""
    if m.deleted:
        return False
    now = (m.plain_text or "") + " ".join(m.button_texts)
    return any(trace in now for trace in TRACES)


async def _scene(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):  # type: ignore[no-untyped-def]
    """A patient with a group card, a Details DM and a relay exchange with a counselor; another
    patient with a card of their own."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code="P-1234", first_name="Jordan")
    other = fake.add_user(first_name="Robin", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=other.id, code="P-5678", first_name="Robin")
    dana = fake.add_user(first_name="Dana", started=True)
    await h.push(fake.join(h.group, dana))
    await h.send(other, "took all my pills")
    await h.send(u, CRISIS)
    card = next(m for m in fake.sent(h.group.id) if "P-1234" in (m.plain_text or ""))
    flag_id = next(d.split(":")[2] for d in card.callback_data if d.startswith("fl:details:"))
    await h.press(dana, card, f"fl:details:{flag_id}")
    assert any("Jordan" in (m.plain_text or "") and "end it all" in (m.plain_text or "") for m in fake.sent(dana.id))
    await h.press(dana, card, f"fl:msg:{flag_id}")
    await h.send(dana, "Hi Jordan, this is Dana from the care team")
    await h.send(u, "ZEBRA thank you, I am safe for now")
    assert any("ZEBRA" in (m.plain_text or "") for m in fake.sent(dana.id))
    await h.send(dana, "/patient P-1234")  # the counselor view: a text and a chart
    await h.send(dana, f"/flag {flag_id}", chat=h.group)  # the flag's history, in the group
    assert fake.last(dana.id).kind == "photo"
    return u, other, dana


async def _erase(h: BotHarness, fake: FakeTelegram, u: Any) -> None:
    await h.send(u, "/delete")
    await h.press(u, fake.last(u.id), "pv:del:1")
    await h.press(u, fake.last(u.id), "pv:del:2")
    assert "has been erased" in (fake.last(u.id).plain_text or "")


def _about_patient(h: BotHarness, fake: FakeTelegram, dana: Any) -> list[Any]:
    msgs = [m for m in fake.sent(dana.id) + fake.sent(h.group.id) if _shows_patient(m)]
    assert {m.chat_id for m in msgs} == {dana.id, h.group.id}
    return msgs


def _unexpected_errors(fake: FakeTelegram) -> list[str]:
    """400s other than the two the removal expects: Telegram refusing to delete a message that is
    too old (then its text is edited), and a chart having no text to edit (then its caption is)."""
    return [f"{e.method} {e.description}" for e in fake.errors if e.status in (400, 401, 403, 404)
            and not (e.method == "deleteMessage" and "can't be deleted" in e.description)
            and not (e.method == "editMessageText" and "no text in the message" in e.description)]


async def test_delete_removes_details_relay_and_card_from_staff_chats(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u, other, dana = await _scene(h, fake, db, clock)
    about = _about_patient(h, fake, dana)
    kinds = {m.chat_id: 0 for m in about}
    for m in about:
        kinds[m.chat_id] += 1
    # Details, the relay's start, its delivery note, the patient's words, the /patient view
    assert kinds[dana.id] >= 6
    assert kinds[h.group.id] >= 2  # the card, the flag's history
    await _erase(h, fake, u)
    for m in about:
        assert m.deleted, f"still in chat {m.chat_id}: {m.plain_text!r}"
    # The other patient's card is untouched, and the patient's own chat is theirs.
    other_card = next(m for m in fake.sent(h.group.id) if "P-5678" in (m.plain_text or ""))
    assert not other_card.deleted and "P-5678" in (other_card.plain_text or "")
    assert not any(m.deleted for m in fake.sent(u.id))
    async with db.session() as s:
        kept = {(r.chat_id, r.message_id) for r in (await s.execute(select(StaffMessage))).scalars()}
        assert kept == {(h.group.id, other_card.message_id)}  # only the other patient's card
        left = (await s.execute(select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending", "dead"))))).scalars().all()
    assert left == []
    assert _unexpected_errors(fake) == []


async def test_messages_older_than_telegram_allows_are_edited_to_the_neutral_line(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u, _other, dana = await _scene(h, fake, db, clock)
    # The bot is no longer an admin of the group: it may delete only its own recent messages there.
    await h.push(fake.set_bot_status(h.group, "member", h.admin))
    about = _about_patient(h, fake, dana)
    clock.advance(timedelta(hours=49))
    await _erase(h, fake, u)
    for m in about:
        assert not m.deleted
        assert m.plain_text == REMOVED, f"chat {m.chat_id}: {m.plain_text!r}"
        assert m.button_texts == [] and not _still_visible(m)
    refused = [e for e in fake.errors if e.method == "deleteMessage"]
    assert len(refused) == len(about)  # each was tried first, and Telegram said no
    assert _unexpected_errors(fake) == []


async def test_an_admin_bot_deletes_old_group_posts_and_edits_old_dms(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u, _other, dana = await _scene(h, fake, db, clock)
    about = _about_patient(h, fake, dana)
    clock.advance(timedelta(hours=72))
    await _erase(h, fake, u)
    for m in about:
        if m.chat_id == h.group.id:
            assert m.deleted  # an admin with can_delete_messages deletes any message of its group
        else:
            assert not m.deleted and m.plain_text == REMOVED
    assert _unexpected_errors(fake) == []


async def test_a_restart_in_the_middle_of_the_removals_loses_none(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u, _other, dana = await _scene(h, fake, db, clock)
    about = _about_patient(h, fake, dana)
    # Telegram fails the group's deletions: the DMs are done, the card waits for a retry ...
    fake.fail("deleteMessage", kind="500", times=None, chat_id=h.group.id)
    await h.send(u, "/delete")
    await h.press(u, fake.last(u.id), "pv:del:1")
    fake.press(u, fake.last(u.id), "pv:del:2")
    await h.handled(fake.updates[-1].update_id)
    await fake.wait_for(lambda: all(m.deleted for m in about if m.chat_id == dana.id), timeout=30, description="the DMs removed")
    assert not any(m.deleted for m in about if m.chat_id == h.group.id)
    # ... and the process stops before the retry. The next one finishes the job.
    await h.restart()
    fake.clear_faults()
    clock.advance(timedelta(minutes=5))
    await h.outbox_idle()
    assert all(m.deleted for m in about)
    assert _unexpected_errors(fake) == []


async def test_a_message_that_lands_after_the_erasure_is_taken_back(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    """A relayed reply still on its way when the patient erased their data: removed as it lands."""
    u, _other, dana = await _scene(h, fake, db, clock)
    fake.fail("sendMessage", kind="500", times=None, chat_id=dana.id)
    await h.send(u, "ZEBRA one more thing")
    async with db.session() as s:
        row = (await s.execute(select(OutboxMessage).where(OutboxMessage.chat_id == dana.id, OutboxMessage.status == "pending"))).scalar_one()
    # The sender has it in hand (as if the send were in flight) when the erasure runs.
    async with db.transaction() as s:
        fresh = await s.get(OutboxMessage, row.id)
        assert fresh is not None
        fresh.status = "sending"
    await _erase(h, fake, u)
    fake.clear_faults()
    await h.hub.sender._deliver(row)  # the in-flight send completes
    await h.outbox_idle()
    late = [m for m in fake.sent(dana.id) if any("one more thing" in (t or "") for t in m.texts)]
    assert late and all(m.deleted for m in late)


async def test_the_removals_start_as_soon_as_the_erasure_is_committed(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u, _other, dana = await _scene(h, fake, db, clock)
    about = _about_patient(h, fake, dana)
    await h.send(u, "/delete")
    await h.press(u, fake.last(u.id), "pv:del:1")
    fake.press(u, fake.last(u.id), "pv:del:2")
    await h.handled(fake.updates[-1].update_id)
    # Nobody wakes the sender here (h.outbox_idle would): the erasure itself does, so the
    # messages go well before the sender's next look at the outbox (5 s).
    await fake.wait_for(lambda: all(m.deleted for m in about), timeout=2.0, description="the removals")


async def test_erasing_with_an_open_flag_tells_the_care_team(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    """A crisis flag nobody has closed never just disappears: the group hears, with the code and
    the flag's number only, that the patient erased their data while it was open."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code="P-1234", first_name="Jordan")
    await h.send(u, CRISIS)
    card = next(m for m in fake.sent(h.group.id) if "P-1234" in (m.plain_text or ""))
    flag_id = next(d.split(":")[2] for d in card.callback_data if d.startswith("fl:details:"))
    await _erase(h, fake, u)
    await h.outbox_idle()
    notice = [m for m in fake.sent(h.group.id) if "/delete" in (m.plain_text or "")]
    assert len(notice) == 1 and not notice[0].deleted
    text = notice[0].plain_text or ""
    assert "P-1234" in text and f"#{flag_id}" in text and "still open" in text
    assert "CRISIS" in text and "suicide or self-harm" in text
    assert "<" not in text and "&lt;" not in text and "&amp;" not in text  # HTML rendered once, never shown
    assert "Jordan" not in text and "end it all" not in text
    async with db.session() as s:
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "patient.delete"))).scalar_one()
    assert entry.detail["open_flags"] == [int(flag_id)]


async def test_erasing_with_no_open_flag_posts_nothing(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code="P-1234", first_name="Jordan")
    await _erase(h, fake, u)
    await h.outbox_idle()
    assert fake.sent(h.group.id) == []
