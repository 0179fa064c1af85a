"""The real Application over HTTP against the fake Bot API: the platform's behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.platform.clock import Clock
from bot.platform.db import Database
from bot.platform.inbox import Inbox
from bot.platform.models import InboxUpdate
from bot.safety.screening import Screening
from fakeapi import FakeTelegram
from tests.harness import ADMIN_ID, BotHarness


@pytest.fixture
async def h(fake: FakeTelegram, db: Database) -> AsyncIterator[BotHarness]:
    harness = BotHarness(fake, db)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def test_start_and_help_answer_a_stranger(h: BotHarness, fake: FakeTelegram):
    u = fake.add_user(first_name="Robin")
    await h.send(u, "/start")
    assert "invite link" in fake.last(u.id).plain_text
    await h.send(u, "/help")
    assert "invite link" in fake.last(u.id).plain_text
    fake.assert_no_errors()


async def test_commands_are_set_per_scope(h: BotHarness, fake: FakeTelegram):
    private = [c["command"] for c in fake.commands(scope_type="all_private_chats")]
    assert "checkin" in private and "sos" in private and "help" in private
    group = [c["command"] for c in fake.commands(scope_type="chat", chat_id=h.group.id)]
    assert "flags" in group
    # A staff member's own menu is set once they write to the bot (Telegram refuses it before).
    assert fake.commands(scope_type="chat", chat_id=ADMIN_ID) == []
    await h.send(h.admin, "/start")
    admin = [c["command"] for c in fake.commands(scope_type="chat", chat_id=ADMIN_ID)]
    assert "grant" in admin
    fake.assert_no_errors()


async def test_a_start_receives_before_its_menus_are_set(fake: FakeTelegram, db: Database):
    """The command menus are Bot API calls nothing waits for (slow when Telegram is): they are
    set once the bot receives, so a restart answers at once."""
    fake.hold("setMyCommands")
    h = BotHarness(fake, db)
    await h.start(settle=False)
    try:
        u = fake.add_user(first_name="Early")
        await h.send(u, "/help")
        assert "invite link" in fake.last(u.id).plain_text
        assert not h.runner.settled.is_set()
        assert fake.commands(scope_type="all_private_chats") == []
        fake.release()
        await asyncio.wait_for(h.runner.settled.wait(), 10)
        assert "checkin" in [c["command"] for c in fake.commands(scope_type="all_private_chats")]
    finally:
        await h.stop()


async def test_a_stop_while_the_menus_are_being_set_is_clean(fake: FakeTelegram, db: Database):
    fake.hold("setMyCommands")
    h = BotHarness(fake, db)
    await h.start(settle=False)
    assert not h.runner.settled.is_set()
    runner = h.runner
    await h.stop()  # the start-up work still waiting on Telegram is cancelled, not awaited
    assert runner is not None and runner.settled.is_set() and not runner.app.running
    fake.release()


async def test_odd_inputs_get_calm_answers(h: BotHarness, fake: FakeTelegram):
    u = fake.add_user(first_name="Kim")
    await h.send(u, "/nonsense")
    assert "/help" in fake.last(u.id).plain_text
    await h.push(fake.send_sticker(u))
    assert "only read text" in fake.last(u.id).plain_text
    await h.push(fake.send_voice(u))
    assert "only read text" in fake.last(u.id).plain_text
    await h.push(fake.send_forwarded(u, "look at this"))
    assert "forwarded" in fake.last(u.id).plain_text
    await h.send(u, "x" * 4000)
    assert "long message" in fake.last(u.id).plain_text
    fake.assert_no_errors()


async def test_forged_button_gets_a_friendly_answer(h: BotHarness, fake: FakeTelegram):
    u = fake.add_user(first_name="Lee")
    await h.send(u, "/help")
    msg = fake.last(u.id)
    qid = await h.press(u, msg, "zz:forged:999")
    assert "expired" in (fake.callback_answer(qid) or {}).get("text", "")
    fake.assert_no_errors()


async def test_bot_leaves_groups_that_are_not_the_counselors(h: BotHarness, fake: FakeTelegram):
    u = fake.add_user(first_name="Stranger")
    inc = fake.add_bot_to_group("Random chat", u)
    await h.push(inc)
    assert any(c.method == "leaveChat" for c in fake.calls)


async def test_same_update_delivered_twice_is_handled_once(h: BotHarness, fake: FakeTelegram, db: Database):
    u = fake.add_user(first_name="Twice")
    inc = await h.send(u, "/help")
    before = len(fake.sent(u.id))
    again = fake.push_update(dict(inc.update))  # redelivered
    assert again.update_id == inc.update_id
    await fake.wait_idle()
    await h.send(u, "/help")  # a later update proves the bot went past the duplicate
    assert len(fake.sent(u.id)) == before + 1
    async with db.session() as s:
        row = await s.get(InboxUpdate, again.update_id)
    assert row is not None and row.status == "done" and row.payload is None


async def test_restart_handles_unfinished_inbox_rows(h: BotHarness, fake: FakeTelegram, db: Database):
    u = fake.add_user(first_name="Again")
    await h.send(u, "/help")
    await h.stop()
    # An update stored by a process that died before handling it.
    inc = fake.send_text(u, "/help")
    payload = dict(inc.update)
    await Inbox(Database(db.url), Clock()).store([payload])
    n = len(fake.sent(u.id))
    await h.start()
    await h.handled(inc.update_id)
    await fake.wait_idle()
    assert len(fake.sent(u.id)) == n + 1
    async with db.session() as s:
        statuses = (await s.execute(select(InboxUpdate.status))).scalars().all()
    assert set(statuses) == {"done"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode_checks_the_secret_and_stores_before_answering(fake: FakeTelegram, db: Database):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    h = BotHarness(fake, db, webhook_url=url, webhook_secret="s3cret-token", webhook_port=port)
    await h.start()
    try:
        assert fake.webhook is not None and fake.webhook.get("url") == url
        u = fake.add_user(first_name="Hook", started=True)
        update = {
            "update_id": 777001,
            "message": {
                "message_id": 1,
                "date": 1_700_000_000,
                "chat": {"id": u.id, "type": "private", "first_name": "Hook"},
                "from": {"id": u.id, "is_bot": False, "first_name": "Hook"},
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        assert await fake.post_webhook(url, update, secret_token="wrong") == 403
        assert await fake.post_webhook(url, update) == 403
        assert await fake.post_webhook(url, update, secret_token="s3cret-token") == 200
        await h.handled(777001)
        assert "invite link" in fake.last(u.id).plain_text
        # Telegram retries a webhook it thinks failed: the duplicate is stored once, handled once.
        assert await fake.post_webhook(url, update, secret_token="s3cret-token") == 200
        n = len(fake.sent(u.id))
        update2 = dict(update, update_id=777002)
        assert await fake.post_webhook(url, update2, secret_token="s3cret-token") == 200
        await h.handled(777002)
        assert len(fake.sent(u.id)) == n + 1
    finally:
        await h.stop()


async def test_start_up_survives_telegram_errors(fake: FakeTelegram, db: Database):
    fake.fail("getMe", "502", times=2)
    fake.fail("deleteWebhook", "drop", times=1)
    h = BotHarness(fake, db)
    await h.start()
    try:
        u = fake.add_user(first_name="Early")
        await h.send(u, "/help")
        assert "invite link" in fake.last(u.id).plain_text
    finally:
        await h.stop()


async def test_counselors_group_upgraded_to_supergroup_is_followed_across_restarts(fake: FakeTelegram, db: Database):
    counselor = fake.add_user(first_name="Cora", started=True)
    basic = fake.add_group("Care team", supergroup=False, members=[counselor], creator=counselor)
    h = BotHarness(fake, db, counselor_chat_id=basic.id)
    await h.start()
    try:
        new = fake.migrate_group(basic, by_user=counselor)
        await h.settle()
        assert h.hub.settings.counselor_chat_id == new.id
        await h.restart()  # the configuration still names the old group
        assert h.hub.settings.counselor_chat_id == new.id
        group_menu = [c["command"] for c in fake.commands(scope_type="chat", chat_id=new.id)]
        assert "flags" in group_menu
        assert not any(c.method == "leaveChat" for c in fake.calls)
    finally:
        await h.stop()


async def test_updates_are_received_while_the_risk_detector_builds(
    fake: FakeTelegram, db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building it takes seconds: the bot receives meanwhile (a crisis is answered by the crisis
    rules, other texts wait for the full detector: bot/safety/screening.py, tests/safety/test_e2e_screening.py)."""
    import threading

    from bot.safety.service import Detection

    polled_before: list[bool] = []
    monkeypatch.setattr(
        Detection, "warm", lambda self: polled_before.append(any(c.method == "getUpdates" for c in fake.calls))
    )
    hold = threading.Event()
    harness = BotHarness(fake, db, clock)
    await harness.start(detector_hold=hold)
    try:
        await fake.wait_for(lambda: any(c.method == "getUpdates" for c in fake.calls), timeout=10)
        hold.set()
        await harness.hub.get(Screening).wait_ready()
        assert polled_before == [True]
    finally:
        hold.set()
        await harness.stop()
