"""Screening while the risk detector builds: the bot answers from its first second.

The full detector (every rule of `content/risk/*.yaml` and the learned model) takes seconds of
CPU to build. A restart used to wait for it before it received anything, so a crisis sent then
was answered many seconds late. Now updates are received at once and the detector builds in a
worker thread, in two steps:

1. the crisis rules alone (`risk.crisis_detector`, with the same negation, past and joke
   handling), a fraction of the build;
2. the full detector.

Until the full detector is ready, each update that safety screening reads (a private text or
caption, `screened`) is held: once the crisis rules are there, a text they find a crisis is
handled at once, screened by them (the crisis reply, the flag); every other text waits for the
full detector and is then handled as always. No text is handled unscreened, and one that waits
holds no place among the updates handled at once, so a crisis never queues behind it. Updates
that are not screened (buttons, commands) go on at once. If a build fails, `on_fatal` is told
and the bot stops; the held updates stay in the inbox for the next start.

Screening is waited for before the application takes an update (`ScreeningProcessor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from telegram.ext import SimpleUpdateProcessor

from bot import risk, safety
from bot.flood import FloodLimiter, Kind, Verdict

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.0005  # seconds, while the detector builds


class Screening:
    def __init__(self) -> None:
        # Whether safety screening reads this update (set from the handlers' filter).
        self.screened: Callable[[object], bool] = lambda update: True
        # Tests: the full build waits on this before it starts (a detector still building, made
        # deterministic); None in the bot.
        self.hold: threading.Event | None = None
        # Called in the event loop once the full detector is ready.
        self.after_ready: list[Callable[[], None]] = []
        # Seconds from start() to each step (also logged).
        self.timings: dict[str, float] = {}
        self._crisis: asyncio.Future[risk.RiskDetector] | None = None
        self._full: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """The full detector screens every update."""
        return self._full is not None and self._full.done() and self._full.exception() is None

    def start(self, on_fatal: Callable[[BaseException], None]) -> None:
        """Begin building (once); returns at once."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._crisis = loop.create_future()
        self._full = loop.create_future()
        self._task = loop.create_task(self._build(on_fatal))

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for fut in (self._crisis, self._full):
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError("the bot is stopping"))
                fut.exception()  # retrieved: nobody need wait for it

    async def wait_ready(self) -> None:
        """Until the full detector is ready (raises if its build failed)."""
        assert self._full is not None, "screening has not started"
        await asyncio.shield(self._full)

    async def _build(self, on_fatal: Callable[[BaseException], None]) -> None:
        assert self._crisis is not None and self._full is not None
        t0 = time.perf_counter()
        # While the worker compiles (CPU-bound), the event loop gets the interpreter back sooner
        # after each network wait (by default it may wait 5 ms for it, at every one).
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
        try:
            if risk.detector_ready() and self.hold is None:
                # Built already (content checked at this start, or an earlier run in this process).
                self._crisis.set_result(risk.get_detector())
            else:
                self._crisis.set_result(await asyncio.to_thread(risk.crisis_detector))
            self.timings["crisis_rules"] = time.perf_counter() - t0
            log.info("screening: crisis rules ready in %.1fs", self.timings["crisis_rules"])
            await asyncio.to_thread(self._build_full)
            self.timings["full"] = time.perf_counter() - t0
            log.info("screening: risk detector ready in %.1fs", self.timings["full"])
            self._full.set_result(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error("screening: the risk detector could not be built (%s)", type(exc).__name__)
            for fut in (self._crisis, self._full):
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()
            on_fatal(exc)
            return
        finally:
            sys.setswitchinterval(interval)
        for hook in self.after_ready:
            hook()

    def _build_full(self) -> None:
        if self.hold is not None:
            self.hold.wait()
        safety.warm()

    async def detector_for(self, update: object) -> risk.RiskDetector | None:
        """The detector that screens `update`: None for the usual one (ready, or nothing to
        screen), the crisis rules for a text they find a crisis. Waits as described above."""
        if self._crisis is None or self._full is None or self.ready or not self.screened(update):
            return None  # not started (the usual detector, built on first use), ready, or not screened
        text = _text(update)
        if text:
            crisis = await asyncio.shield(self._crisis)
            try:
                if crisis.detect(text).severity == risk.Severity.CRISIS:
                    return crisis
            except Exception:
                log.exception("screening: the crisis rules failed on a text; it waits for the full detector")
        await asyncio.shield(self._full)
        return None


def _text(update: Any) -> str | None:
    msg = getattr(update, "effective_message", None)
    if msg is None:
        return None
    return msg.text or msg.caption  # type: ignore[no-any-return]


class ScreeningProcessor(SimpleUpdateProcessor):
    """Handles up to `max_concurrent_updates` updates at once, each after `Screening` says
    which detector screens it; the wait for screening holds no place among them.

    With a `limiter` (bot/flood.py), each text is risk-screened first and then counted against
    its sender's limit: a text at high or crisis takes the next free place ahead of every
    ordinary update waiting (and ordinary updates leave a quarter of the places to it), any text with a risk signal from a member is handled whatever the
    limit, and an update beyond the limit is not handled: `finish` marks it done, and the first
    of a member's flood gets one line (`tell`)."""

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

    async def process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            detector = await self.screening.detector_for(update)
            token = risk.in_use.set(detector)
            try:
                verdict, urgent = await self._admit(update)
            finally:
                risk.in_use.reset(token)
        except BaseException:
            _close(coroutine)  # never handled: the update stays in the inbox
            raise
        if verdict is not Verdict.HANDLE:
            _close(coroutine)
            await self._skip(update, tell=verdict is Verdict.DROP_TELL)
            return
        await self._acquire(urgent)
        token = risk.in_use.set(detector)
        try:
            await self.do_process_update(update, coroutine)
        finally:
            risk.in_use.reset(token)
            self._release()

    async def _admit(self, update: object) -> tuple[Verdict, bool]:
        """Whether to handle `update` (after its risk screening) and whether it goes first."""
        urgent = flagged = False
        if self.screening.screened(update):
            text = _text(update)
            if text:
                try:
                    sig = safety.detect(text, None)
                    flagged = sig.any
                    urgent = sig.severity in ("high", "crisis")
                except Exception:
                    log.exception("screening: the risk detector failed on a text; it is handled in order")
                    flagged = True  # cannot tell: never dropped
        limiter = self.limiter
        user = getattr(update, "effective_user", None)
        kind = _kind(update)
        if limiter is None or user is None or kind is None or getattr(user, "is_bot", False):
            return Verdict.HANDLE, urgent
        verdict = limiter.check(user.id, kind, risk=flagged, urgent=urgent)
        if verdict is Verdict.ASK:
            # Asked once per person, however many of their updates wait for the answer (in order).
            asking = self._asking.get(user.id)
            if asking is None:
                asking = self._asking[user.id] = asyncio.ensure_future(self._membership(user.id))
                asking.add_done_callback(lambda _f, uid=user.id: self._asking.pop(uid, None))
            limiter.remember(user.id, await asyncio.shield(asking))
            verdict = limiter.check(user.id, kind, risk=flagged, urgent=urgent)
            if verdict is Verdict.ASK:  # cannot happen once remembered; never loop
                verdict = Verdict.HANDLE
        return verdict, urgent

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
