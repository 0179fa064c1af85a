"""What the people in a test do: write, tap buttons, join groups, block the bot."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from .entities import utf16_len
from .models import (
    MEMBER_STATUSES,
    PRESENT_STATUSES,
    CallbackRecord,
    FakeChat,
    FakeUser,
    Incoming,
    SentMessage,
)
from .state import FakeState

_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
# A 1x1 PNG, used when a test sends a photo without giving bytes.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


class PeopleMixin(FakeState):
    """The control API: the test creates people and groups and acts as them."""

    # -- setup -----------------------------------------------------------------------------

    def add_user(
        self,
        id: int | None = None,
        first_name: str = "Alex",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        *,
        started: bool = False,
        is_bot: bool = False,
    ) -> FakeUser:
        """A new person with a private chat; ``started`` says they already wrote to the bot."""
        if id is None:
            id = next(self._user_ids)
            while id in self.users:
                id = next(self._user_ids)
        if id in self.users or id == self.bot.id or id <= 0:
            raise ValueError(f"user id {id} is taken or invalid")
        user = FakeUser(
            id=id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_bot=is_bot,
            started=started,
            _fake=self,  # type: ignore[arg-type]
        )
        self.users[id] = user
        self.chats[id] = FakeChat(
            id=id,
            type="private",
            first_name=first_name,
            last_name=last_name,
            username=username,
        )
        self._touch()
        return user

    def _new_group_id(self, supergroup: bool) -> int:
        n = next(self._group_ids)
        return -(1_001_000_000_000 + n) if supergroup else -(400_000_000 + n)

    def add_group(
        self,
        title: str,
        supergroup: bool = True,
        members: Iterable[FakeUser | int] = (),
        bot_is_admin: bool = True,
        *,
        admins: Iterable[FakeUser | int] = (),
        creator: FakeUser | int | None = None,
        username: str | None = None,
        bot_status: str | None = None,
    ) -> FakeChat:
        """A group the bot is already in. The creator defaults to the first member."""
        chat = FakeChat(
            id=self._new_group_id(supergroup),
            type="supergroup" if supergroup else "group",
            title=title,
            username=username,
            bot_status=bot_status or ("administrator" if bot_is_admin else "member"),
        )
        member_ids = [self.user(m).id for m in members]
        for uid in member_ids:
            chat.members[uid] = "member"
        for admin in admins:
            chat.members[self.user(admin).id] = "administrator"
        creator_id = (
            self.user(creator).id
            if creator is not None
            else (member_ids[0] if member_ids else None)
        )
        if creator_id is not None:
            chat.members[creator_id] = "creator"
        self.chats[chat.id] = chat
        self._touch()
        return chat

    def deactivate(self, user: FakeUser | int) -> None:
        """The account is deleted: sends to it get 403 "user is deactivated"."""
        self.user(user).deactivated = True
        self._touch()

    # -- messages --------------------------------------------------------------------------

    def _target_chat(self, user: FakeUser, chat: Any) -> FakeChat:
        target = self.chat(user.id) if chat is None else self.chat(chat)
        if target.is_group:
            if target.status_of(user.id) not in PRESENT_STATUSES:
                raise ValueError(f"user {user.id} is not a member of {target.title!r}")
        elif target.id != user.id:
            raise ValueError("a person writes to the bot only in their own private chat")
        return target

    def _lookup_message(self, chat: FakeChat, ref: Any) -> dict[str, Any]:
        if isinstance(ref, SentMessage):
            key = (ref.chat_id, ref.message_id)
        elif isinstance(ref, Incoming):
            if ref.message_id is None:
                raise ValueError("this update has no message")
            key = (ref.chat_id or chat.id, ref.message_id)
        elif isinstance(ref, dict):
            key = (int(ref.get("chat", {}).get("id", chat.id)), int(ref["message_id"]))
        else:
            key = (chat.id, int(ref))
        try:
            return self._messages[key]
        except KeyError:
            raise ValueError(f"no message {key[1]} in chat {key[0]}") from None

    def _delivered_to_bot(self, chat: FakeChat, message: dict[str, Any], service: bool) -> bool:
        if not self._bot_present(chat):
            return False
        if not chat.is_group or service or not self.privacy_mode:
            return True
        if chat.bot_status in ("creator", "administrator"):
            return True
        text = message.get("text") or message.get("caption") or ""
        if text.startswith("/"):
            return True
        replied = message.get("reply_to_message") or {}
        return replied.get("from", {}).get("id") == self.bot.id

    def _user_message(
        self,
        user: FakeUser | int,
        chat: Any,
        body: dict[str, Any],
        reply_to: Any = None,
        *,
        service: bool = False,
    ) -> Incoming:
        person = self.user(user)
        target = self.chat(chat) if service else self._target_chat(person, chat)
        if not target.is_group:
            if person.blocked:
                self.unblock(person)
            person.started = True
        message: dict[str, Any] = {
            "message_id": target.next_message_id,
            "from": person.to_api(),
            "chat": target.to_api(),
            "date": self.now(),
        }
        target.next_message_id += 1
        if reply_to is not None:
            replied = self._lookup_message(target, reply_to)
            message["reply_to_message"] = copy.deepcopy(
                {k: v for k, v in replied.items() if k != "reply_to_message"}
            )
        message.update(body)
        self._messages[(target.id, message["message_id"])] = message
        if self._delivered_to_bot(target, message, service):
            return self._queue_update({"message": copy.deepcopy(message)})
        self._touch()
        return Incoming({"message": copy.deepcopy(message)}, self._next_seq(), delivered=False)

    @staticmethod
    def _text_body(text: str, entities: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text}
        found = [dict(e) for e in entities or []]
        command = _COMMAND.match(text)
        if command:
            found.insert(
                0, {"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))}
            )
        if found:
            body["entities"] = found
        return body

    def send_text(
        self,
        user: FakeUser | int,
        text: str,
        chat: Any = None,
        reply_to: Any = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> Incoming:
        """``user`` writes ``text`` (to the bot, or in ``chat``); commands get their entity."""
        if not text:
            raise ValueError("Telegram clients do not send empty messages")
        return self._user_message(user, chat, self._text_body(text, entities), reply_to)

    def send_location(
        self,
        user: FakeUser | int,
        latitude: float,
        longitude: float,
        chat: Any = None,
        live_period: int | None = None,
    ) -> Incoming:
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if live_period:
            location["live_period"] = live_period
        return self._user_message(user, chat, {"location": location})

    def send_contact(
        self,
        user: FakeUser | int,
        phone_number: str,
        first_name: str | None = None,
        last_name: str | None = None,
        contact_user_id: int | None = None,
        chat: Any = None,
    ) -> Incoming:
        """A shared contact; without a name it is the person's own number."""
        person = self.user(user)
        contact: dict[str, Any] = {
            "phone_number": phone_number,
            "first_name": first_name or person.first_name,
        }
        if last_name or (first_name is None and person.last_name):
            contact["last_name"] = last_name or person.last_name
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        elif first_name is None:
            contact["user_id"] = person.id
        return self._user_message(person, chat, {"contact": contact})

    def send_sticker(
        self, user: FakeUser | int, emoji: str = "\U0001f44d", chat: Any = None
    ) -> Incoming:
        stored = self._new_file(
            b"RIFF\x00\x00\x00\x00WEBPVP8 ", "sticker.webp", "image/webp", "stickers"
        )
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.size,
        }
        return self._user_message(user, chat, {"sticker": sticker})

    def send_photo(
        self,
        user: FakeUser | int,
        caption: str | None = None,
        chat: Any = None,
        data: bytes | None = None,
        width: int = 1280,
        height: int = 960,
    ) -> Incoming:
        """A photo (bytes downloadable through getFile and the file URL)."""
        stored = self._new_file(data or TINY_PNG, "photo.jpg", "image/jpeg", "photos")
        thumb = self._new_file(data or TINY_PNG, "photo.jpg", "image/jpeg", "photos")
        body: dict[str, Any] = {
            "photo": [
                {
                    "file_id": thumb.file_id,
                    "file_unique_id": thumb.file_unique_id,
                    "width": max(width // 16, 1),
                    "height": max(height // 16, 1),
                    "file_size": thumb.size,
                },
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": width,
                    "height": height,
                    "file_size": stored.size,
                },
            ]
        }
        if caption:
            body["caption"] = caption
        return self._user_message(user, chat, body)

    def send_document(
        self,
        user: FakeUser | int,
        data: bytes,
        file_name: str,
        mime_type: str | None = None,
        caption: str | None = None,
        chat: Any = None,
    ) -> Incoming:
        stored = self._new_file(data, file_name, mime_type, "documents")
        document: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "file_size": stored.size,
        }
        if mime_type:
            document["mime_type"] = mime_type
        body: dict[str, Any] = {"document": document}
        if caption:
            body["caption"] = caption
        return self._user_message(user, chat, body)

    def send_voice(
        self, user: FakeUser | int, duration: int = 3, chat: Any = None, data: bytes | None = None
    ) -> Incoming:
        stored = self._new_file(data or b"OggS\x00voice", "voice.ogg", "audio/ogg", "voice")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": stored.size,
        }
        return self._user_message(user, chat, {"voice": voice})

    def send_forwarded(
        self,
        user: FakeUser | int,
        text: str,
        chat: Any = None,
        origin_user: FakeUser | int | None = None,
        sender_name: str = "Hidden Sender",
    ) -> Incoming:
        """``user`` forwards a text from someone else (a hidden account unless ``origin_user``)."""
        body = self._text_body(text)
        date = self.now() - 3600
        if origin_user is not None:
            body["forward_origin"] = {
                "type": "user",
                "sender_user": self.user(origin_user).to_api(),
                "date": date,
            }
        else:
            body["forward_origin"] = {
                "type": "hidden_user",
                "sender_user_name": sender_name,
                "date": date,
            }
        body.pop("entities", None)
        return self._user_message(user, chat, body)

    def edit_text(self, user: FakeUser | int, message: Any, new_text: str) -> Incoming:
        """``user`` edits one of their text messages: an ``edited_message`` update."""
        person = self.user(user)
        chat = self.chat(person.id)
        if isinstance(message, Incoming) and message.chat_id is not None:
            chat = self.chat(message.chat_id)
        stored = self._lookup_message(chat, message)
        if stored.get("from", {}).get("id") != person.id:
            raise ValueError("people can only edit their own messages")
        if "text" not in stored:
            raise ValueError("only text messages can be edited this way")
        chat = self.chat(stored["chat"]["id"])
        stored.pop("entities", None)
        stored.update(self._text_body(new_text))
        stored["edit_date"] = self.now()
        if self._delivered_to_bot(chat, stored, False):
            return self._queue_update({"edited_message": copy.deepcopy(stored)})
        return Incoming(
            {"edited_message": copy.deepcopy(stored)}, self._next_seq(), delivered=False
        )

    # -- buttons ---------------------------------------------------------------------------

    def press(
        self,
        user: FakeUser | int,
        message: SentMessage | tuple[int, int],
        callback_data: str,
    ) -> str:
        """``user`` taps a button with ``callback_data`` (any data, even one not on the message).

        Returns the callback query id; see ``callback_answer(id)``.
        """
        person = self.user(user)
        if isinstance(message, SentMessage):
            key = (message.chat_id, message.message_id)
        else:
            key = (int(message[0]), int(message[1]))
        stored = self._messages.get(key)
        if stored is None:
            raise ValueError(f"no message {key[1]} in chat {key[0]}")
        if key in self._deleted:
            raise ValueError("the message was deleted; its buttons are gone")
        query_id = str(4_000_000_000_000_000_000 + next(self._callback_ids))
        query = {
            "id": query_id,
            "from": person.to_api(),
            "message": copy.deepcopy(stored),
            "chat_instance": str(abs(key[0]) * 7919 % 10**18),
            "data": callback_data,
        }
        record = CallbackRecord(
            id=query_id,
            user_id=person.id,
            chat_id=key[0],
            message_id=key[1],
            data=callback_data,
            created=self.clock(),
            seq=0,
        )
        self.callbacks[query_id] = record
        record.seq = self._queue_update({"callback_query": query}).seq
        return query_id

    def press_button(self, user: FakeUser | int, message: SentMessage, text: str) -> str:
        """Tap the inline button whose text is ``text`` (exact, or a unique substring)."""
        current = self._sent.get((message.chat_id, message.message_id), message)
        button = current.button(text)
        if "callback_data" not in button:
            raise ValueError(f"button {text!r} has no callback_data: {button}")
        return self.press(user, current, button["callback_data"])

    # -- membership ------------------------------------------------------------------------

    def _chat_member_update(
        self, key: str, chat: FakeChat, actor: FakeUser, subject: FakeUser, old: str, new: str
    ) -> Incoming:
        return self._queue_update(
            {
                key: {
                    "chat": chat.to_api(),
                    "from": actor.to_api(),
                    "date": self.now(),
                    "old_chat_member": self._member_api(subject, old),
                    "new_chat_member": self._member_api(subject, new),
                }
            }
        )

    def set_member_status(
        self,
        group: FakeChat | int,
        user: FakeUser | int,
        status: str,
        by: FakeUser | int | None = None,
    ) -> Incoming | None:
        """Change a person's status in a group: a ``chat_member`` update if the bot is an admin."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        chat = self.chat(group)
        if not chat.is_group:
            raise ValueError("membership changes happen in groups")
        person = self.user(user)
        old = chat.status_of(person.id)
        chat.members[person.id] = status
        actor = self.user(by) if by is not None else person
        if chat.migrated_to is None and chat.bot_status in ("creator", "administrator"):
            return self._chat_member_update("chat_member", chat, actor, person, old, status)
        self._touch()
        return None

    def join(
        self,
        group: FakeChat | int,
        user: FakeUser | int,
        by: FakeUser | int | None = None,
        service_message: bool = True,
    ) -> Incoming | None:
        """``user`` joins: a ``chat_member`` update (admin bots) and a ``new_chat_members`` message."""
        update = self.set_member_status(group, user, "member", by)
        if service_message:
            actor = by if by is not None else user
            self._user_message(
                actor, group, {"new_chat_members": [self.user(user).to_api()]}, service=True
            )
        return update

    def leave(
        self,
        group: FakeChat | int,
        user: FakeUser | int,
        service_message: bool = True,
    ) -> Incoming | None:
        """``user`` leaves: a ``chat_member`` update and a ``left_chat_member`` message."""
        update = self.set_member_status(group, user, "left")
        if service_message:
            self._user_message(
                user, group, {"left_chat_member": self.user(user).to_api()}, service=True
            )
        return update

    def add_bot_to_group(
        self,
        title: str,
        by_user: FakeUser | int,
        supergroup: bool = True,
        as_admin: bool = False,
        members: Iterable[FakeUser | int] = (),
    ) -> FakeChat:
        """``by_user`` creates a group and adds the bot: a ``my_chat_member`` update."""
        chat = self.add_group(
            title,
            supergroup=supergroup,
            members=[by_user, *members],
            creator=by_user,
            bot_status="left",
        )
        actor = self.user(by_user)
        new_status = "administrator" if as_admin else "member"
        chat.bot_status = new_status
        self._chat_member_update("my_chat_member", chat, actor, self.bot, "left", new_status)
        self._user_message(actor, chat, {"new_chat_members": [self.bot.to_api()]}, service=True)
        return chat

    def remove_bot_from_group(
        self, group: FakeChat | int, by_user: FakeUser | int, kicked: bool = True
    ) -> Incoming:
        chat = self.chat(group)
        old = chat.bot_status
        chat.bot_status = "kicked" if kicked else "left"
        return self._chat_member_update(
            "my_chat_member", chat, self.user(by_user), self.bot, old, chat.bot_status
        )

    def set_bot_status(
        self, group: FakeChat | int, status: str, by_user: FakeUser | int
    ) -> Incoming:
        """Promote or demote the bot in a group (``my_chat_member`` update)."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        chat = self.chat(group)
        old = chat.bot_status
        chat.bot_status = status
        return self._chat_member_update(
            "my_chat_member", chat, self.user(by_user), self.bot, old, status
        )

    def block(self, user: FakeUser | int) -> Incoming:
        """The person blocks the bot: ``my_chat_member`` (kicked), then 403 on every send."""
        person = self.user(user)
        person.blocked = True
        chat = self.chat(person.id)
        return self._chat_member_update(
            "my_chat_member", chat, person, self.bot, "member", "kicked"
        )

    def unblock(self, user: FakeUser | int) -> Incoming:
        person = self.user(user)
        person.blocked = False
        chat = self.chat(person.id)
        return self._chat_member_update(
            "my_chat_member", chat, person, self.bot, "kicked", "member"
        )

    def migrate_group(
        self, group: FakeChat | int, by_user: FakeUser | int | None = None
    ) -> FakeChat:
        """Upgrade a basic group to a supergroup; the old id then answers 400 with
        ``migrate_to_chat_id``. Returns the new supergroup."""
        old = self.chat(group)
        if old.type != "group":
            raise ValueError("only basic groups migrate")
        new = FakeChat(
            id=self._new_group_id(True),
            type="supergroup",
            title=old.title,
            members=dict(old.members),
            bot_status=old.bot_status,
            migrated_from=old.id,
        )
        self.chats[new.id] = new
        if by_user is None:
            by_user = next((uid for uid, s in old.members.items() if s == "creator"), None)
        if by_user is None:
            raise ValueError("pass by_user: the group has no creator")
        self._user_message(by_user, old, {"migrate_to_chat_id": new.id}, service=True)
        old.migrated_to = new.id
        self._user_message(by_user, new, {"migrate_from_chat_id": old.id}, service=True)
        return new

    def push_update(self, raw: dict[str, Any]) -> Incoming:
        """Queue any update as given (an ``update_id`` is added unless present)."""
        return self._queue_update(copy.deepcopy(raw))
