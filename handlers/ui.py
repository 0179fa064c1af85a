"""Small rendering helpers shared by the handlers: keyboards, replies, callback answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from bot.platform import outbox
from bot.platform.callbacks import Buttons
from bot.platform.http import call
from bot.platform.inbox import Inbox
from bot.platform.keyboards import Button, inline_keyboard
from bot.platform.outbox import Outgoing
from bot.platform.text import split_text

log = logging.getLogger(__name__)

NO_PREVIEW = json.dumps({"is_disabled": True})

# The messages with buttons each private chat has on screen, by button family (chat id → {prefix:
# message id}, the latest of each), so that typed text a question takes can close that question
# as a press would: its buttons go.
_ASKING: dict[int, dict[str, int]] = {}
_ASKING_MAX = 50_000


def _families(rows: Sequence[Sequence[Button]] | None) -> set[str]:
    return {str(data).split(":", 1)[0] for row in rows or () for _label, data in row if data}


def _asking(chat_id: int, message_id: int | None, rows: Sequence[Sequence[Button]] | None) -> None:
    """Remember which button families `message_id` now shows (none: forget it)."""
    if chat_id <= 0 or message_id is None:  # private chats only
        return
    shown = _ASKING.get(chat_id, {})
    for family in [f for f, m in shown.items() if m == message_id]:
        del shown[family]
    for family in _families(rows):
        shown[family] = message_id
    if shown and chat_id not in _ASKING:
        if len(_ASKING) >= _ASKING_MAX:
            _ASKING.pop(next(iter(_ASKING)))
        _ASKING[chat_id] = shown
    elif not shown:
        _ASKING.pop(chat_id, None)


async def close_question(update: Update, family: Buttons) -> None:
    """Typed text answered the question on screen: remove the buttons of the latest message
    showing `family`'s buttons (its text stays), so they cannot be pressed again, as a press on
    them would have closed it. Nothing to do when it was closed already or is not known (after
    a restart)."""
    chat = update.effective_chat
    if chat is None:
        return
    message_id = _ASKING.get(chat.id, {}).get(family.prefix)
    if message_id is None:
        return
    _asking(chat.id, message_id, None)
    fields = {"chat_id": str(chat.id), "message_id": str(message_id), "reply_markup": json.dumps({"inline_keyboard": []})}
    try:
        await call(chat.get_bot(), "editMessageReplyMarkup", fields)
    except TelegramError as exc:  # gone, too old, or not modified: nothing left to press
        log.debug("buttons not removed: %s", type(exc).__name__)


def keyboard(rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup:
    """The inline keyboard as python-telegram-bot objects (`bot.platform.keyboards` checks and shapes it)."""
    return InlineKeyboardMarkup.de_json(inline_keyboard(rows), None)


async def reply(
    update: Update,
    text: str,
    rows: Sequence[Sequence[Button]] | None = None,
    *,
    markup: object | None = None,
) -> Message | None:
    """Send text to the chat the update came from (HTML, split if long; buttons on the last part).

    What Telegram does not take now (a 429: wait) goes through the outbox and arrives once, later;
    so do replies to a chat whose earlier replies still wait there, to keep their order. Then
    None is returned (no message yet).
    """
    chat = update.effective_chat
    if chat is None:
        return None
    bot = chat.get_bot()
    parts = split_text(text)
    msg: Message | None = None
    for i, part in enumerate(parts):
        marks = [(keyboard(rows) if rows else markup) if j == len(parts) - 1 else None for j in range(i, len(parts))]
        rest = [_outgoing(chat.id, p, m) for p, m in zip(parts[i:], marks, strict=True)]
        if outbox.waiting_in(bot, chat.id) and await outbox.hand_over(bot, rest):
            return None
        try:
            msg = await bot.send_message(
                chat.id, part, parse_mode=ParseMode.HTML, reply_markup=marks[0], disable_web_page_preview=True  # type: ignore[arg-type]
            )
        except (RetryAfter, NetworkError) as exc:
            if await outbox.hand_over(bot, rest, exc):
                return None
            raise
    if msg is not None and rows:
        _asking(chat.id, msg.message_id, rows)
    return msg


def _reply_rows(chat_id: int, text: str, rows: Sequence[Sequence[Button]] | None) -> list[Outgoing]:
    """A reply as outbox rows: its parts, buttons on the last."""
    parts = split_text(text)
    return [_outgoing(chat_id, p, keyboard(rows) if rows and i == len(parts) - 1 else None) for i, p in enumerate(parts)]


def _edit_rows(chat_id: int, message_id: int, text: str, rows: Sequence[Sequence[Button]] | None) -> list[Outgoing]:
    """What `edit` does as outbox rows: the first part replaces the message, the rest follow."""
    parts = split_text(text)
    first = _outgoing(
        chat_id, parts[0], keyboard(rows) if rows and len(parts) == 1 else None, "editMessageText", message_id=message_id
    )
    return [first, *_reply_rows(chat_id, text, rows)[1:]]


# The step of an update (bot/platform/inbox.py) that says its replies were written to the outbox.
REPLIED = "replied"


async def reply_in(
    session: AsyncSession, inbox: Inbox, update: Update, screens: Sequence[tuple[str, Sequence[Sequence[Button]] | None]], *,
    now: datetime, urgent: bool = False, in_place: bool = True,
) -> list[int]:
    """Replies that must arrive exactly once, written to the outbox in the caller's transaction
    (the one that records what they answer): if the process dies after the commit they are still
    sent, once, and an update handled again finds them done. A button's first screen replaces the
    pressed message (or arrives as a new one where Telegram no longer allows that; not `in_place`:
    a new one always); the others follow. `urgent`: the crisis lane, sent before every ordinary row. After the commit, `sent_in`."""
    chat = update.effective_chat
    if chat is None:
        return []
    q = update.callback_query
    pressed = q.message if q is not None and in_place else None
    outs: list[Outgoing] = []
    for i, (text, rows) in enumerate(screens):
        if i == 0 and pressed is not None:
            first, *after = _edit_rows(chat.id, pressed.message_id, text, rows)
            outs += [replace(first, params={**(first.params or {}), outbox.OR_SEND: True}), *after]
        else:
            outs += _reply_rows(chat.id, text, rows)
    ids = [await outbox.enqueue(session, out, now=now, urgent=urgent) for out in outs]
    await inbox.note_step(session, update.update_id, REPLIED)
    return [i for i in ids if i is not None]


def replied(inbox: Inbox, update: Update) -> bool:
    """An earlier run wrote this update's replies to the outbox (`reply_in`) before it stopped:
    they are sent (or on their way), and there is nothing more to do or say."""
    return REPLIED in inbox.steps(update.update_id)


def sent_in(update: Update, ids: list[int]) -> None:
    """After the commit of `reply_in`: the sender delivers them now, and the chat's next direct
    replies queue behind them."""
    chat = update.effective_chat
    if chat is not None and ids:
        outbox.expect(chat.get_bot(), chat.id, ids)


def _outgoing(chat_id: int, text: str, markup: object | None, method: str = "sendMessage", **params: object) -> Outgoing:
    """A reply as the outbox sends it: HTML, no link preview, its buttons as Bot API JSON."""
    rm = markup.to_dict() if markup is not None and hasattr(markup, "to_dict") else None
    params = {"link_preview_options": {"is_disabled": True}, **params}
    return Outgoing(chat_id, text, method=method, params=params, reply_markup=rm)


async def edit(query: CallbackQuery, text: str, rows: Sequence[Sequence[Button]] | None = None) -> None:
    """Replace the text (and buttons) of the message a button was pressed on.

    A text too long for one message: the first part replaces it, the rest follows (buttons last).
    """
    msg = query.message
    if msg is None:  # a button on an inline-mode message; this bot sends none
        return
    parts = split_text(text)
    first_rows = rows if len(parts) == 1 else None
    fields = {
        "chat_id": str(msg.chat.id), "message_id": str(msg.message_id), "text": parts[0],
        "parse_mode": ParseMode.HTML.value, "link_preview_options": NO_PREVIEW,
    }
    if first_rows:
        fields["reply_markup"] = json.dumps(inline_keyboard(first_rows))
    bot = query.get_bot()
    edit_row = _edit_rows(msg.chat.id, msg.message_id, text, rows)[0]
    rest = _reply_rows(msg.chat.id, text, rows)  # all of it sent anew, if need be
    if outbox.waiting_in(bot, msg.chat.id) and await outbox.hand_over(bot, [edit_row, *rest[1:]]):
        return
    _asking(msg.chat.id, msg.message_id, first_rows)
    try:
        # Raw call: the edited message Telegram sends back is not needed (the hot path).
        await call(bot, "editMessageText", fields)
    except BadRequest as exc:
        low = exc.message.lower()
        if "not modified" in low:
            return
        if "message to edit not found" in low or "can't be edited" in low:
            parts = split_text(text)  # send it all as new messages
        else:
            raise
    except (RetryAfter, NetworkError) as exc:
        # Telegram did not take the edit: it and the rest go through the outbox, once, later.
        if await outbox.hand_over(bot, [edit_row, *rest[1:]], exc):
            return
        raise
    else:
        parts = parts[1:]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        try:
            await bot.send_message(
                msg.chat.id, part, parse_mode=ParseMode.HTML,
                reply_markup=keyboard(rows) if rows and last else None, disable_web_page_preview=True,
            )
        except (RetryAfter, NetworkError) as exc:
            if await outbox.hand_over(bot, rest[len(rest) - len(parts) + i :], exc):
                return
            raise


async def answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> bool:
    """Answer a button press (every press is answered); a late answer is not an error.
    False when Telegram refused it (too late, or answered already)."""
    fields = {"callback_query_id": query.id}
    if text:
        fields["text"] = text[:200]
    if alert:
        fields["show_alert"] = "true"
    try:
        await call(query.get_bot(), "answerCallbackQuery", fields)
    except TelegramError as exc:
        log.debug("callback answer failed: %s", type(exc).__name__)
        return False
    return True
