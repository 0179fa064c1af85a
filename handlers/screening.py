"""The update-processing hook on the Telegram side of risk screening (bot/safety/screening.py):
each update waits for the detector that screens it, each text is screened once (its signal
carried to the safety handler), and the per-person limit (bot/platform/flood.py) counts it
afterwards, from the parsed update or straight from Telegram's JSON."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram.ext import SimpleUpdateProcessor

from bot.platform.flood import FloodLimiter, Kind, Verdict
from bot.safety import service as safety
from bot.safety.risk import registry
from bot.safety.screening import Screening, carrying, update_text

log = logging.getLogger(__name__)
# Decisions made from Telegram's JSON (`ScreeningProcessor.triage`) waiting for their update to
# reach `process_update`; bounded, in case one never does.
MAX_CARRIED = 10_000


@dataclass(frozen=True)
class Facts:
    """What risk screening and the per-person limit read from one update."""

    user_id: int | None  # who sent it (None: no sender)
    is_bot: bool
    kind: Kind | None  # what the limit counts it as (None: never limited)
    private: bool  # in a private chat
    text: str | None  # the words safety screening reads (None: it reads none)


def facts(update: Any, screened: Callable[[object], bool]) -> Facts:
    """The facts of a parsed update; `screened`: whether safety screening reads it."""
    user = getattr(update, "effective_user", None)
    return Facts(
        user_id=user.id if user is not None else None,
        is_bot=bool(getattr(user, "is_bot", False)),
        kind=_kind(update),
        private=_private(update),
        text=(update_text(update) or None) if screened(update) else None,
    )


# Where Telegram's JSON keeps each kind of update the bot receives (bot/platform/transport.py
# ALLOWED_UPDATES): the limit's kind, and whether the body is a message.
_RAW_KINDS: dict[str, tuple[Kind | None, bool]] = {
    "message": (Kind.MESSAGE, True),
    "edited_message": (Kind.MESSAGE, True),
    "callback_query": (Kind.BUTTON, False),
    "my_chat_member": (None, False),
    "chat_member": (None, False),
}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _raw_user(v: Any) -> tuple[int, bool] | None:
    if isinstance(v, dict) and _int(v.get("id")) and isinstance(v.get("is_bot"), bool) and isinstance(v.get("first_name"), str):
        return v["id"], v["is_bot"]
    return None


def _raw_chat(v: Any) -> str | None:
    """The chat's type, when `v` is a chat."""
    if isinstance(v, dict) and _int(v.get("id")) and isinstance(v.get("type"), str):
        return v["type"]  # type: ignore[no-any-return]
    return None


def _raw_message(v: Any) -> bool:
    return isinstance(v, dict) and _int(v.get("message_id")) and _int(v.get("date")) and _raw_chat(v.get("chat")) is not None


def _raw_command(msg: dict[str, Any]) -> bool | None:
    """Whether the message starts with a command (as `filters.COMMAND`); None: malformed."""
    entities = msg.get("entities")
    if entities is None:
        return False
    if not isinstance(entities, list) or not all(
        isinstance(e, dict) and isinstance(e.get("type"), str) and _int(e.get("offset")) and _int(e.get("length"))
        for e in entities
    ):
        return None
    return bool(entities) and entities[0]["type"] == "bot_command" and entities[0]["offset"] == 0


def raw_facts(data: Any) -> Facts | None:
    """The facts of an update read from Telegram's JSON, before any Update is built: the same
    as `facts` on the parsed update with the safety handlers' filter (a private text or caption
    that is not a command). None when `data` is not an update of a kind read here with a
    well-formed body (one kind, a sender, a chat): it is then decided on the parsed update."""
    if not isinstance(data, dict) or len(data) != 2 or not _int(data.get("update_id")):
        return None
    key = next(k for k in data if k != "update_id")
    if key not in _RAW_KINDS:
        return None
    kind, is_message = _RAW_KINDS[key]
    body = data[key]
    if not isinstance(body, dict):
        return None
    user = _raw_user(body.get("from"))
    text: str | None = None
    if is_message:
        if not _raw_message(body) or ("from" in body and user is None):
            return None
        words, caption = body.get("text"), body.get("caption")
        if not isinstance(words, str | None) or not isinstance(caption, str | None):
            return None
        command = _raw_command(body)
        if command is None:
            return None
        chat_type = _raw_chat(body["chat"])
        if chat_type == "private" and (words or caption) and not command:
            text = words or caption
    elif kind is Kind.BUTTON:
        if user is None or not isinstance(body.get("id"), str) or not isinstance(body.get("chat_instance"), str):
            return None
        msg = body.get("message")
        if msg is not None and not _raw_message(msg):
            return None
        chat_type = _raw_chat(msg["chat"]) if msg is not None else None
    else:
        if user is None or not _int(body.get("date")):
            return None
        chat_type = _raw_chat(body.get("chat"))
        if chat_type is None:
            return None
    return Facts(
        user_id=user[0] if user is not None else None,
        is_bot=user[1] if user is not None else False,
        kind=kind,
        private=chat_type == "private",
        text=text,
    )


@dataclass(frozen=True)
class _Screened:
    """What risk screening found in an update's text."""

    text: str | None
    signal: safety.Signal | None  # None: nothing screened, or the detector failed
    flagged: bool  # a risk signal (or the detector failed: never dropped)
    urgent: bool  # at high or crisis: goes first


_NOTHING = _Screened(None, None, False, False)


@dataclass(frozen=True)
class _Decision:
    """A decision made from Telegram's JSON, carried to `process_update`."""

    facts: Facts
    screened: _Screened
    verdict: Verdict


class ScreeningProcessor(SimpleUpdateProcessor):
    """Handles up to `max_concurrent_updates` updates at once, each after `Screening` says
    which detector screens it; the wait for screening holds no place among them.

    With a `limiter` (bot/platform/flood.py), each text is risk-screened first and then counted against
    its sender's limit: a text at high or crisis takes the next free place ahead of every
    ordinary update waiting (and ordinary updates leave a quarter of the places to it), any text with a risk signal from a member is handled whatever the
    limit, and an update beyond the limit is not handled: `finish` marks it done, and the first
    of a member's flood gets one line (`tell`).

    Once the full detector is ready, receiving (bot/platform/transport.py) screens and counts a person's
    message or button from Telegram's JSON (`triage`, `decide`), so an update beyond the limit
    is never built; what was decided travels with the update. Each text is screened once: the
    safety handler reads the result (`signal_for`)."""

    def __init__(self, max_concurrent_updates: int, screening: Screening) -> None:
        super().__init__(max_concurrent_updates)
        self.screening = screening
        self.limiter: FloodLimiter | None = None
        # Whether a user id is an enrolled patient or staff (asked only beyond the strangers' limit).
        self.is_member: Callable[[int], Awaitable[bool]] | None = None
        # An update that is not handled: marked done (set by build_application).
        self.finish: Callable[[object], Awaitable[None]] | None = None
        # The one line a member's flood gets.
        self.tell: Callable[[object], Awaitable[None]] | None = None
        self._free = max_concurrent_updates
        # Places only risk (high or crisis) may take, so a risk text never waits for a place.
        self._reserved = max(1, max_concurrent_updates // 4) if max_concurrent_updates > 1 else 0
        self._asking: dict[int, asyncio.Future[bool]] = {}
        self._carried: OrderedDict[int, _Decision] = OrderedDict()
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    @property
    def current_concurrent_updates(self) -> int:
        return self.max_concurrent_updates - self._free

    @property
    def ordinary_places(self) -> int:
        """How many updates without risk may be handled at once."""
        return self.max_concurrent_updates - self._reserved

    def waiting(self, *, urgent: bool) -> int:
        """Updates waiting for a place (tests and benchmarks)."""
        return sum(1 for f in self._waiting[0 if urgent else 1] if not f.done())

    def triage(self, data: Any) -> Facts | None:
        """The facts of an update still in Telegram's JSON when they can be decided on before an
        Update is built (see `decide`); None when not: the update is then built and handled
        by `process_update` as always. Decided early only once the full detector is ready and
        for a person's message or button, the only updates a limit counts."""
        if self.limiter is None or not self.screening.ready:
            return None
        f = raw_facts(data)
        if f is None or f.user_id is None or f.kind is None or f.is_bot:
            return None
        return f

    def decide(self, update_id: int, f: Facts) -> bool:
        """Screen and count an update `triage` read, before it is built: False when it is beyond
        its sender's limit (the caller marks it done; it is never built); True when it goes on,
        the screening and the verdict carried to `process_update` (neither is made twice)."""
        assert self.limiter is not None and f.user_id is not None and f.kind is not None
        token = registry.in_use.set(self.screening.detector)
        try:
            screened = self._screen(f.text)
        finally:
            registry.in_use.reset(token)
        verdict = self.limiter.check(f.user_id, f.kind, risk=screened.flagged, urgent=screened.urgent)
        if verdict is Verdict.DROP:
            return False
        if verdict is Verdict.ASK:
            self._ask(f.user_id)  # asked now: their next updates are decided here sooner
        self._carried[update_id] = _Decision(f, screened, verdict)
        while len(self._carried) > MAX_CARRIED:
            self._carried.popitem(last=False)
        return True

    def forget(self, update_id: int) -> None:
        """A decided update that will not reach `process_update` (it could not be built)."""
        self._carried.pop(update_id, None)

    async def process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            decided = self._carried.pop(getattr(update, "update_id", None), None)  # type: ignore[arg-type]
            if decided is not None:
                # Screened and counted from its JSON once the full detector was ready.
                detector = self.screening.detector
                screened = decided.screened
                verdict = await self._admit(decided.facts, screened, decided.verdict)
            else:
                detector = await self.screening.detector_for(update) or self.screening.detector
                token = registry.in_use.set(detector)
                try:
                    f = facts(update, self.screening.screened)
                    screened = self._screen(f.text)
                    verdict = await self._admit(f, screened)
                finally:
                    registry.in_use.reset(token)
        except BaseException:
            _close(coroutine)  # never handled: the update stays in the inbox
            raise
        if verdict is not Verdict.HANDLE:
            _close(coroutine)
            await self._skip(update, tell=verdict is Verdict.DROP_TELL)
            return
        await self._acquire(screened.urgent)
        token = registry.in_use.set(detector)
        try:
            with carrying(screened.text, screened.signal):
                await self.do_process_update(update, coroutine)
        finally:
            registry.in_use.reset(token)
            self._release()

    def _screen(self, text: str | None) -> _Screened:
        """Risk-screen the text of an update (with the detector in use), once."""
        if not text:
            return _NOTHING
        try:
            sig = self.screening.detection.signal(text, None)
        except Exception:
            log.exception("screening: the risk detector failed on a text; it is handled in order")
            return _Screened(text, None, True, False)  # cannot tell: never dropped
        return _Screened(text, sig, sig.any, sig.severity in ("high", "crisis"))

    async def _admit(self, f: Facts, screened: _Screened, verdict: Verdict | None = None) -> Verdict:
        """Whether to handle an update after its risk screening (`verdict`: already counted)."""
        limiter = self.limiter
        user_id, kind = f.user_id, f.kind
        if limiter is None or user_id is None or kind is None or f.is_bot:
            return Verdict.HANDLE
        if verdict is None:
            verdict = limiter.check(user_id, kind, risk=screened.flagged, urgent=screened.urgent)
        if verdict is Verdict.ASK:
            limiter.remember(user_id, await asyncio.shield(self._ask(user_id)))
            verdict = limiter.check(user_id, kind, risk=screened.flagged, urgent=screened.urgent)
            if verdict is Verdict.ASK:  # cannot happen once remembered; never loop
                verdict = Verdict.HANDLE
        return verdict

    def _ask(self, user_id: int) -> asyncio.Future[bool]:
        """Whether `user_id` is a member: asked once per person, however many of their updates
        wait for the answer (in order); the limiter remembers it as soon as it comes."""
        asking = self._asking.get(user_id)
        if asking is None:
            asking = self._asking[user_id] = asyncio.ensure_future(self._membership(user_id))

            def done(fut: asyncio.Future[bool], uid: int = user_id) -> None:
                self._asking.pop(uid, None)
                if self.limiter is not None and not fut.cancelled() and fut.exception() is None:
                    self.limiter.remember(uid, fut.result())

            asking.add_done_callback(done)
        return asking

    async def _membership(self, user_id: int) -> bool:
        if self.is_member is None:
            return True
        try:
            return await self.is_member(user_id)
        except Exception as exc:
            log.warning("flood: could not tell whether a user is enrolled (%s); counted as enrolled", type(exc).__name__)
            return True

    async def _skip(self, update: object, *, tell: bool) -> None:
        if tell and self.tell is not None and _private(update):
            try:
                await self.tell(update)
            except Exception as exc:
                log.info("flood: the flood line was not delivered (%s)", type(exc).__name__)
        if self.finish is not None:
            await self.finish(update)

    async def _acquire(self, urgent: bool) -> None:
        if self._free > (0 if urgent else self._reserved):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if urgent else 1]
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # handed a place just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(fut)
            raise

    def _release(self) -> None:
        """Hand the place to the next waiting update (urgent first), or free it. Ordinary
        updates leave `_reserved` places free for risk, which never waits behind them."""
        self._free += 1
        for queue, floor in ((self._waiting[0], 0), (self._waiting[1], self._reserved)):
            while queue and self._free > floor:
                fut = queue.popleft()
                if not fut.done():
                    self._free -= 1
                    fut.set_result(None)
                    return


def _close(coroutine: Awaitable[Any]) -> None:
    close = getattr(coroutine, "close", None)
    if close is not None:
        close()


def _kind(update: Any) -> Kind | None:
    """What the limiter counts: messages (new or edited) and buttons; nothing else (e.g. the
    group's membership changes) is ever limited."""
    if getattr(update, "callback_query", None) is not None:
        return Kind.BUTTON
    if getattr(update, "message", None) is not None or getattr(update, "edited_message", None) is not None:
        return Kind.MESSAGE
    return None


def _private(update: Any) -> bool:
    chat = getattr(update, "effective_chat", None)
    return chat is not None and getattr(chat, "type", None) == "private"
