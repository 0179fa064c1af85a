"""The control API over HTTP: ``/control/<action>`` with a JSON body or query parameters.

Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. Actions
mirror the Python methods of ``FakeTelegram`` with ids in place of objects, e.g.::

    POST /control/add_user     {"first_name": "Sam", "started": true}
    POST /control/send_text    {"user_id": 1000001, "text": "/start"}
    POST /control/wait_for_message {"chat_id": 1000001, "after": 0, "contains": "Welcome"}
    POST /control/press_button {"user_id": 1000001, "chat_id": 1000001, "message_id": 2,
                                "text": "Yes"}
    POST /control/fail         {"method": "sendMessage", "kind": "429", "retry_after": 3}
    GET  /control/sent?chat_id=1000001
"""

from __future__ import annotations

import base64
import inspect
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .models import ApiCall, ErrorRecord, FakeChat, FakeUser, HeldCall, Incoming, SentMessage

if TYPE_CHECKING:
    from .server import FakeTelegram


def _user_dict(user: FakeUser) -> dict[str, Any]:
    return {
        **user.to_api(),
        "started": user.started,
        "blocked": user.blocked,
        "deactivated": user.deactivated,
    }


def _chat_dict(chat: FakeChat) -> dict[str, Any]:
    return {
        **chat.to_api(),
        "members": {str(uid): status for uid, status in chat.members.items()},
        "bot_status": chat.bot_status,
        "migrated_to": chat.migrated_to,
        "pinned_message_id": chat.pinned_message_id,
    }


def _call_dict(call: ApiCall) -> dict[str, Any]:
    return {
        "method": call.method,
        "params": call.params,
        "time": call.time,
        "status": call.status,
        "description": call.description,
        "injected": call.injected,
        "disconnected": call.disconnected,
    }


def _error_dict(error: ErrorRecord) -> dict[str, Any]:
    return {
        "method": error.method,
        "status": error.status,
        "description": error.description,
        "params": error.params,
        "time": error.time,
        "injected": error.injected,
    }


def _held_dict(held: HeldCall) -> dict[str, Any]:
    return {"method": held.method, "params": held.params, "time": held.time}


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Incoming):
        return {"seq": value.seq, "delivered": value.delivered, "update": value.update}
    if isinstance(value, SentMessage):
        return value.to_dict()
    if isinstance(value, FakeUser):
        return _user_dict(value)
    if isinstance(value, FakeChat):
        return _chat_dict(value)
    if isinstance(value, HeldCall):
        return _held_dict(value)
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def _int(payload: dict[str, Any], key: str, default: Any = ...) -> Any:
    value = payload.get(key)
    if value is None or value == "":
        if default is ...:
            raise ValueError(f"{key} is required")
        return default
    return int(value)


def _bool(payload: dict[str, Any], key: str, default: bool = False) -> bool:
    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes", "on")


def _float(payload: dict[str, Any], key: str, default: float) -> float:
    value = payload.get(key)
    return default if value is None or value == "" else float(value)


def _data(payload: dict[str, Any], key: str = "data_base64") -> bytes | None:
    value = payload.get(key)
    return None if value in (None, "") else base64.b64decode(value)


def _message_predicate(payload: dict[str, Any]) -> Callable[[SentMessage], bool] | None:
    contains = payload.get("contains")
    pattern = payload.get("regex")
    button = payload.get("button")
    if contains is None and pattern is None and button is None:
        return None
    compiled = re.compile(pattern) if pattern else None

    def predicate(message: SentMessage) -> bool:
        text = message.plain_text or ""
        if contains is not None and contains not in text:
            return False
        if compiled is not None and not compiled.search(text):
            return False
        if button is not None and button not in message.button_texts:
            return False
        return True

    return predicate


class ControlApi:
    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake

    async def handle(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        handler = getattr(self, f"do_{action}", None)
        if handler is None:
            return self._reply({"ok": False, "error": f"unknown control action {action!r}"}, 404)
        payload: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.body_exists:
            try:
                body = json.loads(await request.text() or "{}")
            except ValueError:
                return self._reply({"ok": False, "error": "the body must be JSON"}, 400)
            if not isinstance(body, dict):
                return self._reply({"ok": False, "error": "the body must be a JSON object"}, 400)
            payload.update(body)
        try:
            result = handler(payload)
            if inspect.isawaitable(result):
                result = await result
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            return self._reply({"ok": False, "error": f"{error.__class__.__name__}: {error}"}, 400)
        return self._reply({"ok": True, "result": to_jsonable(result)})

    @staticmethod
    def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(
            text=json.dumps(body, ensure_ascii=False),
            status=status,
            content_type="application/json",
        )

    def _chat(self, payload: dict[str, Any], key: str = "chat_id") -> int | None:
        return _int(payload, key, None)

    def _sent(self, payload: dict[str, Any]) -> SentMessage:
        return self.fake.sent_message(_int(payload, "chat_id"), _int(payload, "message_id"))

    # -- reading ---------------------------------------------------------------------------

    def do_state(self, payload: dict[str, Any]) -> dict[str, Any]:
        fake = self.fake
        return {
            "bot": fake.bot.to_api(),
            "base_url": fake.base_url,
            "base_file_url": fake.base_file_url,
            "users": list(fake.users.values()),
            "chats": [c for c in fake.chats.values() if c.is_group],
            "pending_updates": len(fake.pending_updates),
            "held": fake.held,
            "calls": len(fake.calls),
            "errors": len(fake.errors),
            "mark": fake.mark(),
            "webhook": fake.webhook,
            "allowed_updates": fake.allowed_updates,
        }

    def do_mark(self, payload: dict[str, Any]) -> int:
        return self.fake.mark()

    def do_sent(self, payload: dict[str, Any]) -> list[SentMessage]:
        messages = self.fake.sent(self._chat(payload))
        after = _int(payload, "after", None)
        if after is not None:
            messages = [m for m in messages if m.last_change_seq > after]
        return messages

    def do_last(self, payload: dict[str, Any]) -> SentMessage:
        return self.fake.last(_int(payload, "chat_id"))

    def do_calls(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        method = payload.get("method")
        calls = [c for c in self.fake.calls if method is None or c.method == method]
        limit = _int(payload, "limit", 200)
        return [_call_dict(c) for c in calls[-limit:]]

    def do_errors(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        status = _int(payload, "status", None)
        return [_error_dict(e) for e in self.fake.errors if status is None or e.status == status]

    def do_updates(self, payload: dict[str, Any]) -> list[Incoming]:
        after = _int(payload, "after", -1)
        return [u for u in self.fake.updates if u.seq > after]

    def do_commands(self, payload: dict[str, Any]) -> list[dict[str, str]]:
        return self.fake.commands(
            scope_type=payload.get("scope_type", "default"),
            chat_id=self._chat(payload),
            user_id=_int(payload, "user_id", None),
            language_code=payload.get("language_code", ""),
        )

    def do_visible_commands(self, payload: dict[str, Any]) -> list[dict[str, str]]:
        return self.fake.visible_commands(
            _int(payload, "chat_id"),
            user=_int(payload, "user_id", None),
            language_code=payload.get("language_code", ""),
        )

    def do_callback_answer(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        return self.fake.callback_answer(str(payload["id"]))

    def do_held(self, payload: dict[str, Any]) -> list[HeldCall]:
        return list(self.fake.held)

    # -- waiting ---------------------------------------------------------------------------

    async def do_wait_for_message(self, payload: dict[str, Any]) -> SentMessage:
        return await self.fake.wait_for_message(
            _int(payload, "chat_id"),
            predicate=_message_predicate(payload),
            after=_int(payload, "after", None),
            timeout=_float(payload, "timeout", 5.0),
            include_edits=_bool(payload, "include_edits"),
        )

    async def do_wait_idle(self, payload: dict[str, Any]) -> bool:
        await self.fake.wait_idle(timeout=_float(payload, "timeout", 5.0))
        return True

    async def do_wait_held(self, payload: dict[str, Any]) -> HeldCall:
        return await self.fake.wait_held(
            count=_int(payload, "count", 1), timeout=_float(payload, "timeout", 5.0)
        )

    async def do_wait_callback_answer(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.fake.wait_for_callback_answer(
            str(payload["id"]), timeout=_float(payload, "timeout", 5.0)
        )

    # -- people ----------------------------------------------------------------------------

    def do_add_user(self, payload: dict[str, Any]) -> FakeUser:
        return self.fake.add_user(
            id=_int(payload, "id", None),
            first_name=payload.get("first_name", "Alex"),
            last_name=payload.get("last_name"),
            username=payload.get("username"),
            language_code=payload.get("language_code", "en"),
            started=_bool(payload, "started"),
        )

    def do_add_group(self, payload: dict[str, Any]) -> FakeChat:
        return self.fake.add_group(
            payload["title"],
            supergroup=_bool(payload, "supergroup", True),
            members=[int(m) for m in payload.get("members", [])],
            bot_is_admin=_bool(payload, "bot_is_admin", True),
            admins=[int(m) for m in payload.get("admins", [])],
            creator=_int(payload, "creator", None),
            username=payload.get("username"),
        )

    def do_send_text(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_text(
            _int(payload, "user_id"),
            payload["text"],
            chat=self._chat(payload),
            reply_to=_int(payload, "reply_to_message_id", None),
        )

    def do_send_location(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_location(
            _int(payload, "user_id"),
            float(payload["latitude"]),
            float(payload["longitude"]),
            chat=self._chat(payload),
        )

    def do_send_contact(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_contact(
            _int(payload, "user_id"),
            payload["phone_number"],
            first_name=payload.get("first_name"),
            last_name=payload.get("last_name"),
            chat=self._chat(payload),
        )

    def do_send_photo(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_photo(
            _int(payload, "user_id"),
            caption=payload.get("caption"),
            chat=self._chat(payload),
            data=_data(payload),
        )

    def do_send_document(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_document(
            _int(payload, "user_id"),
            _data(payload) or b"",
            payload["file_name"],
            mime_type=payload.get("mime_type"),
            caption=payload.get("caption"),
            chat=self._chat(payload),
        )

    def do_send_sticker(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_sticker(
            _int(payload, "user_id"),
            emoji=payload.get("emoji", "\U0001f44d"),
            chat=self._chat(payload),
        )

    def do_send_voice(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_voice(
            _int(payload, "user_id"),
            duration=_int(payload, "duration", 3),
            chat=self._chat(payload),
        )

    def do_send_forwarded(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.send_forwarded(
            _int(payload, "user_id"),
            payload["text"],
            chat=self._chat(payload),
            origin_user=_int(payload, "origin_user_id", None),
            sender_name=payload.get("sender_name", "Hidden Sender"),
        )

    def do_edit_text(self, payload: dict[str, Any]) -> Incoming:
        user_id = _int(payload, "user_id")
        chat_id = _int(payload, "chat_id", user_id)
        return self.fake.edit_text(
            user_id,
            {"chat": {"id": chat_id}, "message_id": _int(payload, "message_id")},
            payload["text"],
        )

    def do_press(self, payload: dict[str, Any]) -> str:
        return self.fake.press(
            _int(payload, "user_id"),
            (_int(payload, "chat_id"), _int(payload, "message_id")),
            str(payload["callback_data"]),
        )

    def do_press_button(self, payload: dict[str, Any]) -> str:
        return self.fake.press_button(
            _int(payload, "user_id"), self._sent(payload), payload["text"]
        )

    def do_join(self, payload: dict[str, Any]) -> Incoming | None:
        return self.fake.join(
            _int(payload, "chat_id"), _int(payload, "user_id"), by=_int(payload, "by_user_id", None)
        )

    def do_leave(self, payload: dict[str, Any]) -> Incoming | None:
        return self.fake.leave(_int(payload, "chat_id"), _int(payload, "user_id"))

    def do_set_member_status(self, payload: dict[str, Any]) -> Incoming | None:
        return self.fake.set_member_status(
            _int(payload, "chat_id"),
            _int(payload, "user_id"),
            payload["status"],
            by=_int(payload, "by_user_id", None),
        )

    def do_add_bot_to_group(self, payload: dict[str, Any]) -> FakeChat:
        return self.fake.add_bot_to_group(
            payload["title"],
            _int(payload, "by_user_id"),
            supergroup=_bool(payload, "supergroup", True),
            as_admin=_bool(payload, "as_admin"),
        )

    def do_remove_bot_from_group(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.remove_bot_from_group(
            _int(payload, "chat_id"),
            _int(payload, "by_user_id"),
            kicked=_bool(payload, "kicked", True),
        )

    def do_block(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.block(_int(payload, "user_id"))

    def do_unblock(self, payload: dict[str, Any]) -> Incoming:
        return self.fake.unblock(_int(payload, "user_id"))

    def do_deactivate(self, payload: dict[str, Any]) -> bool:
        self.fake.deactivate(_int(payload, "user_id"))
        return True

    def do_migrate_group(self, payload: dict[str, Any]) -> FakeChat:
        return self.fake.migrate_group(
            _int(payload, "chat_id"), by_user=_int(payload, "by_user_id", None)
        )

    def do_push_update(self, payload: dict[str, Any]) -> Incoming:
        update = payload.get("update")
        if not isinstance(update, dict):
            raise ValueError("update must be a JSON object")
        return self.fake.push_update(update)

    # -- faults ----------------------------------------------------------------------------

    def do_fail(self, payload: dict[str, Any]) -> bool:
        times = payload.get("times", 1)
        self.fake.fail(
            method=payload.get("method", "sendMessage"),
            kind=str(payload.get("kind", "500")),
            times=None if times is None else int(times),
            retry_after=_int(payload, "retry_after", 1),
            chat_id=self._chat(payload),
            description=payload.get("description"),
        )
        return True

    def do_fail_randomly(self, payload: dict[str, Any]) -> bool:
        self.fake.fail_randomly(
            rate=_float(payload, "rate", 0.3),
            kinds=[str(k) for k in payload.get("kinds", ("500", "429", "drop"))],
            seed=_int(payload, "seed", 1),
            methods=payload.get("methods"),
            retry_after=_int(payload, "retry_after", 1),
        )
        return True

    def do_revoke_token(self, payload: dict[str, Any]) -> bool:
        self.fake.revoke_token()
        return True

    def do_clear_faults(self, payload: dict[str, Any]) -> bool:
        self.fake.clear_faults()
        return True

    def do_hold(self, payload: dict[str, Any]) -> bool:
        self.fake.hold(method=payload.get("method", "sendMessage"), chat_id=self._chat(payload))
        return True

    def do_release(self, payload: dict[str, Any]) -> bool:
        self.fake.release()
        return True

    def do_set_flood(self, payload: dict[str, Any]) -> bool:
        limit = payload.get("limit")
        per_chat = payload.get("per_chat")
        self.fake.flood_limit = None if limit in (None, "") else float(limit)
        self.fake.flood_limit_per_chat = None if per_chat in (None, "") else float(per_chat)
        return True


def add_control_routes(app: web.Application, fake: FakeTelegram) -> None:
    control = ControlApi(fake)
    app.router.add_route("*", "/control/{action}", control.handle)
