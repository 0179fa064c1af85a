"""Telegram's HTML parse mode, reimplemented after the Bot API server's own parser.

``parse_html`` turns a ``parse_mode=HTML`` text into the plain text and the message entities
Telegram would store, or raises ``EntityParseError`` with the description Telegram gives after
``Bad Request: can't parse entities:``. Offsets and lengths are in UTF-16 code units.

One deliberate extra strictness: a ``&`` that does not start a valid entity is rejected (the Bot
API documentation requires it to be escaped), which catches text that was not run through
``html.escape``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)

_SIMPLE_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}

_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SPACES = " \t\n\r\f\v"
_USER_LINK = re.compile(r"^tg://user\?id=(\d{1,19})$", re.IGNORECASE)
_URL_SCHEMES = ("http://", "https://", "tg://", "ton://", "mailto:")


class EntityParseError(ValueError):
    """The text cannot be parsed; ``str(error)`` is Telegram's wording after the prefix."""


@dataclass
class ParsedText:
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram counts in."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


@dataclass
class _Open:
    tag: str
    argument: str
    utf16_offset: int
    result_pos: int
    expandable: bool = False


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode an HTML entity starting at ``text[pos] == '&'``: (character, next position)."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        value = 0
        digits = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
                digits += 1
                if value >= 0x10FFFF:
                    return None
        else:
            while end < n and text[end].isascii() and text[end].isdigit():
                value = value * 10 + int(text[end])
                end += 1
                digits += 1
                if value >= 0x10FFFF:
                    return None
        if digits == 0 or value == 0 or 0xD800 <= value <= 0xDFFF:
            return None
        char = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


def _normalize_url(url: str) -> str | None:
    url = url.strip()
    if not url:
        return None
    lowered = url.lower()
    if lowered.startswith(_URL_SCHEMES):
        return url
    if "://" in url or lowered.startswith(("javascript:", "data:", "file:")):
        return None
    if re.match(r"^[\w.-]+\.[a-z]{2,}(?:[/?#:].*)?$", url, re.IGNORECASE):
        return "http://" + url
    return None


def parse_html(text: str, *, strict_ampersand: bool = True) -> ParsedText:
    """Parse a Telegram HTML text. Raises ``EntityParseError`` like the Bot API does.

    With ``strict_ampersand=False`` a stray ``&`` is kept as text, exactly as Telegram does.
    """
    n = len(text)
    out: list[str] = []
    out_len = 0
    utf16 = 0
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_entity(text, i)
            if decoded is None:
                if strict_ampersand:
                    raise EntityParseError(
                        f'Unescaped "&" at byte offset {_byte_offset(text, i)}; use "&amp;"'
                    )
                decoded = ("&", i + 1)
            ch, i = decoded
            out.append(ch)
            out_len += 1
            utf16 += 2 if ord(ch) > 0xFFFF else 1
            continue
        if c != "<":
            j = i
            while j < n and text[j] not in "&<":
                j += 1
            chunk = text[i:j]
            out.append(chunk)
            out_len += len(chunk)
            utf16 += utf16_len(chunk)
            i = j
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {_byte_offset(text, begin)}"
                )
            i += 1
            name_start = i
            while i < n and text[i] not in _SPACES and text[i] != ">":
                i += 1
            end_name = text[name_start:i].lower()
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n or text[i] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {_byte_offset(text, begin)}"
                )
            i += 1
            opened = stack.pop()
            if end_name and end_name != opened.tag:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{opened.tag}>", found "</{end_name}>"'
                )
            _close(opened, utf16, "".join(out), entities)
            continue

        while i < n and text[i] not in _SPACES and text[i] != ">":
            i += 1
        if i >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        tag = text[begin + 1 : i].lower()
        if tag not in SUPPORTED_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
            )
        argument = ""
        expandable = False
        while True:
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n:
                raise EntityParseError(
                    f'Unclosed start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            if text[i] == ">":
                i += 1
                break
            attr_start = i
            while i < n and text[i] not in _SPACES and text[i] not in "=>":
                i += 1
            attr = text[attr_start:i].lower()
            if not attr:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n or text[i] != "=":
                if tag == "blockquote" and attr == "expandable":
                    expandable = True
                    continue
                raise EntityParseError(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                    f"at byte offset {_byte_offset(text, begin)}"
                )
            i += 1
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n:
                raise EntityParseError(
                    f'Unclosed start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            if text[i] not in "'\"":
                token_start = i
                while i < n and (text[i].isascii() and text[i].isalnum() or text[i] in ".-"):
                    i += 1
                value = text[token_start:i].lower()
                if i >= n or (text[i] not in _SPACES and text[i] != ">"):
                    raise EntityParseError(
                        f"Unexpected end of name token at byte offset {_byte_offset(text, token_start)}"
                    )
            else:
                quote = text[i]
                i += 1
                value_start = i
                parts: list[str] = []
                while i < n and text[i] != quote:
                    if text[i] == "&":
                        decoded = _decode_entity(text, i)
                        if decoded is not None:
                            parts.append(decoded[0])
                            i = decoded[1]
                            continue
                    parts.append(text[i])
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {_byte_offset(text, value_start)}"
                    )
                i += 1
                value = "".join(parts)
            if tag == "a" and attr == "href":
                argument = value
            elif tag == "code" and attr == "class" and value.startswith("language-"):
                argument = value[len("language-") :]
            elif tag == "span" and attr == "class" and value.startswith("tg-"):
                argument = value[len("tg-") :]
            elif tag == "tg-emoji" and attr == "emoji-id":
                argument = value
            elif tag == "blockquote" and attr == "expandable":
                expandable = True
        if tag == "span" and argument != "spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(text, begin)}'
            )
        stack.append(_Open(tag, argument, utf16, out_len, expandable))

    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText("".join(out), entities)


def _close(opened: _Open, utf16: int, result: str, entities: list[dict[str, Any]]) -> None:
    length = utf16 - opened.utf16_offset
    if length <= 0:
        return
    offset = opened.utf16_offset
    tag = opened.tag
    if tag in _SIMPLE_TYPES:
        entities.append({"type": _SIMPLE_TYPES[tag], "offset": offset, "length": length})
    elif tag == "blockquote":
        kind = "expandable_blockquote" if opened.expandable else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})
    elif tag == "tg-emoji":
        if opened.argument.isdigit():
            entities.append(
                {
                    "type": "custom_emoji",
                    "offset": offset,
                    "length": length,
                    "custom_emoji_id": opened.argument,
                }
            )
    elif tag == "a":
        url = opened.argument or result[opened.result_pos :]
        user_link = _USER_LINK.match(url.strip())
        if user_link:
            entities.append(
                {
                    "type": "text_mention",
                    "offset": offset,
                    "length": length,
                    "user": {"id": int(user_link.group(1)), "is_bot": False, "first_name": ""},
                }
            )
            return
        normalized = _normalize_url(url)
        if normalized is not None:
            entities.append(
                {"type": "text_link", "offset": offset, "length": length, "url": normalized}
            )
    elif tag == "code":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "pre"
            and last["offset"] == offset
            and last["length"] == length
            and opened.argument
        ):
            last["language"] = opened.argument
        else:
            entities.append({"type": "code", "offset": offset, "length": length})
            if opened.argument:
                entities[-1]["_language"] = opened.argument
    elif tag == "pre":
        last = entities[-1] if entities else None
        if (
            last is not None
            and last["type"] == "code"
            and last["offset"] == offset
            and last["length"] == length
        ):
            language = last.pop("_language", None)
            last["type"] = "pre"
            if language:
                last["language"] = language
        else:
            entities.append({"type": "pre", "offset": offset, "length": length})


def clean_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entity in entities:
        entity.pop("_language", None)
    return entities


def strip_text(parsed: ParsedText) -> ParsedText:
    """Trim leading and trailing whitespace as Telegram does, shifting and clipping entities."""
    text = parsed.text
    stripped = text.strip()
    if stripped == text:
        return ParsedText(text, clean_entities(parsed.entities))
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    entities: list[dict[str, Any]] = []
    for entity in clean_entities(parsed.entities):
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            entities.append({**entity, "offset": start, "length": end - start})
    return ParsedText(stripped, entities)


def parse_formatted(
    text: str, parse_mode: str | None, *, strict_ampersand: bool = True
) -> ParsedText:
    """Parse ``text`` for a ``parse_mode`` (HTML parsed; other modes kept as sent), then trim."""
    if parse_mode and parse_mode.lower() == "html":
        return strip_text(parse_html(text, strict_ampersand=strict_ampersand))
    return strip_text(ParsedText(text, []))
