"""A flood costs little: updates are read from Telegram's JSON before they are built, and each
text is risk-screened once.

- What screening and the limit read from an update's JSON (`raw_facts`) is what they read from
  the built update, for every kind of update the bot receives (transport.ALLOWED_UPDATES), from
  the fake Bot API's own updates and variations of them.
- A flood's updates beyond the limit are never built (only those handled, and the one that gets
  the flood line, become Update objects); every one of them is still marked done.
- The risk detector runs once per text, whether the text was decided from its JSON or after it
  was built: the safety handler reads the screening's result.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from telegram import Bot

from bot.escalation.models import Flag
from bot.platform import transport
from bot.platform.clock import FrozenClock
from bot.platform.config import Settings
from bot.platform.db import Database
from bot.platform.flood import Kind
from bot.platform.models import InboxUpdate
from fakeapi import FakeTelegram
from handlers import screening
from handlers.safety import SCREENED
from tests import escalation_support as sup
from tests.harness import BotHarness

LIMITS = {name: field.default for name, field in Settings.model_fields.items() if name.startswith("flood_")}
CRISIS = "I can't do this anymore, I'm going to end it all tonight"


def _screened(update: object) -> bool:
    return bool(SCREENED.check_update(update))  # type: ignore[arg-type]


def _kind_of(data: dict[str, Any]) -> str:
    (key,) = [k for k in data if k != "update_id"]
    return key


def _fake_updates(fake: FakeTelegram) -> list[dict[str, Any]]:
    """One of each thing a person can do that reaches the bot, as the fake Bot API sends it."""
    u = fake.add_user(first_name="Sam", started=True)
    other = fake.add_user(first_name="Kim", started=True)
    group = fake.add_group("Counselors", supergroup=True)
    fake.join(group, u)
    first = fake.send_text(u, "hello there")
    fake.send_text(u, "/start")
    fake.send_text(u, "/checkin now")
    fake.send_text(u, CRISIS)
    fake.send_photo(u, caption="a photo of my day")
    fake.send_photo(u)
    fake.send_sticker(u)
    fake.send_forwarded(u, "words someone else wrote")
    fake.send_forwarded(u, "words", origin_user=other)
    fake.send_text(u, "hi all", chat=group)
    fake.send_text(u, "/flags", chat=group)
    fake.send_photo(u, caption="in the group", chat=group)
    fake.edit_text(u, first, "hello again")
    assert first.message_id is not None
    fake.press(u, (first.chat_id, first.message_id), "menu:open")
    fake.block(other)
    fake.unblock(other)
    fake.leave(group, u)
    return [copy.deepcopy(inc.update) for inc in fake.updates if inc.delivered]


def _variations(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The same update with what screening and the limit read changed one thing at a time."""
    out: list[dict[str, Any]] = []
    key = _kind_of(data)
    body = data[key]

    def vary(path: tuple[str, ...], value: Any, *, drop: bool = False) -> None:
        d = copy.deepcopy(data)
        target = d[key]
        for step in path[:-1]:
            if not isinstance(target.get(step), dict):
                return
            target = target[step]
        if drop:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
        out.append(d)

    vary(("from", "is_bot"), True)
    vary(("from",), None, drop=True)
    vary(("chat", "type"), "group")
    vary(("chat", "type"), "private")
    vary(("message", "chat", "type"), "group")
    if "text" in body or "caption" in body:
        for field in ("text", "caption"):
            vary((field,), "")
            vary((field,), "I'm going to end it all tonight")
        vary(("entities",), [{"type": "bot_command", "offset": 0, "length": 6}])
        vary(("entities",), [{"type": "bot_command", "offset": 3, "length": 6}])
        vary(("entities",), [{"type": "bold", "offset": 0, "length": 2}, {"type": "bot_command", "offset": 3, "length": 2}])
        vary(("entities",), [])
        vary(("caption_entities",), [{"type": "bot_command", "offset": 0, "length": 3}])
        # Malformed: read from the built update or refused, never read differently.
        vary(("text",), 5)
        vary(("entities",), "not a list")
        vary(("entities",), [{"type": "bot_command"}])
    vary(("chat",), None, drop=True)
    vary(("chat", "id"), "x")
    vary(("from", "first_name"), None, drop=True)
    vary(("date",), "yesterday")
    d = copy.deepcopy(data)
    d["message" if key != "message" else "edited_message"] = copy.deepcopy(body)
    out.append(d)  # two kinds at once
    out.append({"update_id": data["update_id"], key: "a string"})
    return out


async def test_what_is_read_from_the_json_is_what_is_read_from_the_built_update(fake: FakeTelegram) -> None:
    bot = Bot("123:abc")
    updates = _fake_updates(fake)
    kinds = {_kind_of(d) for d in updates}
    assert set(transport.ALLOWED_UPDATES) <= kinds, "every kind the bot receives has an example here"
    compared: Counter[str] = Counter()
    for original in updates:
        for data in [original, *_variations(original)]:
            raw = screening.raw_facts(data)
            try:
                update = transport.parse_update(data, bot)
                built = screening.facts(update, _screened)
            except Exception:
                assert raw is None, f"read from JSON that cannot be built or read: {data}"
                continue
            if raw is None:
                # Not read from the JSON: decided on the built update, which is always safe; but
                # every well-formed update of a kind the limit counts is read from its JSON.
                assert data is not original or built.kind is None, f"not read from JSON: {data}"
                continue
            assert raw == built, data
            compared[_kind_of(data)] += 1
    # Every kind was compared, including texts the safety handlers screen and those they do not.
    assert set(transport.ALLOWED_UPDATES) <= set(compared)
    screened = [d for d in updates if (f := screening.raw_facts(d)) is not None and f.text]
    assert screened and any(screening.raw_facts(d).kind is Kind.MESSAGE for d in screened)  # type: ignore[union-attr]


@pytest.fixture
async def limited(fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: Any) -> AsyncIterator[BotHarness]:
    harness = BotHarness(fake, db, clock, detector=stub_detector, **LIMITS)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


class _Ticks:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_a_flood_beyond_the_limit_is_never_built_and_is_still_marked_done(
    limited: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = limited
    assert h.hub.flood is not None
    h.hub.flood.now = _Ticks()
    await sup.add_patient(db, clock.now(), telegram_id=5001, code="P-1001")
    u = fake.add_user(id=5001, first_name="Jordan", started=True)
    built: list[int] = []
    parse = transport.parse_update

    def counting(data: Any, bot: Any) -> Any:
        update = parse(data, bot)
        built.append(update.update_id)
        return update

    monkeypatch.setattr(transport, "parse_update", counting)
    burst = int(h.settings.flood_member_burst)
    # Beyond the limit (once the database has said they are a patient: asked once).
    ids = [fake.send_text(u, f"hello {i}").update_id for i in range(burst + 5)]
    await h.settle(timeout=30)
    assert len(built) <= len(ids)
    built.clear()
    more = [fake.send_text(u, f"and again {i}").update_id for i in range(300)]
    crisis = fake.send_text(u, CRISIS)
    more += [fake.send_text(u, f"and more {i}").update_id for i in range(10)]
    await h.settle(timeout=30)
    ids += more
    # Of the flood beyond the limit, only the crisis became an Update.
    assert built == [crisis.update_id]
    flood_line = h.hub.content.t("common.flood", "en")
    texts = [m.plain_text or "" for m in fake.sent(u.id)]
    assert texts.count(flood_line) == 1
    assert any("988" in t for t in texts)  # the crisis beyond the limit is answered
    async with db.session() as s:
        assert len(list((await s.execute(select(Flag).where(Flag.severity == "crisis"))).scalars())) == 1
        statuses = set((await s.execute(select(InboxUpdate.status).where(InboxUpdate.update_id.in_([*ids, crisis.update_id])))).scalars())
    assert statuses == {"done"}
    assert {*ids, crisis.update_id} <= h.processed
    fake.assert_no_errors()


@pytest.mark.parametrize("path", ["read from its JSON", "built first"])
async def test_each_text_is_screened_once(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, stub_detector: Any, path: str
) -> None:
    if path == "built first":
        h.app.update_processor.triage = lambda data: None  # as while the detector builds
    await sup.add_patient(db, clock.now(), telegram_id=5001, code="P-1001")
    u = fake.add_user(id=5001, first_name="Jordan", started=True)
    stranger = fake.add_user(first_name="Sky", started=True)
    # Every phrase the stub detector knows (every severity), and an ordinary text.
    texts = ["hello, how are you", *sup.PHRASES]
    for who in (u, stranger):
        for text in texts:
            before = stub_detector.calls
            await h.send(who, f"{text} (from {who.id})")
            assert stub_detector.calls - before == 1, (text, who.first_name)
    before = stub_detector.calls
    await h.settle()
    inc = fake.send_photo(u, caption="I took all my pills")
    await h.handled(inc.update_id)
    await h.outbox_idle()
    assert stub_detector.calls - before == 1
    assert any("988" in (m.plain_text or "") for m in fake.sent(u.id))


async def test_an_update_read_from_its_json_that_cannot_be_built_is_refused_and_set_aside(
    fake: FakeTelegram, db: Database
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}/telegram"
    h = BotHarness(fake, db, webhook_url=url, webhook_secret="s3cret-token", webhook_port=port)
    await h.start()
    try:
        u = fake.add_user(first_name="Hook", started=True)
        message = {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": u.id, "type": "private", "first_name": "Hook"},
            "from": {"id": u.id, "is_bot": False, "first_name": "Hook"},
            "text": "hello",
        }
        bad = {"update_id": 778001, "message": {**message, "photo": 5}}
        assert screening.raw_facts(bad) is not None  # read from its JSON, but no Update can be built
        assert await fake.post_webhook(url, bad, secret_token="s3cret-token") == 400
        await h.runner.transport._finished()  # marked in the background  # type: ignore[union-attr]
        async with db.session() as s:
            row = (await s.execute(select(InboxUpdate).where(InboxUpdate.update_id == 778001))).scalar_one()
        assert row.status == "failed" and row.payload is None
        good = {"update_id": 778002, "message": {**message, "message_id": 2, "text": "/help",
                                                 "entities": [{"type": "bot_command", "offset": 0, "length": 5}]}}
        assert await fake.post_webhook(url, good, secret_token="s3cret-token") == 200
        await h.handled(778002)
        assert "invite link" in fake.last(u.id).plain_text
    finally:
        await h.stop()
