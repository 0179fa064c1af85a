"""Tests of the fake Telegram Bot API server, driven by a real python-telegram-bot ``Bot``."""

from __future__ import annotations

import asyncio
import datetime as dtm
import html
import json
import re
import struct
import sys
import warnings
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import telegram
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BotCommandScopeChatAdministrators,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)

from fakeapi import EntityParseError, FakeTelegram, parse_html, utf16_len

TOKEN = "123456:TEST-TOKEN"


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, bot_username="iop_test_bot", clock=clock) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(
        TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url
    ) as client:
        yield client


def retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# -- identity and plumbing ----------------------------------------------------------------


async def test_get_me_describes_the_bot(bot: telegram.Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "iop_test_bot"


async def test_latency_answers_every_call_that_much_later(bot: telegram.Bot, fake: FakeTelegram) -> None:
    """Benchmarks add a round trip to Telegram's servers (`python -m fakeapi --latency-ms`)."""
    fake.latency = 0.05
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    me = await bot.get_me()
    assert loop.time() - t0 >= 0.05
    assert me.username == "iop_test_bot"
    fake.latency = 0.0


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    other = telegram.Bot("123456:WRONG", base_url=fake.base_url)
    with pytest.raises(InvalidToken):
        await other.initialize()
    await other.shutdown()
    assert fake.errors[-1].status == 401
    assert fake.errors[-1].description == "Unauthorized"


async def test_unknown_method_answers_404_like_telegram(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{fake.base_url}{TOKEN}/sendTelepathy", data={"a": "1"}
        ) as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        async with session.get(f"{fake.base_url}{TOKEN}/getme") as response:
            body = await response.json()
            assert body["ok"] is True and body["result"]["username"] == "iop_test_bot"
        user = fake.add_user(started=True)
        async with session.post(
            f"{fake.base_url}{TOKEN}/sendMessage", json={"chat_id": user.id, "text": "json body"}
        ) as response:
            assert (await response.json())["result"]["text"] == "json body"
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"x": 1})


# -- getUpdates ---------------------------------------------------------------------------


async def test_get_updates_offsets_confirm_and_drop(fake: FakeTelegram, bot: telegram.Bot) -> None:
    alex = fake.add_user(first_name="Alex")
    sent = [alex.send(f"message {n}") for n in range(5)]
    updates = await bot.get_updates(limit=2)
    assert [u.message.text for u in updates] == ["message 0", "message 1"]
    again = await bot.get_updates()
    assert [u.update_id for u in again] == [s.update_id for s in sent]
    rest = await bot.get_updates(offset=sent[2].update_id)
    assert [u.message.text for u in rest] == ["message 2", "message 3", "message 4"]
    assert len(fake.pending_updates) == 3
    last = await bot.get_updates(offset=-1)
    assert [u.message.text for u in last] == ["message 4"]
    assert await bot.get_updates(offset=sent[4].update_id + 1) == ()
    await fake.wait_idle(timeout=1)


async def test_long_poll_wakes_up_when_an_update_arrives(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    sam = fake.add_user(first_name="Sam")
    poll = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=40))
    await fake.wait_for(lambda: any(c.method == "getUpdates" for c in fake.calls))
    assert not poll.done()
    loop = asyncio.get_running_loop()
    started = loop.time()
    sam.send("/start INVITE42")
    updates = await asyncio.wait_for(poll, timeout=5)
    assert loop.time() - started < 5
    message = updates[0].message
    assert message.text == "/start INVITE42"
    assert message.entities[0].type == "bot_command"
    assert message.entities[0].length == len("/start")
    assert message.chat.type == "private"


async def test_a_second_poller_terminates_the_first(fake: FakeTelegram, bot: telegram.Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=40))
    await fake.wait_for(lambda: sum(c.method == "getUpdates" for c in fake.calls) == 1)
    async with telegram.Bot(TOKEN, base_url=fake.base_url) as second:
        second_poll = asyncio.create_task(second.get_updates(timeout=30, read_timeout=40))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(first, timeout=5)
        fake.add_user().send("hello")
        assert (await asyncio.wait_for(second_poll, timeout=5))[0].message.text == "hello"


async def test_chat_member_updates_need_allowed_updates(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    boss = fake.add_user(first_name="Dana")
    kim = fake.add_user(first_name="Kim")
    group = fake.add_group("Counselors", members=[boss], bot_is_admin=True)
    fake.join(group, kim)
    default = await bot.get_updates()
    assert [u.message.new_chat_members[0].id for u in default] == [kim.id]
    fake.leave(group, kim)
    everything = await bot.get_updates(
        offset=default[-1].update_id + 1, allowed_updates=Update.ALL_TYPES
    )
    kinds = [u.chat_member is not None for u in everything]
    assert kinds == [True, False]
    change = everything[0].chat_member
    assert change.old_chat_member.status == "member"
    assert change.new_chat_member.status == "left"


# -- sending ----------------------------------------------------------------------------


async def test_send_message_is_recorded_with_plain_text(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    ana = fake.add_user(first_name="Ana", started=True)
    mark = fake.mark()
    markup = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Mood 1", callback_data="ci:mood:1")],
            [InlineKeyboardButton("Site", url="https://example.org")],
        ]
    )
    message = await bot.send_message(
        ana.id,
        "<b>Time for your check-in</b>\nHow are you, <i>Ana &amp; co</i>? &lt;3 &#128512;",
        parse_mode="HTML",
        reply_markup=markup,
    )
    recorded = await fake.wait_for_message(ana.id, after=mark)
    assert recorded.message_id == message.message_id
    assert recorded.plain_text == "Time for your check-in\nHow are you, Ana & co? <3 \U0001f600"
    assert message.text == recorded.plain_text
    assert recorded.parse_mode == "HTML"
    assert recorded.callback_data == ["ci:mood:1"]
    assert recorded.button_texts == ["Mood 1", "Site"]
    assert [e["type"] for e in recorded.entities] == ["bold", "italic"]
    assert message.entities[1].offset == len("Time for your check-in\nHow are you, ")
    assert fake.last(ana.id) is recorded
    assert fake.sent(ana) == [recorded]
    fake.assert_no_errors()


async def test_reply_keyboards_and_replies_are_accepted(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    ana = fake.add_user(started=True)
    incoming = ana.send("where are meetings?")
    keyboard = ReplyKeyboardMarkup(
        [[KeyboardButton("Share location", request_location=True)], ["Cancel"]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )
    reply = await bot.send_message(
        ana.id,
        "Share your location",
        reply_markup=keyboard,
        reply_to_message_id=incoming.message_id,
    )
    assert reply.reply_to_message.text == "where are meetings?"
    assert fake.last(ana).reply_markup["keyboard"][0][0]["request_location"] is True
    await bot.send_message(ana.id, "Thanks", reply_markup=ReplyKeyboardRemove())
    await bot.send_message(ana.id, "Type it", reply_markup=telegram.ForceReply())
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(ana.id, "x", reply_to_message_id=999)
    location = ana.send_location(40.7, -74.0)
    assert location.message["location"] == {"latitude": 40.7, "longitude": -74.0}


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("", None, "Bad Request: message text is empty"),
        ("   \n ", None, "message text is empty"),
        ("<b></b>", "HTML", "message text is empty"),
        ("x" * 4097, None, "Bad Request: message is too long"),
        ("\U0001f600" * 2049, None, "message is too long"),
        ("<b>" + "x" * 4097 + "</b>", "HTML", "message is too long"),
        ("I <3 you", "HTML", 'Bad Request: can\'t parse entities: Unsupported start tag "3"'),
        ("a < b", "HTML", 'Unsupported start tag ""'),
        ("<div>x</div>", "HTML", 'Unsupported start tag "div" at byte offset 0'),
        ("<b>bold", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", "HTML", "Unmatched end tag"),
        ("x</b>", "HTML", "Unexpected end tag at byte offset 1"),
        ("Tips & tricks", "HTML", "can't parse entities"),
        ("<span>x</span>", "HTML", 'Tag "span" must have class "tg-spoiler"'),
        ("hi", "Klingon", "unsupported parse_mode"),
    ],
)
async def test_bad_texts_are_rejected_like_telegram(
    fake: FakeTelegram, bot: telegram.Bot, text: str, parse_mode: str | None, error: str
) -> None:
    user = fake.add_user(started=True)
    with pytest.raises(BadRequest, match="(?i)" + re.escape(error.removeprefix("Bad Request: "))):
        await bot.send_message(user.id, text, parse_mode=parse_mode)
    assert fake.sent() == []
    assert fake.bad_requests[-1].method == "sendMessage"
    assert error in fake.bad_requests[-1].description


async def test_longest_texts_pass(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    await bot.send_message(user.id, "x" * 4096)
    await bot.send_message(user.id, "<b>" + "y" * 4096 + "</b>", parse_mode="HTML")
    await bot.send_message(user.id, "\U0001f600" * 2048)
    await bot.send_message(user.id, "  padded  ")
    assert fake.last(user).plain_text == "padded"
    await bot.send_message(user.id, "a < b & c", parse_mode=None)
    assert len(fake.sent(user)) == 5
    fake.assert_no_errors()


@pytest.mark.parametrize(
    ("button", "error"),
    [
        ({"text": "Go", "callback_data": "x" * 65}, "Button_data_invalid"),
        ({"text": "Go", "callback_data": "\u00e9" * 33}, "Button_data_invalid"),
        ({"text": "Go", "callback_data": ""}, "Button_data_invalid"),
        ({"text": "Go"}, "Text buttons are unallowed in the inline keyboard"),
        ({"text": "", "callback_data": "x"}, "Can't parse inline keyboard button"),
        ({"text": "Go", "url": "not a url"}, "Inline keyboard button url 'not a url' is invalid"),
        ({"text": "Go", "callback_data": "x", "url": "https://a.org"}, "exactly one"),
    ],
)
async def test_bad_inline_keyboards_are_rejected(
    fake: FakeTelegram, bot: telegram.Bot, button: dict[str, Any], error: str
) -> None:
    user = fake.add_user(started=True)
    async with aiohttp.ClientSession() as session:
        payload = {
            "chat_id": user.id,
            "text": "pick",
            "reply_markup": json.dumps({"inline_keyboard": [[button]]}),
        }
        async with session.post(f"{fake.base_url}{TOKEN}/sendMessage", data=payload) as response:
            body = await response.json()
    assert response.status == 400
    assert body["description"].lower().startswith("bad request: ")
    assert error.lower() in body["description"].lower()
    assert fake.sent() == []


async def test_callback_data_limit_is_64_bytes_through_ptb(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    user = fake.add_user(started=True)
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="d" * 64)]])
    await bot.send_message(user.id, "fits", reply_markup=ok)
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("no", callback_data="\u00e9" * 33)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(user.id, "does not fit", reply_markup=too_long)
    assert len(fake.sent(user)) == 1


async def test_caption_limit(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(user.id, png(2, 2), caption="c" * 1025)
    await bot.send_photo(user.id, png(2, 2), caption="c" * 1024)


# -- who can be written to -----------------------------------------------------------------


async def test_recipients_must_exist_and_have_started(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    silent = fake.add_user(first_name="Silent")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(silent.id, "hello")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(42, "hello")
    silent.send("hi")
    await bot.send_message(silent.id, "hello")


async def test_blocked_user_gets_403(fake: FakeTelegram, bot: telegram.Bot) -> None:
    pat = fake.add_user(first_name="Pat", started=True)
    await bot.send_message(pat.id, "first")
    update = pat.block()
    assert update.update["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(pat.id, "second")
    with pytest.raises(Forbidden):
        await bot.send_photo(pat.id, png(1, 1))
    assert [m.plain_text for m in fake.sent(pat)] == ["first"]
    pat.unblock()
    await bot.send_message(pat.id, "third")
    fake.deactivate(pat)
    with pytest.raises(Forbidden, match="user is deactivated"):
        await bot.send_message(pat.id, "fourth")


async def test_groups_kicked_bot_and_migration(fake: FakeTelegram, bot: telegram.Bot) -> None:
    lee = fake.add_user(first_name="Lee")
    basic = fake.add_group("Cohort A", supergroup=False, members=[lee], bot_is_admin=False)
    assert basic.id < 0
    await bot.send_message(basic.id, "hello group")
    new = fake.migrate_group(basic)
    assert str(new.id).startswith("-100")
    with pytest.raises(ChatMigrated) as migrated:
        await bot.send_message(basic.id, "again")
    assert migrated.value.new_chat_id == new.id
    await bot.send_message(new.id, "hello supergroup")
    fake.remove_bot_from_group(new, lee)
    with pytest.raises(Forbidden, match="kicked from the supergroup chat"):
        await bot.send_message(new.id, "anyone?")
    outsider = fake.add_group("Other", members=[lee], bot_status="left")
    with pytest.raises(Forbidden, match="bot is not a member of the supergroup chat"):
        await bot.send_message(outsider.id, "hi")


async def test_group_commands_and_privacy_mode(fake: FakeTelegram, bot: telegram.Bot) -> None:
    lee = fake.add_user(first_name="Lee")
    group = fake.add_group("Cohort", members=[lee], bot_is_admin=False)
    command = lee.send("/help@iop_test_bot now", chat=group)
    chatter = lee.send("just chatting", chat=group)
    assert command.delivered and not chatter.delivered
    updates = await bot.get_updates()
    assert [u.message.text for u in updates] == ["/help@iop_test_bot now"]
    assert updates[0].message.entities[0].length == len("/help@iop_test_bot")


async def test_membership_queries(fake: FakeTelegram, bot: telegram.Bot) -> None:
    dana = fake.add_user(first_name="Dana")
    kim = fake.add_user(first_name="Kim")
    stranger = fake.add_user(first_name="Stranger")
    group = fake.add_group("Counselors", members=[dana, kim], admins=[kim])
    assert (await bot.get_chat_member(group.id, dana.id)).status == "creator"
    assert (await bot.get_chat_member(group.id, kim.id)).status == "administrator"
    assert (await bot.get_chat_member(group.id, stranger.id)).status == "left"
    with pytest.raises(BadRequest, match="User not found"):
        await bot.get_chat_member(group.id, 99)
    admins = await bot.get_chat_administrators(group.id)
    assert {a.user.id for a in admins} == {dana.id, kim.id, fake.bot.id}
    chat = await bot.get_chat(group.id)
    assert chat.title == "Counselors" and chat.type == "supergroup"
    assert await bot.leave_chat(group.id)
    with pytest.raises(Forbidden):
        await bot.get_chat(group.id)


# -- failures ---------------------------------------------------------------------------------


async def test_injected_429_becomes_retry_after(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    fake.fail("sendMessage", kind="429", retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(user.id, "hello")
    assert retry_seconds(caught.value) == 3
    await bot.send_message(user.id, "hello")
    assert len(fake.sent(user)) == 1
    assert fake.errors[-1].injected and fake.errors[-1].status == 429
    fake.assert_no_errors()


async def test_flood_limit_uses_the_injected_clock(
    fake: FakeTelegram, bot: telegram.Bot, clock: Clock
) -> None:
    user = fake.add_user(started=True)
    fake.flood_limit = 2
    await bot.send_message(user.id, "1")
    await bot.send_message(user.id, "2")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(user.id, "3")
    assert retry_seconds(caught.value) == 1
    clock.now += 1.5
    await bot.send_message(user.id, "3")
    assert [m.plain_text for m in fake.sent(user)] == ["1", "2", "3"]


@pytest.mark.parametrize("kind", ["500", "502", "drop"])
async def test_injected_server_failures_record_nothing(
    fake: FakeTelegram, bot: telegram.Bot, kind: str
) -> None:
    user = fake.add_user(started=True)
    fake.fail("sendMessage", kind=kind, times=2, chat_id=user.id)
    for _ in range(2):
        with pytest.raises(NetworkError):
            await bot.send_message(user.id, "flag P-4821")
    assert fake.sent() == []
    await bot.send_message(user.id, "flag P-4821")
    assert len(fake.sent(user)) == 1
    assert [e.injected for e in fake.errors] == [True, True]


async def test_injected_403_and_other_chats_unaffected(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    one = fake.add_user(started=True)
    two = fake.add_user(started=True)
    fake.fail("sendMessage", kind="403", chat_id=two)
    await bot.send_message(one.id, "to one")
    with pytest.raises(Forbidden):
        await bot.send_message(two.id, "to two")
    await bot.send_message(two.id, "to two")
    assert len(fake.sent()) == 2


async def test_random_failures_are_seeded(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)

    async def attempt_all() -> list[str]:
        outcomes = []
        for n in range(30):
            try:
                await bot.send_message(user.id, f"n{n}")
                outcomes.append("ok")
            except RetryAfter:
                outcomes.append("429")
            except NetworkError:
                outcomes.append("net")
        return outcomes

    fake.fail_randomly(rate=0.4, kinds=("500", "429", "drop"), seed=7)
    first = await attempt_all()
    fake.fail_randomly(rate=0.4, kinds=("500", "429", "drop"), seed=7)
    second = await attempt_all()
    assert first == second
    assert {"ok", "429", "net"} <= set(first)
    assert len(fake.sent(user)) == 2 * first.count("ok")
    fake.fail_randomly(rate=0)
    await bot.send_message(user.id, "calm again")


async def test_held_call_whose_client_leaves_records_nothing(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    user = fake.add_user(started=True)
    fake.hold("sendMessage", chat_id=user.id)
    task = asyncio.create_task(bot.send_message(user.id, "never delivered"))
    held = await fake.wait_held()
    assert held.method == "sendMessage" and held.params["text"] == "never delivered"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for(lambda: not fake.held, description="the held call to be dropped")
    fake.release()
    assert fake.sent() == []
    assert fake.calls[-1].disconnected

    fake.hold("sendMessage")
    task = asyncio.create_task(bot.send_message(user.id, "delivered after release"))
    await fake.wait_held()
    assert fake.sent() == []
    fake.release()
    message = await asyncio.wait_for(task, timeout=5)
    assert fake.last(user).message_id == message.message_id


_KILLABLE_BOT = """
import asyncio, sys, telegram
async def main():
    async with telegram.Bot(sys.argv[1], base_url=sys.argv[2]) as bot:
        await bot.send_message(int(sys.argv[3]), "mid-handler")
asyncio.run(main())
"""


async def test_sigkilled_bot_subprocess_records_nothing(fake: FakeTelegram) -> None:
    user = fake.add_user(started=True)
    fake.hold("sendMessage", chat_id=user.id)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLABLE_BOT, TOKEN, fake.base_url, str(user.id)
    )
    try:
        held = await fake.wait_held(timeout=30)
        assert held.params["text"] == "mid-handler"
    finally:
        process.kill()
        await process.wait()
    fake.release()
    await fake.wait_for(lambda: not fake.held, description="the killed client's call to end")
    assert fake.sent() == []
    assert fake.calls[-1].disconnected


async def test_a_real_application_polls_answers_and_stops_cleanly(fake: FakeTelegram) -> None:
    from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.effective_user is not None
        code = " ".join(context.args or [])
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("I agree", callback_data="consent:yes")]]
        )
        await update.message.reply_html(
            f"Welcome, <b>{html.escape(update.effective_user.first_name)}</b> ({html.escape(code)})",
            reply_markup=keyboard,
        )

    async def consent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Thanks")
        await query.edit_message_text("Consent recorded")

    application = (
        Application.builder()
        .token(TOKEN)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(consent))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(allowed_updates=Update.ALL_TYPES, timeout=10)
        try:
            people = [fake.add_user(first_name=f"P<{n}>") for n in range(20)]
            mark = fake.mark()
            for person in people:
                person.send("/start CODE7")
            for person in people:
                welcome = await fake.wait_for_message(person.id, after=mark)
                assert welcome.plain_text == f"Welcome, {person.first_name} (CODE7)"
            query_id = people[0].press_button(fake.last(people[0]), "I agree")
            assert (await fake.wait_for_callback_answer(query_id))["text"] == "Thanks"
            edited = await fake.wait_for_message(
                people[0].id, lambda m: m.plain_text == "Consent recorded", include_edits=True
            )
            assert edited.reply_markup is None
            await fake.wait_idle()
        finally:
            await application.updater.stop()
            await application.stop()
    assert fake.errors == []


# -- editing, deleting, buttons -------------------------------------------------------------


async def test_edit_message_text_rules(fake: FakeTelegram, bot: telegram.Bot, clock: Clock) -> None:
    user = fake.add_user(started=True)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Claim", callback_data="fl:claim:1")]])
    message = await bot.send_message(
        user.id, "<b>Flag</b> open", parse_mode="HTML", reply_markup=keyboard
    )
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text(
            "<b>Flag</b> open",
            user.id,
            message.message_id,
            parse_mode="HTML",
            reply_markup=keyboard,
        )
    mark = fake.mark()
    await bot.edit_message_text(
        "<b>Flag</b> claimed", user.id, message.message_id, parse_mode="HTML"
    )
    recorded = await fake.wait_for_message(user.id, after=mark, include_edits=True)
    assert recorded.plain_text == "Flag claimed"
    assert recorded.reply_markup is None
    assert recorded.texts == ["Flag open", "Flag claimed"]
    assert recorded.edits[-1].method == "editMessageText"
    await bot.edit_message_reply_markup(user.id, message.message_id, reply_markup=keyboard)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(user.id, message.message_id, reply_markup=keyboard)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", user.id, 999)
    incoming = user.send("my own words")
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("changed", user.id, incoming.message_id)
    assert await bot.delete_message(user.id, message.message_id)
    assert fake.sent_message(user.id, message.message_id).deleted
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("late", user.id, message.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(user.id, message.message_id)
    old = await bot.send_message(user.id, "old")
    clock.now += 49 * 3600
    with pytest.raises(BadRequest, match="Message can't be deleted for everyone"):
        await bot.delete_message(user.id, old.message_id)


async def test_deleting_in_groups_follows_the_admin_right_and_the_48_hour_window(
    fake: FakeTelegram, bot: telegram.Bot, clock: Clock
) -> None:
    lee = fake.add_user(first_name="Lee")
    admin_group = fake.add_group("Counselors", members=[lee], bot_is_admin=True)
    plain_group = fake.add_group("Cohort", members=[lee], bot_is_admin=False)
    old_admin = await bot.send_message(admin_group.id, "old post")
    old_plain = await bot.send_message(plain_group.id, "old post")
    theirs = lee.send("their words", chat=plain_group)
    clock.now += 49 * 3600
    # An admin with can_delete_messages deletes any message of its group, however old ...
    assert await bot.delete_message(admin_group.id, old_admin.message_id)
    assert fake.sent_message(admin_group.id, old_admin.message_id).deleted
    # ... any other bot only its own, within 48 hours.
    with pytest.raises(BadRequest, match="Message can't be deleted"):
        await bot.delete_message(plain_group.id, old_plain.message_id)
    with pytest.raises(BadRequest, match="Message can't be deleted"):
        await bot.delete_message(plain_group.id, theirs.message_id)
    recent = await bot.send_message(plain_group.id, "recent post")
    assert await bot.delete_message(plain_group.id, recent.message_id)


async def test_buttons_and_callback_answers(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("\U0001f642 Good", callback_data="ci:mood:4")]]
    )
    await bot.send_message(user.id, "How is your mood?", reply_markup=keyboard)
    query_id = user.press_button(fake.last(user), "Good")
    forged = user.press(fake.last(user), "admin:grant:1")
    updates = await bot.get_updates()
    queries = [u.callback_query for u in updates]
    assert [q.data for q in queries] == ["ci:mood:4", "admin:grant:1"]
    assert queries[0].id == query_id and queries[1].id == forged
    assert queries[0].message.text == "How is your mood?"
    assert fake.callback_answer(query_id) is None
    assert await queries[0].answer("Saved")
    assert fake.callback_answer(query_id) == {
        "text": "Saved",
        "show_alert": False,
        "url": None,
        "cache_time": 0,
    }
    with pytest.raises(BadRequest, match="Query is too old"):
        await queries[0].answer("Again")
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("12345")
    with pytest.raises(BadRequest):
        await queries[1].answer("x" * 201)
    assert await queries[1].answer("x" * 200, show_alert=True)
    assert (await fake.wait_for_callback_answer(forged))["show_alert"] is True


async def test_user_edits_forwards_and_media_updates(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    original = user.send("I feel fine")
    user.edit_text(original, "I feel awful")
    user.send_forwarded("a quote")
    user.send_sticker()
    user.send_voice(duration=4)
    user.send_contact("+15550100")
    photo = user.send_photo(caption="my meds", data=png(3, 2))
    updates = await bot.get_updates()
    assert updates[1].edited_message.text == "I feel awful"
    assert updates[1].edited_message.message_id == original.message_id
    assert updates[2].message.forward_origin.type == "hidden_user"
    assert updates[3].message.sticker.emoji
    assert updates[4].message.voice.mime_type == "audio/ogg"
    assert updates[5].message.contact.user_id == user.id
    assert updates[6].message.caption == "my meds"
    file = await bot.get_file(updates[6].message.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == png(3, 2)
    assert photo.message_id == updates[6].message.message_id


# -- commands and settings -------------------------------------------------------------------


async def test_set_my_commands_validation_and_scopes(fake: FakeTelegram, bot: telegram.Bot) -> None:
    dana = fake.add_user(first_name="Dana", started=True)
    group = fake.add_group("Counselors", members=[dana])
    patient = [BotCommand("checkin", "Daily check-in"), BotCommand("sos", "Help with an urge")]
    await bot.set_my_commands(patient, scope=BotCommandScopeAllPrivateChats())
    await bot.set_my_commands(
        [BotCommand("claim", "Claim a flag")], scope=BotCommandScopeChat(group.id)
    )
    await bot.set_my_commands(
        [BotCommand("roster", "Roster")], scope=BotCommandScopeChatAdministrators(group.id)
    )
    await bot.set_my_commands([BotCommand("ayuda", "Ayuda")], language_code="es")
    assert [
        c.command for c in await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats())
    ] == [
        "checkin",
        "sos",
    ]
    assert await bot.get_my_commands() == ()
    assert [c.command for c in await bot.get_my_commands(language_code="es")] == ["ayuda"]
    assert fake.commands("chat", chat_id=group.id) == [
        {"command": "claim", "description": "Claim a flag"}
    ]
    assert fake.commands("all_private_chats")[1]["command"] == "sos"
    assert [c["command"] for c in fake.visible_commands(dana)] == ["checkin", "sos"]
    assert [c["command"] for c in fake.visible_commands(group, user=dana)] == ["roster"]
    assert await bot.delete_my_commands(scope=BotCommandScopeChatAdministrators(group.id))
    assert [c["command"] for c in fake.visible_commands(group, user=dana)] == ["claim"]
    for bad, error in [
        ([BotCommand("Start", "x")], "Bot_command_invalid"),
        ([BotCommand("with-dash", "x")], "Bot_command_invalid"),
        ([BotCommand("c" * 33, "x")], "Bot_command_invalid"),
        ([BotCommand("ok", "")], "Bot_command_description_invalid"),
        ([BotCommand("ok", "d" * 257)], "Bot_command_description_invalid"),
        ([BotCommand(f"c{n}", "x") for n in range(101)], "Bot_commands_too_much"),
    ]:
        with pytest.raises(BadRequest, match=error):
            await bot.set_my_commands(bad, scope=BotCommandScopeDefault())
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.set_my_commands(patient, scope=BotCommandScopeChat(-100999))
    assert fake.commands() == []


async def test_small_settings_methods(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    assert await bot.set_chat_menu_button(menu_button=telegram.MenuButtonCommands())
    assert (await bot.get_chat_menu_button()).type == "commands"
    assert await bot.send_chat_action(user.id, "typing")
    with pytest.raises(BadRequest):
        await bot.send_chat_action(user.id, "dancing")
    assert fake.chat_actions == [(user.id, "typing")]
    assert (await bot.get_my_name()).name == "IOP Test Bot"
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.delete_webhook(drop_pending_updates=True)
    message = await bot.send_message(user.id, "pin me")
    assert await bot.pin_chat_message(user.id, message.message_id)
    assert fake.last(user).pinned
    assert (await bot.get_chat(user.id)).pinned_message.text == "pin me"


# -- files ------------------------------------------------------------------------------------


async def test_multipart_photo_and_document_are_recorded(
    fake: FakeTelegram, bot: telegram.Bot
) -> None:
    user = fake.add_user(started=True)
    chart = png(64, 32)
    photo = await bot.send_photo(
        user.id,
        InputFile(chart, filename="progress.png"),
        caption="<i>30 days</i>",
        parse_mode="HTML",
    )
    assert (photo.photo[-1].width, photo.photo[-1].height) == (64, 32)
    recorded = fake.last(user)
    assert recorded.kind == "photo"
    assert recorded.file_bytes == chart
    assert recorded.file_name == "progress.png"
    assert recorded.caption == "30 days"
    export = json.dumps({"patient": "P-4821"}).encode()
    document = await bot.send_document(
        user.id, InputFile(export, filename="mydata.json"), caption="Your data"
    )
    assert document.document.file_name == "mydata.json"
    recorded = fake.last(user)
    assert (recorded.kind, recorded.file_name, recorded.file_bytes) == (
        "document",
        "mydata.json",
        export,
    )
    assert recorded.mime_type == "application/json"
    again = await bot.send_document(user.id, document.document.file_id)
    assert again.document.file_id == document.document.file_id
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(user.id, InputFile(b"not an image", filename="x.png"))
    with pytest.raises(BadRequest, match="Wrong file identifier"):
        await bot.send_document(user.id, "no-such-file-id")


# -- control API over HTTP -------------------------------------------------------------------


async def test_http_control_api(fake: FakeTelegram, bot: telegram.Bot) -> None:
    async with aiohttp.ClientSession() as session:

        async def control(action: str, **payload: Any) -> Any:
            async with session.post(f"{fake.control_url}/{action}", json=payload) as response:
                body = await response.json()
            assert body["ok"], body
            return body["result"]

        user = await control("add_user", first_name="Robin")
        incoming = await control("send_text", user_id=user["id"], text="/start")
        updates = await bot.get_updates()
        assert updates[0].update_id == incoming["update"]["update_id"]
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("I agree", callback_data="consent:yes")]]
        )
        waiting = asyncio.create_task(
            control("wait_for_message", chat_id=user["id"], contains="consent", timeout=5)
        )
        sent = await bot.send_message(user["id"], "Please read the consent", reply_markup=keyboard)
        found = await waiting
        assert found["message_id"] == sent.message_id
        query_id = await control(
            "press_button",
            user_id=user["id"],
            chat_id=user["id"],
            message_id=sent.message_id,
            text="I agree",
        )
        await control("fail", method="sendMessage", kind="429", retry_after=2)
        with pytest.raises(RetryAfter):
            await bot.send_message(user["id"], "nope")
        async with session.get(
            f"{fake.control_url}/sent", params={"chat_id": str(user["id"])}
        ) as response:
            listed = (await response.json())["result"]
        assert [m["plain_text"] for m in listed] == ["Please read the consent"]
        async with session.post(f"{fake.control_url}/nonsense", json={}) as response:
            assert response.status == 404
        async with session.post(f"{fake.control_url}/send_text", json={"user_id": 5}) as response:
            assert response.status == 400
    updates = await bot.get_updates(offset=updates[-1].update_id + 1)
    assert updates[0].callback_query.id == query_id


async def test_standalone_server_prints_its_urls() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fakeapi", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode().strip()
        assert line.startswith("base_url=http://127.0.0.1:")
        root = line.split("=", 1)[1].removesuffix("/bot")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{root}/control/state") as response:
                state = (await response.json())["result"]
        assert state["bot"]["username"] == "iop_test_bot"
    finally:
        process.terminate()
        await process.wait()


# -- webhooks -----------------------------------------------------------------------------------


async def test_webhook_delivery_to_a_local_receiver(fake: FakeTelegram, bot: telegram.Bot) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []
    status = {"code": 500}

    async def receive(request: web.Request) -> web.Response:
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        return web.Response(status=status["code"])

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        user = fake.add_user()
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        user.send("via webhook")
        await fake.wait_for(lambda: len(fake.webhook_errors) >= 1)
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 1 and info.last_error_message
        status["code"] = 200
        await fake.wait_idle()
        assert received[-1][0]["message"]["text"] == "via webhook"
        assert received[-1][1] == "s3cret"
        assert (
            await fake.post_webhook(
                f"http://127.0.0.1:{port}/hook", {"message": received[-1][0]["message"]}, "s3cret"
            )
            == 200
        )
        assert await bot.delete_webhook()
        user.send("via polling")
        assert (await bot.get_updates())[0].message.text == "via polling"
    finally:
        await runner.cleanup()


# -- waiting ------------------------------------------------------------------------------------


async def test_wait_for_message_timeout_explains(fake: FakeTelegram, bot: telegram.Bot) -> None:
    user = fake.add_user(started=True)
    await bot.send_message(user.id, "something else")
    with pytest.raises(AssertionError, match="something else"):
        await fake.wait_for_message(
            user.id, lambda m: "crisis" in (m.plain_text or ""), timeout=0.05
        )
    mark = fake.mark()
    waiting = asyncio.create_task(fake.wait_for_message(user.id, after=mark))
    await bot.send_message(user.id, "the next one")
    assert (await asyncio.wait_for(waiting, 5)).plain_text == "the next one"


# -- the HTML parser ------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(_text)
def test_escaped_text_round_trips(text: str) -> None:
    parsed = parse_html(html.escape(text))
    assert parsed.text == text
    assert parsed.entities == []


@settings(max_examples=200, deadline=None)
@given(_text.filter(lambda t: t != ""), st.sampled_from(["b", "i", "u", "s", "code", "tg-spoiler"]))
def test_wrapped_text_gets_one_entity(text: str, tag: str) -> None:
    parsed = parse_html(f"<{tag}>{html.escape(text, quote=False)}</{tag}>")
    assert parsed.text == text
    assert len(parsed.entities) == 1
    assert parsed.entities[0]["offset"] == 0
    assert parsed.entities[0]["length"] == utf16_len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>/&ab; =\"'#x1", max_size=40))
def test_parser_only_fails_with_parse_errors(text: str) -> None:
    try:
        parse_html(text)
    except EntityParseError:
        pass


def test_parser_details() -> None:
    parsed = parse_html(
        '<a href="https://example.org/?a=1&amp;b=2">site</a> <a href="tg://user?id=42">Kim</a> '
        '<pre><code class="language-python">x = 1</code></pre> <blockquote expandable>q</blockquote>'
        " <tg-spoiler>s</tg-spoiler> &#x1F600;&quot;"
    )
    assert parsed.text == 'site Kim x = 1 q s \U0001f600"'
    types = [e["type"] for e in parsed.entities]
    assert types == ["text_link", "text_mention", "pre", "expandable_blockquote", "spoiler"]
    assert parsed.entities[0]["url"] == "https://example.org/?a=1&b=2"
    assert parsed.entities[2]["language"] == "python"
    assert utf16_len("\U0001f600") == 2
    lenient = parse_html("Tips & tricks", strict_ampersand=False)
    assert lenient.text == "Tips & tricks"
