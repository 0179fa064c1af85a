"""Plain records kept by the fake Bot API server: people, chats, messages, calls, errors."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import FakeTelegram


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(
        self, code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str, parameters: dict[str, Any] | None = None) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}", parameters)


def forbidden(detail: str) -> ApiError:
    return ApiError(403, f"Forbidden: {detail}")


MEMBER_STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")
PRESENT_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})


@dataclass(eq=False)
class FakeUser:
    """A person (or another bot) the tests play."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False
    started: bool = False
    blocked: bool = False
    deactivated: bool = False
    _fake: FakeTelegram | None = field(default=None, repr=False)

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code and not self.is_bot:
            data["language_code"] = self.language_code
        return data

    @property
    def fake(self) -> FakeTelegram:
        if self._fake is None:
            raise RuntimeError("this user is not attached to a FakeTelegram")
        return self._fake

    def send(self, text: str, chat: Any = None, reply_to: Any = None) -> Incoming:
        return self.fake.send_text(self, text, chat=chat, reply_to=reply_to)

    def press(self, message: SentMessage, callback_data: str) -> str:
        return self.fake.press(self, message, callback_data)

    def press_button(self, message: SentMessage, text: str) -> str:
        return self.fake.press_button(self, message, text)

    def send_location(self, latitude: float, longitude: float, chat: Any = None) -> Incoming:
        return self.fake.send_location(self, latitude, longitude, chat=chat)

    def send_contact(self, phone_number: str, **kwargs: Any) -> Incoming:
        return self.fake.send_contact(self, phone_number, **kwargs)

    def send_photo(self, caption: str | None = None, **kwargs: Any) -> Incoming:
        return self.fake.send_photo(self, caption=caption, **kwargs)

    def send_sticker(self, emoji: str = "\U0001f44d", chat: Any = None) -> Incoming:
        return self.fake.send_sticker(self, emoji=emoji, chat=chat)

    def send_voice(self, duration: int = 3, chat: Any = None) -> Incoming:
        return self.fake.send_voice(self, duration=duration, chat=chat)

    def send_forwarded(self, text: str, **kwargs: Any) -> Incoming:
        return self.fake.send_forwarded(self, text, **kwargs)

    def edit_text(self, message: Any, new_text: str) -> Incoming:
        return self.fake.edit_text(self, message, new_text)

    def block(self) -> Incoming:
        return self.fake.block(self)

    def unblock(self) -> Incoming:
        return self.fake.unblock(self)


@dataclass(eq=False)
class FakeChat:
    """A private chat, a basic group or a supergroup."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    members: dict[int, str] = field(default_factory=dict)
    bot_status: str = "member"
    migrated_to: int | None = None
    migrated_from: int | None = None
    pinned_message_id: int | None = None
    menu_button: dict[str, Any] | None = None
    next_message_id: int = 1

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.is_group:
            data["title"] = self.title or ""
            if self.username:
                data["username"] = self.username
        else:
            data["first_name"] = self.first_name or ""
            if self.last_name:
                data["last_name"] = self.last_name
            if self.username:
                data["username"] = self.username
        return data

    def status_of(self, user_id: int) -> str:
        return self.members.get(user_id, "left")


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes | None
    file_name: str | None
    mime_type: str | None
    file_path: str
    url: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


@dataclass
class Edit:
    """The state of a bot message after one edit."""

    seq: int
    date: int
    method: str
    text: str | None
    plain_text: str | None
    parse_mode: str | None
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None


@dataclass(eq=False)
class SentMessage:
    """A message the bot sent, with its current state and its history of edits."""

    chat_id: int
    message_id: int
    kind: str
    text: str | None
    plain_text: str | None
    parse_mode: str | None
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    date: int
    seq: int
    api: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    file_name: str | None = None
    mime_type: str | None = None
    file_bytes: bytes | None = field(default=None, repr=False)
    file_id: str | None = None
    reply_to_message_id: int | None = None
    edits: list[Edit] = field(default_factory=list)
    deleted: bool = False
    pinned: bool = False
    original_text: str | None = None
    original_plain_text: str | None = None

    @property
    def plain(self) -> str | None:
        """Same as ``plain_text``."""
        return self.plain_text

    @property
    def caption(self) -> str | None:
        return self.plain_text if self.kind != "text" else None

    @property
    def last_change_seq(self) -> int:
        return self.edits[-1].seq if self.edits else self.seq

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        if not self.reply_markup:
            return []
        return list(self.reply_markup.get("inline_keyboard") or [])

    def iter_buttons(self) -> Iterator[dict[str, Any]]:
        for row in self.inline_keyboard:
            yield from row

    @property
    def button_texts(self) -> list[str]:
        return [button.get("text", "") for button in self.iter_buttons()]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.iter_buttons() if "callback_data" in b]

    def button(self, text: str) -> dict[str, Any]:
        """The inline button whose text is ``text`` (or, failing that, contains it)."""
        buttons = list(self.iter_buttons())
        for candidate in buttons:
            if candidate.get("text") == text:
                return candidate
        partial = [b for b in buttons if text in b.get("text", "")]
        if len(partial) == 1:
            return partial[0]
        raise AssertionError(
            f"no single button {text!r} on message {self.message_id} in chat {self.chat_id}; "
            f"buttons: {self.button_texts}"
        )

    @property
    def texts(self) -> list[str | None]:
        """The plain text as first sent and after each edit."""
        return [self.original_plain_text] + [edit.plain_text for edit in self.edits]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "kind": self.kind,
            "text": self.text,
            "plain_text": self.plain_text,
            "parse_mode": self.parse_mode,
            "entities": self.entities,
            "reply_markup": self.reply_markup,
            "date": self.date,
            "seq": self.seq,
            "file_name": self.file_name,
            "mime_type": self.mime_type,
            "file_size": len(self.file_bytes) if self.file_bytes is not None else None,
            "file_base64": base64.b64encode(self.file_bytes).decode()
            if self.file_bytes is not None
            else None,
            "reply_to_message_id": self.reply_to_message_id,
            "edits": [
                {
                    "seq": e.seq,
                    "date": e.date,
                    "method": e.method,
                    "text": e.text,
                    "plain_text": e.plain_text,
                    "reply_markup": e.reply_markup,
                }
                for e in self.edits
            ],
            "deleted": self.deleted,
            "pinned": self.pinned,
        }


@dataclass
class Incoming:
    """An update the fake queued for the bot (what a person did)."""

    update: dict[str, Any]
    seq: int
    delivered: bool = True

    @property
    def update_id(self) -> int:
        """The update id (-1 when the bot was not meant to receive it, e.g. privacy mode)."""
        return int(self.update.get("update_id", -1))

    @property
    def message(self) -> dict[str, Any] | None:
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            if key in self.update:
                return self.update[key]
        callback = self.update.get("callback_query")
        if callback is not None:
            return callback.get("message")
        return None

    @property
    def message_id(self) -> int | None:
        message = self.message
        return None if message is None else int(message["message_id"])

    @property
    def chat_id(self) -> int | None:
        message = self.message
        return None if message is None else int(message["chat"]["id"])

    @property
    def kind(self) -> str:
        return next(key for key in self.update if key != "update_id")

    def to_dict(self) -> dict[str, Any]:
        """The Telegram ``Update`` as JSON (a copy), like ``telegram.Update.to_dict()``."""
        return copy.deepcopy(self.update)


@dataclass
class CallbackRecord:
    id: str
    user_id: int
    chat_id: int | None
    message_id: int | None
    data: str | None
    created: float
    seq: int
    answer: dict[str, Any] | None = None


@dataclass
class ApiCall:
    """One Bot API request as the fake saw it."""

    method: str
    params: dict[str, Any]
    time: float
    status: int | None = None
    description: str | None = None
    injected: bool = False
    disconnected: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class ErrorRecord:
    """A 4xx/5xx answer (or a dropped connection, status 0) the fake gave."""

    method: str
    status: int
    description: str
    params: dict[str, Any]
    time: float
    injected: bool = False


@dataclass
class FaultRule:
    kind: str
    method: str | None = None
    times: int | None = 1
    retry_after: int = 1
    chat_id: int | str | None = None
    description: str | None = None

    def matches(self, method: str, chat_id: Any) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method.lower() != method.lower():
            return False
        if self.chat_id is not None and str(self.chat_id) != str(chat_id):
            return False
        return True


@dataclass
class HoldRule:
    method: str | None
    chat_id: int | str | None
    predicate: Callable[[str, dict[str, Any]], bool] | None = None

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method is not None and self.method.lower() != method.lower():
            return False
        if self.chat_id is not None and str(self.chat_id) != str(params.get("chat_id")):
            return False
        if self.predicate is not None and not self.predicate(method, params):
            return False
        return True


@dataclass(eq=False)
class HeldCall:
    method: str
    params: dict[str, Any]
    time: float
