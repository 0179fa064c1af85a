"""A fake Telegram Bot API server for end-to-end tests and benchmarks."""

from .entities import EntityParseError, ParsedText, parse_html, utf16_len
from .models import (
    ApiCall,
    ApiError,
    CallbackRecord,
    Edit,
    ErrorRecord,
    FakeChat,
    FakeUser,
    HeldCall,
    Incoming,
    SentMessage,
)
from .server import FakeTelegram

__all__ = [
    "ApiCall",
    "ApiError",
    "CallbackRecord",
    "Edit",
    "EntityParseError",
    "ErrorRecord",
    "FakeChat",
    "FakeTelegram",
    "FakeUser",
    "HeldCall",
    "Incoming",
    "ParsedText",
    "SentMessage",
    "parse_html",
    "utf16_len",
]
