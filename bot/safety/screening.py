"""Screening while the risk detector builds: the bot answers from its first second.

The full detector (every rule of `content/risk/*.yaml` and the learned model) takes seconds of
CPU to build. A restart used to wait for it before it received anything, so a crisis sent then
was answered many seconds late. Now updates are received at once and the detector builds in a
worker thread, in two steps:

1. the crisis rules alone (`registry.crisis_detector`, with the same negation, past and joke
   handling), a fraction of the build;
2. the full detector.

Until the full detector is ready, each update that safety screening reads (a private text or
caption, `screened`) is held: once the crisis rules are there, a text they find a crisis is
handled at once, screened by them (the crisis reply, the flag); every other text waits for the
full detector and is then handled as always. No text is handled unscreened, and one that waits
holds no place among the updates handled at once, so a crisis never queues behind it. Updates
that are not screened (buttons, commands) go on at once. If a build fails, `on_fatal` is told
and the bot stops; the held updates stay in the inbox for the next start.

Screening is waited for before the application takes an update (`ScreeningProcessor`, the
update-processing hook on the Telegram side: handlers/screening.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from bot.core.vocabulary import Severity
from bot.safety import service as safety
from bot.safety.risk import registry
from bot.safety.risk.detector import RiskDetector

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.0005  # seconds, while the detector builds

# The text screened for the update being handled and what the detector found in it: the safety
# handler reads it (`Screening.signal_for`) instead of running the detector a second time.
_screened: ContextVar[tuple[str, safety.Signal] | None] = ContextVar("screened_signal", default=None)


@contextmanager
def carrying(text: str | None, signal: safety.Signal | None) -> Iterator[None]:
    """While the update whose `text` screening found `signal` in is handled (none: nothing)."""
    token = _screened.set((text, signal) if text and signal is not None else None)
    try:
        yield
    finally:
        _screened.reset(token)


class Screening:
    def __init__(self) -> None:
        # Risk detection (the safety area's service on the hub; the composition root sets it).
        self.detection = safety.Detection()
        # Whether safety screening reads this update (set from the handlers' filter).
        self.screened: Callable[[object], bool] = lambda update: True
        # Tests: the full build waits on this before it starts (a detector still building, made
        # deterministic); None in the bot.
        self.hold: threading.Event | None = None
        # Called in the event loop once the full detector is ready.
        self.after_ready: list[Callable[[], None]] = []
        # Seconds from start() to each step (also logged).
        self.timings: dict[str, float] = {}
        # The full detector once it is ready, set as the one in use while an update is screened
        # and handled (found at once, rather than looked up again for every text).
        self.detector: RiskDetector | None = None
        self._crisis: asyncio.Future[RiskDetector] | None = None
        self._full: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def signal_for(self, text: str) -> safety.Signal:
        """What the risk detector finds in `text`: the result of this update's screening when it
        screened these words, otherwise detected now (raises as `Detection.signal` does)."""
        carried = _screened.get()
        if carried is not None and carried[0] == text:
            return carried[1]
        return self.detection.signal(text, None)

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
            content_dir = self.detection.content_dir
            if registry.detector_ready(content_dir) and self.hold is None:
                # Built already (read from the prepared file, or an earlier run in this process).
                self._crisis.set_result(registry.get_detector(content_dir))
            else:
                self._crisis.set_result(await asyncio.to_thread(registry.crisis_detector, content_dir))
            self.timings["crisis_rules"] = time.perf_counter() - t0
            log.info("screening: crisis rules ready in %.1fs", self.timings["crisis_rules"])
            await asyncio.to_thread(self._build_full)
            self.detector = registry.get_detector(content_dir)
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
        self.detection.warm()

    async def detector_for(self, update: object) -> RiskDetector | None:
        """The detector that screens `update`: None for the usual one (ready, or nothing to
        screen), the crisis rules for a text they find a crisis. Waits as described above."""
        if self._crisis is None or self._full is None or self.ready or not self.screened(update):
            return None  # not started (the usual detector, built on first use), ready, or not screened
        text = update_text(update)
        if text:
            crisis = await asyncio.shield(self._crisis)
            try:
                if crisis.detect(text).severity == Severity.CRISIS:
                    return crisis
            except Exception:
                log.exception("screening: the crisis rules failed on a text; it waits for the full detector")
        await asyncio.shield(self._full)
        return None


def update_text(update: Any) -> str | None:
    """The words of an update safety screening reads (its message's text or caption)."""
    msg = getattr(update, "effective_message", None)
    if msg is None:
        return None
    return msg.text or msg.caption  # type: ignore[no-any-return]
