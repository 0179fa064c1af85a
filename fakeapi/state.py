"""State of the fake Telegram: people, chats, messages, queued updates, records and waiting."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .models import (
    PRESENT_STATUSES,
    ApiCall,
    CallbackRecord,
    ErrorRecord,
    FakeChat,
    FakeUser,
    FaultRule,
    HeldCall,
    HoldRule,
    Incoming,
    SentMessage,
    StoredFile,
)

UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
DEFAULT_UPDATE_TYPES = frozenset(UPDATE_TYPES) - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}

# What ``fail()`` can inject.
FAULT_KINDS = ("500", "502", "429", "403", "400", "401", "409", "redirect", "drop")

SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendLocation",
        "copyMessage",
        "forwardMessage",
    }
)


@dataclass(slots=True)
class _Pending:
    update_id: int
    update: dict[str, Any]
    returned: bool = False


@dataclass
class ChaosRule:
    rate: float
    kinds: tuple[str, ...]
    rng: random.Random
    methods: frozenset[str] | None
    retry_after: int

    def applies(self, method: str) -> bool:
        if self.methods is None:
            return method.lower() not in {
                "getupdates",
                "setwebhook",
                "deletewebhook",
                "getwebhookinfo",
                "logout",
                "close",
            }
        return method.lower() in self.methods


class FakeState:
    """Everything the fake knows, without any HTTP. ``FakeTelegram`` adds the server."""

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "iop_test_bot",
        bot_first_name: str = "IOP Test Bot",
        *,
        clock: Callable[[], float] | None = None,
        privacy_mode: bool = True,
        first_update_id: int = 1000,
        strict_ampersand: bool = True,
    ) -> None:
        head = token.split(":", 1)[0]
        if not head.isdigit():
            raise ValueError("a bot token looks like '123456:ABC-DEF'")
        self.token = token
        self.clock: Callable[[], float] = clock or time.time
        self.privacy_mode = privacy_mode
        self.strict_ampersand = strict_ampersand
        self.bot = FakeUser(
            id=int(head),
            first_name=bot_first_name,
            username=bot_username,
            language_code=None,
            is_bot=True,
        )
        self.users: dict[int, FakeUser] = {}
        self.chats: dict[int, FakeChat] = {}
        self.files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.calls: list[ApiCall] = []
        self.errors: list[ErrorRecord] = []
        self.internal_errors: list[str] = []
        self.updates: list[Incoming] = []
        self.chat_actions: list[tuple[int, str]] = []
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._deleted: set[tuple[int, int]] = set()
        self._sent: dict[tuple[int, int], SentMessage] = {}
        self._sent_list: list[SentMessage] = []
        self._sent_by_chat: dict[int, list[SentMessage]] = {}
        self._event_seqs: dict[int, list[int]] = {}
        self._events: dict[int, list[tuple[SentMessage, bool]]] = {}
        self._pending: deque[_Pending] = deque()
        self._next_update_id = first_update_id
        self._seq = 0
        self._ids = itertools.count(1)
        self._user_ids = itertools.count(1_000_001)
        self._group_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._update_event = asyncio.Event()
        self._chat_waiters: dict[int, asyncio.Event] = {}
        self.allowed_updates: list[str] | None = None
        self.webhook: dict[str, Any] | None = None
        self.webhook_errors: list[tuple[float, str]] = []
        self._webhook_inflight = False
        self._command_sets: dict[tuple[str, int | None, int | None, str], list[dict[str, str]]] = {}
        self.bot_names: dict[str, str] = {"": bot_first_name}
        self.bot_descriptions: dict[str, str] = {}
        self.bot_short_descriptions: dict[str, str] = {}
        self.default_menu_button: dict[str, Any] = {"type": "commands"}
        self._faults: list[FaultRule] = []
        self._chaos: ChaosRule | None = None
        self._holds: list[HoldRule] = []
        self.held: list[HeldCall] = []
        self.flood_limit: float | None = None
        self.flood_limit_per_chat: float | None = None
        self._flood_window: deque[float] = deque()
        self._flood_chat_windows: dict[str, deque[float]] = {}
        self.callback_query_ttl: float | None = None
        self._poll_generation = 0
        self._closing = False
        # Set by revoke_token(): every call with the token is answered 401, as after /revoke.
        self.token_revoked = False

    # -- notification ---------------------------------------------------------------------

    def _touch(self) -> None:
        event = self._changed
        self._changed = asyncio.Event()
        event.set()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def clear_records(self) -> None:
        """Forget recorded calls, errors and chat actions (messages and state stay)."""
        self.calls.clear()
        self.errors.clear()
        self.internal_errors.clear()
        self.chat_actions.clear()

    def mark(self) -> int:
        """A point in time for ``wait_for_message(after=...)``: only later messages count."""
        return self._seq

    def now(self) -> int:
        return int(self.clock())

    # -- lookups ----------------------------------------------------------------------------

    @staticmethod
    def _id_of(value: Any) -> int:
        if isinstance(value, FakeUser | FakeChat):
            return value.id
        if isinstance(value, SentMessage):
            return value.chat_id
        return int(value)

    def user(self, user: FakeUser | int) -> FakeUser:
        uid = self._id_of(user)
        try:
            return self.users[uid]
        except KeyError:
            raise ValueError(f"unknown user {uid}; create it with add_user()") from None

    def chat(self, chat: FakeChat | FakeUser | int) -> FakeChat:
        cid = self._id_of(chat)
        try:
            return self.chats[cid]
        except KeyError:
            raise ValueError(f"unknown chat {cid}") from None

    def message(self, chat: Any, message_id: int) -> dict[str, Any]:
        """The stored Telegram ``Message`` of any message (a person's or the bot's)."""
        return self._messages[(self._id_of(chat), message_id)]

    def sent(self, chat_id: Any = None) -> list[SentMessage]:
        """Messages the bot sent, oldest first; all chats, or one chat."""
        if chat_id is None:
            return list(self._sent_list)
        return list(self._sent_by_chat.get(self._id_of(chat_id), ()))

    def last(self, chat_id: Any) -> SentMessage:
        """The last message the bot sent to this chat."""
        messages = self._sent_by_chat.get(self._id_of(chat_id))
        if not messages:
            raise AssertionError(
                f"the bot sent nothing to chat {self._id_of(chat_id)}\n{self.dump()}"
            )
        return messages[-1]

    def sent_message(self, chat_id: Any, message_id: int) -> SentMessage:
        return self._sent[(self._id_of(chat_id), message_id)]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return [entry.update for entry in self._pending]

    @property
    def bad_requests(self) -> list[ErrorRecord]:
        return [error for error in self.errors if error.status == 400]

    def assert_no_errors(
        self, statuses: Iterable[int] = (400, 401, 403, 404), *, injected: bool = False
    ) -> None:
        """Fail if the bot provoked errors (by default 400/401/403/404 it was not forced into)."""
        wanted = set(statuses)
        found = [e for e in self.errors if e.status in wanted and (injected or not e.injected)]
        if found:
            lines = "\n".join(f"  {e.method} -> {e.status} {e.description}" for e in found[-20:])
            raise AssertionError(f"{len(found)} error answer(s):\n{lines}")

    def callback_answer(self, callback_query_id: str) -> dict[str, Any] | None:
        """What the bot answered to a pressed button (None while unanswered)."""
        record = self.callbacks.get(str(callback_query_id))
        if record is None:
            raise ValueError(f"unknown callback query {callback_query_id}")
        return record.answer

    # -- commands -------------------------------------------------------------------------

    def commands(
        self,
        scope_type: str = "default",
        chat_id: Any = None,
        user_id: Any = None,
        language_code: str = "",
    ) -> list[dict[str, str]]:
        """The command list set for exactly this scope and language (empty if none)."""
        key = (
            scope_type,
            None if chat_id is None else self._id_of(chat_id),
            None if user_id is None else self._id_of(user_id),
            language_code or "",
        )
        return [dict(c) for c in self._command_sets.get(key, [])]

    def visible_commands(
        self, chat: Any, user: Any = None, language_code: str = ""
    ) -> list[dict[str, str]]:
        """The menu a client would show in ``chat`` (to ``user`` in a group), with fallbacks."""
        target = self.chat(chat)
        if target.is_group:
            if user is None:
                raise ValueError("a group menu depends on the user; pass user=")
            uid = self._id_of(user)
            is_admin = target.status_of(uid) in ("creator", "administrator")
            scopes: list[tuple[str, int | None, int | None]] = [("chat_member", target.id, uid)]
            if is_admin:
                scopes.append(("chat_administrators", target.id, None))
            scopes.append(("chat", target.id, None))
            if is_admin:
                scopes.append(("all_chat_administrators", None, None))
            scopes += [("all_group_chats", None, None), ("default", None, None)]
        else:
            scopes = [
                ("chat", target.id, None),
                ("all_private_chats", None, None),
                ("default", None, None),
            ]
        languages = [language_code, ""] if language_code else [""]
        for scope_type, cid, uid2 in scopes:
            for language in languages:
                found = self._command_sets.get((scope_type, cid, uid2, language))
                if found:
                    return [dict(c) for c in found]
        return []

    # -- updates --------------------------------------------------------------------------

    def _queue_update(self, payload: dict[str, Any]) -> Incoming:
        update_id = payload.get("update_id")
        if not isinstance(update_id, int):
            update_id = self._next_update_id
            self._next_update_id += 1
        else:
            self._next_update_id = max(self._next_update_id, update_id + 1)
        update = {"update_id": update_id, **{k: v for k, v in payload.items() if k != "update_id"}}
        incoming = Incoming(update, self._next_seq())
        self._pending.append(_Pending(update_id, update))
        self.updates.append(incoming)
        self._wake_pollers()
        self._touch()
        return incoming

    def _wake_pollers(self) -> None:
        event = self._update_event
        self._update_event = asyncio.Event()
        event.set()

    def _allowed_types(self) -> frozenset[str]:
        if not self.allowed_updates:
            return DEFAULT_UPDATE_TYPES
        return frozenset(self.allowed_updates)

    @staticmethod
    def _update_type(update: dict[str, Any]) -> str:
        return next((key for key in update if key != "update_id"), "")

    def _confirm(self, offset: int) -> None:
        """Drop what the bot confirmed: updates it received whose id is below ``offset``.

        An update queued again with an old id (a redelivery) is still delivered once.
        """
        pending = self._pending
        if offset < 0:
            while len(pending) > -offset:
                pending.popleft()
        elif offset > 0:
            allowed = self._allowed_types()
            while pending and (
                (pending[0].returned and pending[0].update_id < offset)
                or self._update_type(pending[0].update) not in allowed
            ):
                pending.popleft()
        self._touch()

    def _collect(self, limit: int) -> list[dict[str, Any]]:
        allowed = self._allowed_types()
        pending = self._pending
        while pending and self._update_type(pending[0].update) not in allowed:
            pending.popleft()
        batch: list[dict[str, Any]] = []
        for entry in pending:
            if self._update_type(entry.update) in allowed:
                entry.returned = True
                batch.append(entry.update)
                if len(batch) >= limit:
                    break
        return batch

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until every queued update was fetched and confirmed by the bot."""
        await self.wait_for(
            lambda: not self._pending and not self._webhook_inflight,
            timeout=timeout,
            description="all updates confirmed",
        )

    # -- bot messages ---------------------------------------------------------------------

    def _store_sent(self, sent: SentMessage) -> None:
        key = (sent.chat_id, sent.message_id)
        self._sent[key] = sent
        self._messages[key] = sent.api
        self._sent_list.append(sent)
        self._sent_by_chat.setdefault(sent.chat_id, []).append(sent)
        self._add_event(sent, sent.seq, False)

    def _add_event(self, sent: SentMessage, seq: int, is_edit: bool) -> None:
        self._event_seqs.setdefault(sent.chat_id, []).append(seq)
        self._events.setdefault(sent.chat_id, []).append((sent, is_edit))
        self._chat_changed(sent.chat_id)

    def _chat_changed(self, chat_id: int) -> None:
        """Wake ``wait_for_message`` callers watching this chat only."""
        event = self._chat_waiters.pop(chat_id, None)
        if event is not None:
            event.set()

    def _seq_of(self, after: Any) -> int:
        if after is None:
            return -1
        if isinstance(after, SentMessage):
            return after.last_change_seq
        if isinstance(after, Incoming):
            return after.seq
        return int(after)

    def find_message(
        self,
        chat_id: Any,
        predicate: Callable[[SentMessage], Any] | None = None,
        after: Any = None,
        include_edits: bool = False,
    ) -> SentMessage | None:
        cid = self._id_of(chat_id)
        seqs = self._event_seqs.get(cid)
        if not seqs:
            return None
        events = self._events[cid]
        start = bisect.bisect_right(seqs, self._seq_of(after))
        for index in range(start, len(seqs)):
            sent, is_edit = events[index]
            if is_edit and not include_edits:
                continue
            if predicate is None or predicate(sent):
                return sent
        return None

    # -- waiting --------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109
        description: str | None = None,
    ) -> Any:
        """Wait until ``predicate()`` is truthy, re-checking on every change; returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                what = description or getattr(predicate, "__name__", "condition")
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.dump()}"
                )
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for_message(
        self,
        chat_id: Any,
        predicate: Callable[[SentMessage], Any] | None = None,
        after: Any = None,
        timeout: float = 5.0,  # noqa: ASYNC109
        include_edits: bool = False,
    ) -> SentMessage:
        """The first bot message to ``chat_id`` after ``after`` (a mark, message or update)."""
        cid = self._id_of(chat_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.find_message(cid, predicate, after, include_edits)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for a message to chat {cid}\n{self.dump()}"
                )
            event = self._chat_waiters.get(cid)
            if event is None:
                event = self._chat_waiters[cid] = asyncio.Event()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for_callback_answer(
        self,
        callback_query_id: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        return await self.wait_for(
            lambda: self.callback_answer(callback_query_id),
            timeout=timeout,
            description=f"an answer to callback query {callback_query_id}",
        )

    async def wait_held(self, count: int = 1, timeout: float = 5.0) -> HeldCall:  # noqa: ASYNC109
        """Wait until ``count`` requests are blocked by ``hold()``; returns the latest one."""
        await self.wait_for(
            lambda: len(self.held) >= count, timeout=timeout, description="a held call"
        )
        return self.held[-1]

    def dump(self, limit: int = 15) -> str:
        lines = [f"recent bot messages (of {len(self._sent_list)}):"]
        for sent in self._sent_list[-limit:]:
            text = (sent.plain_text or "").replace("\n", "\\n")
            if len(text) > 160:
                text = text[:157] + "..."
            flags = " [deleted]" if sent.deleted else ""
            edits = f" [{len(sent.edits)} edits]" if sent.edits else ""
            buttons = f" buttons={sent.button_texts}" if sent.inline_keyboard else ""
            lines.append(
                f"  #{sent.seq} chat={sent.chat_id} id={sent.message_id} {sent.kind}{flags}{edits}: "
                f"{text!r}{buttons}"
            )
        errors = self.errors[-10:]
        if errors:
            lines.append("recent error answers:")
            lines += [f"  {e.method} -> {e.status} {e.description}" for e in errors]
        if self.internal_errors:
            lines.append("fake server bugs:")
            lines += [f"  {line}" for line in self.internal_errors[-3:]]
        lines.append(f"pending updates: {len(self._pending)}; held calls: {len(self.held)}")
        return "\n".join(lines)

    # -- membership -----------------------------------------------------------------------

    def _member_api(self, user: FakeUser, status: str) -> dict[str, Any]:
        data: dict[str, Any] = {"status": status, "user": user.to_api()}
        if status == "creator":
            data["is_anonymous"] = False
        elif status == "administrator":
            data.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
                can_pin_messages=True,
                can_manage_topics=False,
            )
        elif status == "restricted":
            data.update(
                is_member=True,
                can_send_messages=False,
                can_send_audios=False,
                can_send_documents=False,
                can_send_photos=False,
                can_send_videos=False,
                can_send_video_notes=False,
                can_send_voice_notes=False,
                can_send_polls=False,
                can_send_other_messages=False,
                can_add_web_page_previews=False,
                can_change_info=False,
                can_invite_users=False,
                can_pin_messages=False,
                can_manage_topics=False,
                can_edit_tag=False,
                until_date=0,
            )
        elif status == "kicked":
            data["until_date"] = 0
        return data

    def _status_in(self, chat: FakeChat, user_id: int) -> str:
        if user_id == self.bot.id:
            return chat.bot_status
        if not chat.is_group:
            return "member" if user_id == chat.id else "left"
        return chat.status_of(user_id)

    def _bot_present(self, chat: FakeChat) -> bool:
        if not chat.is_group:
            user = self.users.get(chat.id)
            return user is not None and not user.blocked
        return chat.bot_status in PRESENT_STATUSES and chat.migrated_to is None

    def _new_file(
        self,
        data: bytes | None,
        file_name: str | None,
        mime_type: str | None,
        folder: str,
        url: str | None = None,
    ) -> StoredFile:
        n = next(self._file_ids)
        extension = ""
        if file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1]
        stored = StoredFile(
            file_id=f"BQACAgIAAxkB-{n:08d}",
            file_unique_id=f"AgAD{n:06d}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
            file_path=f"{folder}/file_{n}{extension}",
            url=url,
        )
        self.files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    # -- faults ---------------------------------------------------------------------------

    def fail(
        self,
        method: str | None = "sendMessage",
        kind: str = "500",
        times: int | None = 1,
        retry_after: int = 1,
        chat_id: Any = None,
        description: str | None = None,
    ) -> FaultRule:
        """Make the next ``times`` matching calls fail (``times=None``: until cleared).

        ``kind`` is "500", "502", "429", "403", "400", "401" (the token rejected), "409"
        (another getUpdates client or a webhook), "redirect" (a 302 back to the same URL, with
        the token in it) or "drop" (connection closed without an answer). A failed call never
        records a delivered message.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        rule = FaultRule(
            kind=kind,
            method=method,
            times=times,
            retry_after=retry_after,
            chat_id=None if chat_id is None else self._id_of(chat_id),
            description=description,
        )
        self._faults.append(rule)
        return rule

    def fail_randomly(
        self,
        rate: float = 0.3,
        kinds: Iterable[str] = ("500", "429", "drop"),
        seed: int = 1,
        methods: Iterable[str] | None = None,
        retry_after: int = 1,
    ) -> None:
        """Chaos: each matching call fails with probability ``rate`` (``rate=0`` turns it off).

        ``methods=None`` means every method but getUpdates and the webhook settings.
        """
        if rate <= 0:
            self._chaos = None
            return
        kinds = tuple(kinds)
        for kind in kinds:
            if kind not in ("500", "502", "429", "403", "drop"):
                raise ValueError(f"unknown fault kind {kind!r}")
        self._chaos = ChaosRule(
            rate=rate,
            kinds=kinds,
            rng=random.Random(seed),
            methods=None if methods is None else frozenset(m.lower() for m in methods),
            retry_after=retry_after,
        )

    def revoke_token(self) -> None:
        """The token stops working, as after BotFather's /revoke: every call is answered 401,
        and a long poll in progress ends with 401 at once."""
        self.token_revoked = True
        self._wake_pollers()
        self._touch()

    def clear_faults(self) -> None:
        self._faults.clear()
        self._chaos = None

    def _take_fault(self, method: str, chat_id: Any) -> FaultRule | None:
        for rule in self._faults:
            if rule.matches(method, chat_id):
                if rule.times is not None:
                    rule.times -= 1
                return rule
        self._faults = [r for r in self._faults if r.times is None or r.times > 0]
        chaos = self._chaos
        if chaos is not None and chaos.applies(method):
            draw = chaos.rng.random()
            if draw < chaos.rate:
                kind = chaos.kinds[
                    min(int(draw / chaos.rate * len(chaos.kinds)), len(chaos.kinds) - 1)
                ]
                return FaultRule(kind=kind, retry_after=chaos.retry_after)
        return None

    def hold(
        self,
        method: str | None = "sendMessage",
        chat_id: Any = None,
        predicate: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> HoldRule:
        """Block matching calls (before anything is recorded) until ``release()``."""
        rule = HoldRule(method, None if chat_id is None else self._id_of(chat_id), predicate)
        self._holds.append(rule)
        return rule

    def release(self) -> None:
        """Remove every hold; blocked calls go on (a call whose client left records nothing)."""
        self._holds.clear()
        self._touch()

    def _is_held(self, method: str, params: dict[str, Any]) -> bool:
        return any(rule.matches(method, params) for rule in self._holds)
