"""The Bot API methods the fake answers, strict where Telegram is strict."""

from __future__ import annotations

import asyncio
import copy
import re
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from .entities import EntityParseError, ParsedText, parse_formatted, utf16_len
from .models import (
    PRESENT_STATUSES,
    ApiError,
    Edit,
    FakeChat,
    SentMessage,
    StoredFile,
    bad_request,
    forbidden,
)
from .state import UPDATE_TYPES, FakeState
from .validation import (
    Params,
    UploadedFile,
    check_scope_shape,
    validate_commands,
    validate_language,
    validate_reply_markup,
)

Handler = Callable[[Any, Params], Any | Awaitable[Any]]
METHODS: dict[str, tuple[str, Handler]] = {}

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_TEXT_LIMIT = 200
DELETE_WINDOW = 48 * 3600
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def api_method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name.lower()] = (name, fn)
        return fn

    return register


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, GIF or WebP image; None if it is not one."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return 512, 512
    if data.startswith(b"\xff\xd8"):
        index = 2
        while index + 9 < len(data):
            if data[index] != 0xFF:
                index += 1
                continue
            marker = data[index + 1]
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[index + 5 : index + 9])
                return width, height
            (length,) = struct.unpack(">H", data[index + 2 : index + 4])
            index += 2 + length
        return 1, 1
    return None


class BotApiMixin(FakeState):
    """Bot API method implementations; each takes the decoded ``Params`` and returns a result."""

    # -- chats -----------------------------------------------------------------------------

    def _chat_ref(self, p: Params, name: str = "chat_id") -> FakeChat:
        raw = p.raw.get(name)
        if raw is None or raw == "":
            raise bad_request(f"{name} is empty")
        return self._resolve_chat(raw)

    def _resolve_chat(self, raw: Any) -> FakeChat:
        if isinstance(raw, str):
            value = raw.strip()
            if value.startswith("@"):
                wanted = value[1:].lower()
                for chat in self.chats.values():
                    if chat.is_group and chat.username and chat.username.lower() == wanted:
                        return chat
                raise bad_request("chat not found")
            try:
                raw = int(value)
            except ValueError:
                raise bad_request("chat not found") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad_request("chat not found")
        chat = self.chats.get(raw)
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _group_word(self, chat: FakeChat) -> str:
        return "supergroup chat" if chat.type == "supergroup" else "group chat"

    def _check_readable(self, chat: FakeChat) -> FakeChat:
        if chat.is_group:
            if chat.migrated_to is not None:
                raise bad_request(
                    "group chat was upgraded to a supergroup chat",
                    {"migrate_to_chat_id": chat.migrated_to},
                )
            if chat.bot_status == "kicked":
                raise forbidden(f"bot was kicked from the {self._group_word(chat)}")
            if chat.bot_status not in PRESENT_STATUSES:
                raise forbidden(f"bot is not a member of the {self._group_word(chat)}")
            return chat
        user = self.users.get(chat.id)
        if user is None or not user.started:
            raise bad_request("chat not found")
        return chat

    def _check_writable(self, chat: FakeChat) -> FakeChat:
        self._check_readable(chat)
        if not chat.is_group:
            user = self.users[chat.id]
            if user.is_bot:
                raise forbidden("bot can't send messages to bots")
            if user.deactivated:
                raise forbidden("user is deactivated")
            if user.blocked:
                raise forbidden("bot was blocked by the user")
        elif chat.bot_status == "restricted":
            raise bad_request("not enough rights to send text messages to the chat")
        return chat

    def _writable(self, p: Params) -> FakeChat:
        return self._check_writable(self._chat_ref(p))

    # -- formatting ------------------------------------------------------------------------

    def _format(
        self, text: str, parse_mode: str | None, entities: Any, *, caption: bool
    ) -> ParsedText:
        if parse_mode and parse_mode.lower() not in ("html", "markdown", "markdownv2"):
            raise bad_request(f'unsupported parse_mode "{parse_mode}"')
        if entities:
            if not isinstance(entities, list):
                raise bad_request("can't parse entities JSON object")
            parsed = parse_formatted(text, None)
            parsed.entities = [dict(e) for e in entities if isinstance(e, dict)]
        else:
            try:
                parsed = parse_formatted(text, parse_mode, strict_ampersand=self.strict_ampersand)
            except EntityParseError as error:
                raise bad_request(f"can't parse entities: {error}") from None
        limit = CAPTION_LIMIT if caption else TEXT_LIMIT
        if utf16_len(parsed.text) > limit:
            raise bad_request("message caption is too long" if caption else "message is too long")
        for entity in parsed.entities:
            if entity.get("type") == "text_mention":
                known = self.users.get(entity["user"]["id"])
                if known is not None:
                    entity["user"] = known.to_api()
        return parsed

    def _text_param(self, p: Params, name: str = "text") -> str:
        text = p.get_str(name)
        if text is None or not text.strip():
            raise bad_request("message text is empty")
        return text

    def _message_text(self, p: Params) -> ParsedText:
        text = self._text_param(p)
        parsed = self._format(text, p.get_str("parse_mode"), p.get_json("entities"), caption=False)
        if not parsed.text:
            raise bad_request("message text is empty")
        return parsed

    def _caption(self, p: Params) -> ParsedText | None:
        caption = p.get_str("caption")
        if caption is None or caption == "":
            return None
        return self._format(
            caption, p.get_str("parse_mode"), p.get_json("caption_entities"), caption=True
        )

    def _markup(self, p: Params) -> dict[str, Any] | None:
        return validate_reply_markup(
            p.get_json("reply_markup", error="can't parse reply keyboard markup JSON object")
        )

    def _reply_target(self, p: Params, chat: FakeChat) -> dict[str, Any] | None:
        parameters = p.get_json("reply_parameters")
        if parameters is not None:
            if not isinstance(parameters, dict) or "message_id" not in parameters:
                raise bad_request("can't parse reply parameters JSON object")
            target_chat = chat
            if parameters.get("chat_id") not in (None, ""):
                target_chat = self._resolve_chat(parameters["chat_id"])
            message_id = parameters["message_id"]
            allow = bool(parameters.get("allow_sending_without_reply"))
        else:
            message_id = p.get_int("reply_to_message_id")
            if message_id is None:
                return None
            target_chat = chat
            allow = p.get_bool("allow_sending_without_reply")
        try:
            key = (target_chat.id, int(message_id))
        except (TypeError, ValueError):
            key = (target_chat.id, 0)
        target = self._messages.get(key)
        if target is None or key in self._deleted:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return target

    # -- recording a bot message -----------------------------------------------------------

    def _record_bot_message(
        self,
        p: Params,
        chat: FakeChat,
        kind: str,
        body: dict[str, Any],
        parsed: ParsedText | None,
        raw_text: str | None,
        markup: dict[str, Any] | None,
        reply_to: dict[str, Any] | None,
        stored: StoredFile | None = None,
    ) -> dict[str, Any]:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self.bot.to_api(),
            "chat": chat.to_api(),
            "date": self.now(),
        }
        if reply_to is not None:
            message["reply_to_message"] = copy.deepcopy(
                {k: v for k, v in reply_to.items() if k != "reply_to_message"}
            )
        message.update(body)
        text_key, entities_key = (
            ("text", "entities") if kind == "text" else ("caption", "caption_entities")
        )
        if parsed is not None:
            message[text_key] = parsed.text
            if parsed.entities:
                message[entities_key] = parsed.entities
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        if p.get_bool("protect_content"):
            message["has_protected_content"] = True
        sent = SentMessage(
            chat_id=chat.id,
            message_id=message_id,
            kind=kind,
            text=raw_text,
            plain_text=parsed.text if parsed is not None else None,
            parse_mode=p.get_str("parse_mode"),
            entities=list(parsed.entities) if parsed is not None else [],
            reply_markup=markup,
            date=message["date"],
            seq=self._next_seq(),
            api=message,
            params=dict(p.raw),
            file_name=stored.file_name if stored else None,
            mime_type=stored.mime_type if stored else None,
            file_bytes=stored.data if stored else None,
            file_id=stored.file_id if stored else None,
            reply_to_message_id=reply_to["message_id"] if reply_to is not None else None,
            original_text=raw_text,
            original_plain_text=parsed.text if parsed is not None else None,
        )
        self._store_sent(sent)
        self._touch()
        return message

    # -- files -----------------------------------------------------------------------------

    def _input_file(
        self, p: Params, name: str, folder: str
    ) -> tuple[StoredFile, UploadedFile | None]:
        upload = p.files.get(name)
        value = p.get_str(name)
        if upload is None and value and value.startswith("attach://"):
            upload = p.files.get(value[len("attach://") :])
        if upload is not None:
            if not upload.data:
                raise bad_request("file must be non-empty")
            stored = self._new_file(upload.data, upload.name, upload.mime_type, folder)
            return stored, upload
        if not value:
            raise bad_request(f"there is no {name} in the request")
        known = self.files.get(value)
        if known is not None:
            return known, None
        if value.lower().startswith(("http://", "https://")):
            name_part = value.rstrip("/").rsplit("/", 1)[-1] or None
            return self._new_file(None, name_part, None, folder, url=value), None
        raise bad_request("wrong file identifier/HTTP URL specified")

    # == methods =============================================================================

    @api_method("getMe")
    def api_get_me(self, p: Params) -> dict[str, Any]:
        return {
            **self.bot.to_api(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @api_method("logOut")
    def api_log_out(self, p: Params) -> bool:
        return True

    @api_method("close")
    def api_close(self, p: Params) -> bool:
        return True

    @api_method("getUpdates")
    async def api_get_updates(self, p: Params) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                "to delete the webhook first",
            )
        offset = p.get_int("offset", 0) or 0
        limit = min(max(p.get_int("limit", 100) or 100, 1), 100)
        timeout = max(p.get_float("timeout", 0.0) or 0.0, 0.0)
        allowed = p.get_json("allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise bad_request("can't parse allowed_updates JSON object")
            self.allowed_updates = [u for u in allowed if u in UPDATE_TYPES]
        self._confirm(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.token_revoked:
                raise ApiError(401, "Unauthorized")
            if generation != self._poll_generation:
                if self.webhook is not None:
                    raise ApiError(409, "Conflict: terminated by setWebhook request")
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
            batch = self._collect(limit)
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                return batch
            event = self._update_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    @api_method("setWebhook")
    def api_set_webhook(self, p: Params) -> bool:
        url = (p.get_str("url") or "").strip()
        if not url:
            return self.api_delete_webhook(p)
        if not url.lower().startswith(("http://", "https://")):
            raise bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )
        secret = p.get_str("secret_token")
        if secret is not None and secret != "" and not _SECRET_RE.match(secret):
            raise bad_request("secret token contains unallowed characters")
        allowed = p.get_json("allowed_updates")
        if allowed is not None:
            self.allowed_updates = [u for u in allowed if u in UPDATE_TYPES]
        if p.get_bool("drop_pending_updates"):
            self._pending.clear()
        self.webhook = {
            "url": url,
            "secret_token": secret or None,
            "max_connections": p.get_int("max_connections", 40),
        }
        self._poll_generation += 1
        self._wake_pollers()
        self._webhook_changed()
        return True

    @api_method("deleteWebhook")
    def api_delete_webhook(self, p: Params) -> bool:
        self.webhook = None
        if p.get_bool("drop_pending_updates"):
            self._pending.clear()
        self._webhook_changed()
        self._touch()
        return True

    def _webhook_changed(self) -> None:
        """Hook for the server, which runs the webhook delivery."""

    @api_method("getWebhookInfo")
    def api_get_webhook_info(self, p: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook:
            info["max_connections"] = self.webhook.get("max_connections") or 40
            info["ip_address"] = "127.0.0.1"
            if self.allowed_updates:
                info["allowed_updates"] = list(self.allowed_updates)
            if self.webhook_errors:
                date, message = self.webhook_errors[-1]
                info["last_error_date"] = int(date)
                info["last_error_message"] = message
        return info

    @api_method("sendMessage")
    def api_send_message(self, p: Params) -> dict[str, Any]:
        self._text_param(p)
        chat = self._writable(p)
        parsed = self._message_text(p)
        markup = self._markup(p)
        reply_to = self._reply_target(p, chat)
        return self._record_bot_message(
            p, chat, "text", {}, parsed, p.get_str("text"), markup, reply_to
        )

    @api_method("sendPhoto")
    def api_send_photo(self, p: Params) -> dict[str, Any]:
        chat = self._writable(p)
        parsed = self._caption(p)
        markup = self._markup(p)
        reply_to = self._reply_target(p, chat)
        stored, upload = self._input_file(p, "photo", "photos")
        width, height = 800, 600
        if stored.data is not None:
            size = _image_size(stored.data)
            if size is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            width, height = size
        if stored.mime_type is None and upload is not None:
            stored.mime_type = "image/jpeg"
        photo = [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": width,
                "height": height,
                "file_size": stored.size,
            }
        ]
        return self._record_bot_message(
            p,
            chat,
            "photo",
            {"photo": photo},
            parsed,
            p.get_str("caption"),
            markup,
            reply_to,
            stored,
        )

    @api_method("sendDocument")
    def api_send_document(self, p: Params) -> dict[str, Any]:
        chat = self._writable(p)
        parsed = self._caption(p)
        markup = self._markup(p)
        reply_to = self._reply_target(p, chat)
        stored, _ = self._input_file(p, "document", "documents")
        document: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        return self._record_bot_message(
            p,
            chat,
            "document",
            {"document": document},
            parsed,
            p.get_str("caption"),
            markup,
            reply_to,
            stored,
        )

    @api_method("sendLocation")
    def api_send_location(self, p: Params) -> dict[str, Any]:
        chat = self._writable(p)
        latitude = p.get_float("latitude")
        longitude = p.get_float("longitude")
        if (
            latitude is None
            or longitude is None
            or not -90 <= latitude <= 90
            or not -180 <= longitude <= 180
        ):
            raise bad_request("wrong location specified")
        markup = self._markup(p)
        reply_to = self._reply_target(p, chat)
        body = {"location": {"latitude": latitude, "longitude": longitude}}
        return self._record_bot_message(p, chat, "location", body, None, None, markup, reply_to)

    def _source_message(self, p: Params, error: str) -> dict[str, Any]:
        source_chat = self._check_readable(self._chat_ref(p, "from_chat_id"))
        message_id = p.get_int("message_id")
        key = (source_chat.id, message_id or 0)
        source = self._messages.get(key)
        if source is None or key in self._deleted:
            raise bad_request(error)
        return source

    @api_method("copyMessage")
    def api_copy_message(self, p: Params) -> dict[str, Any]:
        chat = self._writable(p)
        source = self._source_message(p, "message to copy not found")
        markup = self._markup(p)
        reply_to = self._reply_target(p, chat)
        body: dict[str, Any] = {}
        kind = "text"
        parsed: ParsedText | None = None
        raw_text: str | None = None
        for media in ("photo", "document", "location", "sticker", "voice", "contact"):
            if media in source:
                body[media] = copy.deepcopy(source[media])
                kind = media
        if kind == "text":
            if "text" not in source:
                raise bad_request("message can't be copied")
            parsed = ParsedText(source["text"], copy.deepcopy(source.get("entities", [])))
            raw_text = source["text"]
        elif p.has("caption"):
            parsed = self._caption(p)
            raw_text = p.get_str("caption")
        elif "caption" in source:
            parsed = ParsedText(
                source["caption"], copy.deepcopy(source.get("caption_entities", []))
            )
            raw_text = source["caption"]
        stored = None
        for media in ("document", "photo"):
            if media in body:
                file_id = body[media][-1]["file_id"] if media == "photo" else body[media]["file_id"]
                stored = self.files.get(file_id)
        message = self._record_bot_message(
            p, chat, kind, body, parsed, raw_text, markup, reply_to, stored
        )
        return {"message_id": message["message_id"]}

    @api_method("forwardMessage")
    def api_forward_message(self, p: Params) -> dict[str, Any]:
        chat = self._writable(p)
        source = self._source_message(p, "message to forward not found")
        body: dict[str, Any] = {}
        kind = "text"
        for media in ("photo", "document", "location", "sticker", "voice", "contact"):
            if media in source:
                body[media] = copy.deepcopy(source[media])
                kind = media
        origin: dict[str, Any] = {
            "type": "user",
            "sender_user": source["from"],
            "date": source["date"],
        }
        if source["chat"]["type"] == "channel":
            origin = {
                "type": "channel",
                "chat": source["chat"],
                "message_id": source["message_id"],
                "date": source["date"],
            }
        body["forward_origin"] = origin
        parsed = None
        raw_text = None
        key = "text" if kind == "text" else "caption"
        if key in source:
            entities_key = "entities" if key == "text" else "caption_entities"
            parsed = ParsedText(source[key], copy.deepcopy(source.get(entities_key, [])))
            raw_text = source[key]
        return self._record_bot_message(p, chat, kind, body, parsed, raw_text, None, None)

    def _editable(self, p: Params) -> tuple[FakeChat, SentMessage]:
        if p.get_str("inline_message_id"):
            raise bad_request("message to edit not found")
        chat = self._check_writable(self._chat_ref(p))
        message_id = p.get_int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        sent = self._sent.get((chat.id, message_id))
        if sent is None:
            key = (chat.id, message_id)
            if key in self._messages and key not in self._deleted:
                raise bad_request("message can't be edited")
            raise bad_request("message to edit not found")
        if sent.deleted:
            raise bad_request("message to edit not found")
        return chat, sent

    def _edit_markup(self, p: Params) -> dict[str, Any] | None:
        markup = self._markup(p)
        if markup is not None and "inline_keyboard" not in markup:
            raise bad_request("inline keyboard expected")
        return markup

    def _apply_edit(
        self,
        sent: SentMessage,
        method: str,
        parsed: ParsedText | None,
        raw_text: str | None,
        parse_mode: str | None,
        markup: dict[str, Any] | None,
        text_changes: bool,
    ) -> dict[str, Any]:
        new_plain = parsed.text if parsed is not None else None
        new_entities = parsed.entities if parsed is not None else []
        same_text = not text_changes or (
            new_plain == sent.plain_text and new_entities == sent.entities
        )
        if same_text and markup == (sent.reply_markup if sent.inline_keyboard else None):
            raise bad_request(NOT_MODIFIED)
        message = sent.api
        if text_changes:
            text_key, entities_key = (
                ("text", "entities") if sent.kind == "text" else ("caption", "caption_entities")
            )
            sent.text = raw_text
            sent.plain_text = new_plain
            sent.parse_mode = parse_mode
            sent.entities = list(new_entities)
            if new_plain is None:
                message.pop(text_key, None)
            else:
                message[text_key] = new_plain
            if new_entities:
                message[entities_key] = list(new_entities)
            else:
                message.pop(entities_key, None)
        sent.reply_markup = markup
        if markup is not None:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = self.now()
        edit = Edit(
            seq=self._next_seq(),
            date=message["edit_date"],
            method=method,
            text=sent.text,
            plain_text=sent.plain_text,
            parse_mode=sent.parse_mode,
            entities=list(sent.entities),
            reply_markup=markup,
        )
        sent.edits.append(edit)
        self._add_event(sent, edit.seq, True)
        self._touch()
        return copy.deepcopy(message)

    @api_method("editMessageText")
    def api_edit_message_text(self, p: Params) -> dict[str, Any]:
        self._text_param(p)
        _, sent = self._editable(p)
        if sent.kind != "text":
            raise bad_request("there is no text in the message to edit")
        parsed = self._message_text(p)
        markup = self._edit_markup(p)
        return self._apply_edit(
            sent,
            "editMessageText",
            parsed,
            p.get_str("text"),
            p.get_str("parse_mode"),
            markup,
            True,
        )

    @api_method("editMessageCaption")
    def api_edit_message_caption(self, p: Params) -> dict[str, Any]:
        _, sent = self._editable(p)
        if sent.kind not in ("photo", "document"):
            raise bad_request("there is no caption in the message to edit")
        parsed = self._caption(p)
        markup = self._edit_markup(p)
        return self._apply_edit(
            sent,
            "editMessageCaption",
            parsed,
            p.get_str("caption"),
            p.get_str("parse_mode"),
            markup,
            True,
        )

    @api_method("editMessageReplyMarkup")
    def api_edit_message_reply_markup(self, p: Params) -> dict[str, Any]:
        _, sent = self._editable(p)
        markup = self._edit_markup(p)
        return self._apply_edit(sent, "editMessageReplyMarkup", None, None, None, markup, False)

    @api_method("deleteMessage")
    def api_delete_message(self, p: Params) -> bool:
        chat = self._check_readable(self._chat_ref(p))
        message_id = p.get_int("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        key = (chat.id, message_id)
        message = self._messages.get(key)
        if message is None or key in self._deleted:
            raise bad_request("message to delete not found")
        from_bot = message.get("from", {}).get("id") == self.bot.id
        # An admin with can_delete_messages deletes any message of its group, however old; any
        # other bot only its own there (and anything in a private chat), within 48 hours.
        admin = chat.is_group and chat.bot_status in ("creator", "administrator")
        if chat.is_group and not from_bot and not admin:
            raise bad_request("message can't be deleted")
        if not admin and self.now() - int(message.get("date", 0)) > DELETE_WINDOW:
            raise bad_request(
                "message can't be deleted" if chat.is_group else "message can't be deleted for everyone"
            )
        self._deleted.add(key)
        self._chat_changed(chat.id)
        sent = self._sent.get(key)
        if sent is not None:
            sent.deleted = True
        self._touch()
        return True

    @api_method("answerCallbackQuery")
    def api_answer_callback_query(self, p: Params) -> bool:
        query_id = p.get_str("callback_query_id") or ""
        record = self.callbacks.get(query_id)
        expired = (
            record is not None
            and self.callback_query_ttl is not None
            and self.clock() - record.created > self.callback_query_ttl
        )
        if record is None or record.answer is not None or expired:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = p.get_str("text")
        if text is not None and len(text) > CALLBACK_TEXT_LIMIT:
            raise bad_request("MESSAGE_TOO_LONG")
        record.answer = {
            "text": text,
            "show_alert": p.get_bool("show_alert"),
            "url": p.get_str("url"),
            "cache_time": p.get_int("cache_time", 0),
        }
        self._touch()
        return True

    @api_method("sendChatAction")
    def api_send_chat_action(self, p: Params) -> bool:
        chat = self._writable(p)
        action = p.get_str("action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.chat_actions.append((chat.id, action))
        return True

    def _scope_key(self, p: Params) -> tuple[str, int | None, int | None, str]:
        scope = check_scope_shape(
            p.get_json("scope", error="can't parse BotCommandScope JSON object")
        )
        language = validate_language(p.get_str("language_code"))
        scope_type = scope["type"]
        chat_id: int | None = None
        user_id: int | None = None
        if scope_type in ("chat", "chat_administrators", "chat_member"):
            chat = self._check_readable(self._resolve_chat(scope["chat_id"]))
            if scope_type != "chat" and not chat.is_group:
                raise bad_request("can't use this scope in a private chat")
            chat_id = chat.id
            if scope_type == "chat_member":
                try:
                    user_id = int(scope["user_id"])
                except (TypeError, ValueError):
                    raise bad_request("user not found") from None
                if user_id not in self.users:
                    raise bad_request("user not found")
        return scope_type, chat_id, user_id, language

    @api_method("setMyCommands")
    def api_set_my_commands(self, p: Params) -> bool:
        commands = validate_commands(
            p.get_json("commands", error="can't parse commands JSON object")
        )
        key = self._scope_key(p)
        if commands:
            self._command_sets[key] = commands
        else:
            self._command_sets.pop(key, None)
        self._touch()
        return True

    @api_method("getMyCommands")
    def api_get_my_commands(self, p: Params) -> list[dict[str, str]]:
        return [dict(c) for c in self._command_sets.get(self._scope_key(p), [])]

    @api_method("deleteMyCommands")
    def api_delete_my_commands(self, p: Params) -> bool:
        self._command_sets.pop(self._scope_key(p), None)
        self._touch()
        return True

    def _texts_by_language(self, store: dict[str, str], p: Params) -> str:
        language = validate_language(p.get_str("language_code"))
        return store.get(language, store.get("", ""))

    def _set_text(self, store: dict[str, str], p: Params, name: str, limit: int) -> bool:
        language = validate_language(p.get_str("language_code"))
        value = p.get_str(name) or ""
        if len(value) > limit:
            raise bad_request(f"{name} is too long")
        if value:
            store[language] = value
        elif language:
            store.pop(language, None)
        else:
            store[""] = self.bot.first_name if name == "name" else ""
        return True

    @api_method("getMyName")
    def api_get_my_name(self, p: Params) -> dict[str, str]:
        return {"name": self._texts_by_language(self.bot_names, p)}

    @api_method("setMyName")
    def api_set_my_name(self, p: Params) -> bool:
        return self._set_text(self.bot_names, p, "name", 64)

    @api_method("getMyDescription")
    def api_get_my_description(self, p: Params) -> dict[str, str]:
        return {"description": self._texts_by_language(self.bot_descriptions, p)}

    @api_method("setMyDescription")
    def api_set_my_description(self, p: Params) -> bool:
        return self._set_text(self.bot_descriptions, p, "description", 512)

    @api_method("getMyShortDescription")
    def api_get_my_short_description(self, p: Params) -> dict[str, str]:
        return {"short_description": self._texts_by_language(self.bot_short_descriptions, p)}

    @api_method("setMyShortDescription")
    def api_set_my_short_description(self, p: Params) -> bool:
        return self._set_text(self.bot_short_descriptions, p, "short_description", 120)

    @api_method("getChat")
    def api_get_chat(self, p: Params) -> dict[str, Any]:
        chat = self._check_readable(self._chat_ref(p))
        info: dict[str, Any] = {
            **chat.to_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat.is_group:
            info["permissions"] = {
                "can_send_messages": True,
                "can_send_audios": True,
                "can_send_documents": True,
                "can_send_photos": True,
                "can_send_videos": True,
                "can_send_video_notes": True,
                "can_send_voice_notes": True,
                "can_send_polls": True,
                "can_send_other_messages": True,
                "can_add_web_page_previews": True,
                "can_change_info": False,
                "can_invite_users": True,
                "can_pin_messages": False,
                "can_manage_topics": False,
            }
            if chat.migrated_from is not None:
                info["migrated_from_chat_id"] = chat.migrated_from
        if chat.pinned_message_id is not None:
            key = (chat.id, chat.pinned_message_id)
            pinned = self._messages.get(key)
            if pinned is not None and key not in self._deleted:
                info["pinned_message"] = copy.deepcopy(pinned)
        return info

    def _user_id_param(self, p: Params) -> int:
        user_id = p.get_int("user_id")
        if user_id is None:
            raise bad_request("user_id is empty")
        if user_id != self.bot.id and user_id not in self.users:
            raise bad_request("user not found")
        return user_id

    @api_method("getChatMember")
    def api_get_chat_member(self, p: Params) -> dict[str, Any]:
        chat = self._check_readable(self._chat_ref(p))
        user_id = self._user_id_param(p)
        user = self.bot if user_id == self.bot.id else self.users[user_id]
        return self._member_api(user, self._status_in(chat, user_id))

    @api_method("getChatAdministrators")
    def api_get_chat_administrators(self, p: Params) -> list[dict[str, Any]]:
        chat = self._check_readable(self._chat_ref(p))
        if not chat.is_group:
            raise bad_request("there are no administrators in the private chat")
        admins = [
            self._member_api(self.users[uid], status)
            for uid, status in chat.members.items()
            if status in ("creator", "administrator") and uid in self.users
        ]
        if chat.bot_status == "administrator":
            admins.append(self._member_api(self.bot, "administrator"))
        return admins

    @api_method("getChatMemberCount")
    def api_get_chat_member_count(self, p: Params) -> int:
        chat = self._check_readable(self._chat_ref(p))
        if not chat.is_group:
            return 2
        humans = sum(1 for status in chat.members.values() if status in PRESENT_STATUSES)
        return humans + (1 if chat.bot_status in PRESENT_STATUSES else 0)

    @api_method("leaveChat")
    def api_leave_chat(self, p: Params) -> bool:
        chat = self._check_readable(self._chat_ref(p))
        if not chat.is_group:
            raise bad_request("chat member status can't be changed in private chats")
        old = chat.bot_status
        chat.bot_status = "left"
        self._queue_update(
            {
                "my_chat_member": {
                    "chat": chat.to_api(),
                    "from": self.bot.to_api(),
                    "date": self.now(),
                    "old_chat_member": self._member_api(self.bot, old),
                    "new_chat_member": self._member_api(self.bot, "left"),
                }
            }
        )
        return True

    @api_method("setChatMenuButton")
    def api_set_chat_menu_button(self, p: Params) -> bool:
        button = p.get_json("menu_button", error="can't parse menu button JSON object") or {
            "type": "default"
        }
        if not isinstance(button, dict) or button.get("type") not in (
            "commands",
            "web_app",
            "default",
        ):
            raise bad_request("can't parse menu button JSON object")
        if button["type"] == "web_app" and (not button.get("text") or not button.get("web_app")):
            raise bad_request("can't parse menu button JSON object")
        if p.raw.get("chat_id") in (None, ""):
            self.default_menu_button = (
                button if button["type"] != "default" else {"type": "commands"}
            )
        else:
            chat = self._check_readable(self._chat_ref(p))
            if chat.is_group:
                raise bad_request("menu button can be set only in private chats")
            chat.menu_button = None if button["type"] == "default" else button
        self._touch()
        return True

    @api_method("getChatMenuButton")
    def api_get_chat_menu_button(self, p: Params) -> dict[str, Any]:
        if p.raw.get("chat_id") in (None, ""):
            return dict(self.default_menu_button)
        chat = self._check_readable(self._chat_ref(p))
        return dict(chat.menu_button or self.default_menu_button)

    def _pin_target(self, p: Params) -> tuple[FakeChat, int | None]:
        chat = self._check_writable(self._chat_ref(p))
        if chat.is_group and chat.bot_status not in ("creator", "administrator"):
            raise bad_request("not enough rights to manage pinned messages in the chat")
        return chat, p.get_int("message_id")

    @api_method("pinChatMessage")
    def api_pin_chat_message(self, p: Params) -> bool:
        chat, message_id = self._pin_target(p)
        key = (chat.id, message_id or 0)
        if key not in self._messages or key in self._deleted:
            raise bad_request("message to pin not found")
        chat.pinned_message_id = message_id
        sent = self._sent.get((chat.id, message_id or 0))
        if sent is not None:
            sent.pinned = True
            self._chat_changed(chat.id)
        self._touch()
        return True

    @api_method("unpinChatMessage")
    def api_unpin_chat_message(self, p: Params) -> bool:
        chat, message_id = self._pin_target(p)
        target = message_id if message_id is not None else chat.pinned_message_id
        if target is None:
            raise bad_request("message to unpin not found")
        sent = self._sent.get((chat.id, target))
        if sent is not None:
            sent.pinned = False
            self._chat_changed(chat.id)
        if chat.pinned_message_id == target:
            chat.pinned_message_id = None
        self._touch()
        return True

    @api_method("getFile")
    def api_get_file(self, p: Params) -> dict[str, Any]:
        stored = self.files.get(p.get_str("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.data is None:
            raise bad_request("wrong file_id or the file is temporarily unavailable")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }
