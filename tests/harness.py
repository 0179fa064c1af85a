"""End-to-end harness: the real Application, polling the fake Bot API server over HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from bot.app import Runner, build_application
from bot.core.hub import Hub
from bot.platform.clock import Clock, FrozenClock
from bot.platform.config import Settings, load_settings
from bot.platform.db import Database
from bot.safety.screening import Screening
from bot.safety.service import Detector
from fakeapi import FakeTelegram

ADMIN_ID = 900001


def make_settings(fake: FakeTelegram, db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        telegram_bot_token=fake.token,
        telegram_api_base_url=fake.base_url,
        database_url=db.url,
        admin_user_ids=[ADMIN_ID],
        sweep_interval_seconds=3600,
        # Tests send as fast as the machine runs: the per-person limits are out of their way
        # unless a test sets them (tests/platform/test_e2e_flood.py).
        flood_member_burst=100_000,
        flood_stranger_burst=100_000,
        flood_button_burst=100_000,
    )
    values.update(overrides)
    return load_settings(_env_file=None, **values)


class BotHarness:
    """Starts, stops and restarts the bot; sends as people; waits for the bot to finish."""

    def __init__(
        self,
        fake: FakeTelegram,
        db: Database,
        clock: Clock | None = None,
        *,
        background_sweep: bool = False,
        detector: Detector | None = None,
        **overrides: Any,
    ) -> None:
        self.fake = fake
        # The risk detector the bot screens with (None: the project's own).
        self.detector = detector
        self.background_sweep = background_sweep
        self.db = db
        self.clock = clock or Clock()
        self.overrides = overrides
        # The counselors' group, with the bot as admin, and an admin who has opened a chat.
        self.group = fake.add_group("Counselors", supergroup=True)
        self.admin = fake.add_user(id=ADMIN_ID, first_name="Ada", started=True)
        overrides.setdefault("counselor_chat_id", self.group.id)
        self.settings = make_settings(fake, db, **overrides)
        self.runner: Runner | None = None
        self._task: asyncio.Task[None] | None = None
        self.processed: set[int] = set()
        self._cond = asyncio.Condition()

    @property
    def hub(self) -> Hub:
        assert self.runner is not None
        return self.runner.hub

    @property
    def app(self) -> Any:
        assert self.runner is not None
        return self.runner.app

    async def start(
        self,
        *,
        detector_hold: threading.Event | None = None,
        settle: bool = True,
        content_checked: Callable[[], None] | None = None,
    ) -> BotHarness:
        """Start the bot and wait until its risk detector is built; with `detector_hold`, the
        detector's full build waits for that event instead (screening while it builds).
        `settle=False`: do not wait for the start-up work done once receiving (the menus).
        `content_checked`: what `iop-bot run` gives at a first start (bot/cli.py)."""
        # A fresh Database object per run, like a new process, on the same database.
        db = Database(self.db.url)
        app = build_application(self.settings, db=db, clock=self.clock, detector=self.detector)
        self.runner = Runner(app, content_checked=content_checked)
        self.runner.hub.get(Screening).hold = detector_hold
        self.runner.hub.processed_hooks.append(self._on_processed)
        self._task = asyncio.create_task(self.runner.run(install_signals=False))
        started = asyncio.create_task(self.runner.started.wait())
        done, _ = await asyncio.wait({started, self._task}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            self._task.result()
        assert started in done, "the bot did not start"
        # The start-up work done once receiving (menus, the areas' start-up tasks) has finished,
        # so a test sees the state a running bot settles into.
        if settle:
            await asyncio.wait_for(self.runner.settled.wait(), 60)
        if detector_hold is None:
            await asyncio.wait_for(self.runner.hub.get(Screening).wait_ready(), 120)
        if isinstance(self.clock, FrozenClock) and not self.background_sweep:
            # On a frozen clock the test moves time and runs the sweeper itself (tick): the bot's
            # own job, due half a second after start on the real clock, would otherwise run at a
            # moment the test does not choose.
            for job in self.app.job_queue.get_jobs_by_name("sweeper"):
                job.schedule_removal()
        return self

    async def stop(self) -> None:
        if self.runner is not None and self._task is not None:
            self.runner.stop()
            await asyncio.wait_for(self._task, 30)
        self.runner = None
        self._task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def _on_processed(self, update_id: int) -> None:
        self.processed.add(update_id)

        async def notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def handled(self, update_id: int, timeout: float = 10.0) -> None:
        """Wait until the bot's handlers have finished with this update."""
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: update_id in self.processed), timeout)

    async def outbox_idle(self, timeout: float = 10.0) -> None:
        """Wait until no outbox row is due (everything due has been sent or set aside)."""
        from sqlalchemy import func, select

        from bot.platform.models import OutboxMessage

        async def due() -> int:
            async with self.hub.db.session() as s:
                q = select(func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.status.in_(("pending", "sending")),
                    OutboxMessage.next_attempt_at <= self.hub.clock.now(),
                )
                return int((await s.execute(q)).scalar_one())

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await due():
            self.hub.sender.wake()
            if loop.time() > deadline:
                raise AssertionError("outbox did not drain")
            await asyncio.sleep(0.02)  # re-check the condition; the sender works meanwhile

    async def tick(self) -> int:
        """Run the sweeper now (time is whatever the clock says), then let the outbox drain."""
        n = await self.hub.sweeper.tick()
        await self.outbox_idle()
        return n

    async def send(self, user: Any, text: str, **kw: Any) -> Any:
        """Send text as `user`, wait until handled and the outbox is idle; return the update."""
        inc = self.fake.send_text(user, text, **kw)
        await self.handled(inc.update_id)
        await self.outbox_idle()
        return inc

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every update the fake has queued has been handled and the outbox is idle."""
        await self.fake.wait_idle(timeout=timeout)
        ids = {u.update_id for u in self.fake.updates}
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: ids <= self.processed), timeout)
        await self.outbox_idle()

    async def press(self, user: Any, message: Any, data: str) -> str:
        """Press a button (by callback_data) and wait until handled; returns the query id."""
        qid = self.fake.press(user, message, data)
        await self.settle()
        return qid

    async def press_button(self, user: Any, message: Any, text: str) -> str:
        """Press a button by its label and wait until handled; returns the query id."""
        qid = self.fake.press_button(user, message, text)
        await self.settle()
        return qid

    async def push(self, inc: Any = None) -> Any:
        """Wait until an update made with the fake's control API (or all of them) is handled."""
        if inc is not None and hasattr(inc, "update_id"):
            await self.handled(inc.update_id)
            await self.outbox_idle()
        else:
            await self.settle()
        return inc
