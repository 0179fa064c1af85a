"""Parameter decoding and the checks Telegram makes on keyboards and command lists."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .models import ApiError, bad_request


@dataclass
class UploadedFile:
    name: str | None
    mime_type: str | None
    data: bytes


class Params:
    """Request parameters from a query string, a form, a multipart body or a JSON body.

    Form and multipart values are strings (python-telegram-bot JSON-encodes everything that is not
    a string); JSON bodies keep their types. The getters accept both, as Telegram does.
    """

    def __init__(self, raw: dict[str, Any], files: dict[str, UploadedFile] | None = None) -> None:
        self.raw = raw
        self.files = files or {}

    def has(self, name: str) -> bool:
        return name in self.raw or name in self.files

    def get_str(self, name: str, default: str | None = None) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value)

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad_request(f'field "{name}" must be of type Integer') from None

    def get_float(self, name: str, default: float | None = None) -> float | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be of type Float') from None

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return bool(value)
        return str(value).strip().lower() in ("true", "1", "yes", "on")

    def get_json(self, name: str, error: str | None = None) -> Any:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error or f"can't parse {name} JSON object") from None
        return value

    def loggable(self) -> dict[str, Any]:
        data = dict(self.raw)
        for key, upload in self.files.items():
            data[key] = {
                "file_name": upload.name,
                "mime_type": upload.mime_type,
                "size": len(upload.data),
            }
        return data


CALLBACK_DATA_MAX_BYTES = 64
MAX_BUTTONS = 100
_INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_REPLY_REQUESTS = (
    "request_users",
    "request_chat",
    "request_contact",
    "request_location",
    "request_poll",
    "web_app",
)
_URL = re.compile(r"^(https?://[^\s/$.?#][^\s]*|tg://[^\s]+)$", re.IGNORECASE)


def _inline_button(button: Any) -> dict[str, Any]:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(button, dict):
        raise bad_request(prefix + "InlineKeyboardButton must be an Object")
    text = button.get("text")
    if not isinstance(text, str):
        raise bad_request(prefix + 'Field "text" must be of type String')
    if not text.strip():
        raise bad_request(prefix + 'Field "text" must be a non-empty String')
    actions = [key for key in _INLINE_ACTIONS if button.get(key) not in (None, "")]
    if not actions:
        if "callback_data" in button:
            raise bad_request("BUTTON_DATA_INVALID")
        raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        raise bad_request(
            prefix + f"exactly one of the optional fields must be used, got {', '.join(actions)}"
        )
    action = actions[0]
    value = button[action]
    if action == "callback_data":
        if not isinstance(value, str):
            raise bad_request(prefix + 'Field "callback_data" must be of type String')
        if not 1 <= len(value.encode("utf-8")) <= CALLBACK_DATA_MAX_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    elif action == "url":
        if not isinstance(value, str) or not _URL.match(value.strip()):
            raise bad_request(f"inline keyboard button URL '{value}' is invalid: Wrong HTTP URL")
    return button


def _reply_button(button: Any) -> dict[str, Any]:
    if isinstance(button, str):
        button = {"text": button}
    if not isinstance(button, dict):
        raise bad_request(
            "can't parse keyboard button: KeyboardButton must be a String or an Object"
        )
    text = button.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad_request('can\'t parse keyboard button: Field "text" must be a non-empty String')
    requests = [key for key in _REPLY_REQUESTS if button.get(key)]
    if len(requests) > 1:
        raise bad_request("can't parse keyboard button: at most one request field can be used")
    return button


def _rows(value: Any, field_name: str, markup: str) -> list[list[Any]]:
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise bad_request(
            f'can\'t parse reply keyboard markup JSON object: Field "{field_name}" of the {markup} '
            "should be an Array of Arrays"
        )
    return value


def validate_reply_markup(markup: Any) -> dict[str, Any] | None:
    """Check a ``reply_markup`` value like Telegram; returns it normalised (or None)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = _rows(markup["inline_keyboard"], "inline_keyboard", "InlineKeyboardMarkup")
        checked = [[_inline_button(button) for button in row] for row in rows]
        if sum(len(row) for row in checked) > MAX_BUTTONS:
            raise bad_request("reply markup is too long")
        return {"inline_keyboard": [row for row in checked if row]}
    if "keyboard" in markup:
        rows = _rows(markup["keyboard"], "keyboard", "ReplyKeyboardMarkup")
        checked_rows = [[_reply_button(button) for button in row] for row in rows]
        if not any(checked_rows):
            raise bad_request("keyboard must be non-empty")
        if sum(len(row) for row in checked_rows) > 300:
            raise bad_request("reply markup is too long")
        return {**markup, "keyboard": checked_rows}
    if "remove_keyboard" in markup:
        if markup.get("remove_keyboard") is not True:
            raise bad_request(
                'can\'t parse reply keyboard markup JSON object: Field "remove_keyboard" must be true'
            )
        return dict(markup)
    if "force_reply" in markup:
        if markup.get("force_reply") is not True:
            raise bad_request(
                'can\'t parse reply keyboard markup JSON object: Field "force_reply" must be true'
            )
        return dict(markup)
    raise bad_request("can't parse reply keyboard markup JSON object")


COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
SCOPE_TYPES = (
    "default",
    "all_private_chats",
    "all_group_chats",
    "all_chat_administrators",
    "chat",
    "chat_administrators",
    "chat_member",
)
LANGUAGE_RE = re.compile(r"^([a-z]{2})?$")


def validate_commands(commands: Any) -> list[dict[str, str]]:
    if commands is None:
        raise bad_request('parameter "commands" is required')
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad_request("BOT_COMMANDS_TOO_MUCH")
    checked: list[dict[str, str]] = []
    for item in commands:
        if not isinstance(item, dict):
            raise bad_request("can't parse BotCommand: BotCommand must be an Object")
        command = item.get("command")
        description = item.get("description")
        if not isinstance(command, str) or not COMMAND_RE.match(command):
            raise bad_request("BOT_COMMAND_INVALID")
        if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        checked.append({"command": command, "description": description})
    return checked


def validate_language(language_code: str | None) -> str:
    code = language_code or ""
    if not LANGUAGE_RE.match(code):
        raise bad_request("invalid language code specified")
    return code


def check_scope_shape(scope: Any) -> dict[str, Any]:
    if scope is None:
        return {"type": "default"}
    if not isinstance(scope, dict) or "type" not in scope:
        raise bad_request("can't parse BotCommandScope JSON object")
    if scope["type"] not in SCOPE_TYPES:
        raise bad_request("unsupported bot command scope type")
    if scope["type"] in ("chat", "chat_administrators", "chat_member") and scope.get("chat_id") in (
        None,
        "",
    ):
        raise bad_request("chat_id is empty")
    if scope["type"] == "chat_member" and scope.get("user_id") in (None, ""):
        raise bad_request("user_id is empty")
    return scope


__all__ = [
    "ApiError",
    "Params",
    "UploadedFile",
    "check_scope_shape",
    "validate_commands",
    "validate_language",
    "validate_reply_markup",
]
