"""Application factory and process lifecycle.

`build_application` wires python-telegram-bot to the services: the inbox marks each update done
after its handlers ran, the outbox sender and the sweeper start with the application, and the
handlers are registered in one place (`handlers.register`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from telegram import Update
from telegram.error import InvalidToken, NetworkError, TimedOut
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot.core import group
from bot.core.hub import Hub
from bot.core.roles import Roles
from bot.platform import crypto, retention
from bot.platform.clock import Clock
from bot.platform.config import Settings, TokenRejected
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.flood import FloodLimiter, Rate
from bot.platform.http import AiohttpRequest
from bot.platform.inbox import Inbox
from bot.platform.outbox import Sender
from bot.platform.scheduler import Sweeper
from bot.platform.transport import Poller, WebhookServer, parse_update
from bot.safety.screening import Screening
from bot.safety.service import Detection, Detector
from bot.safety.signals import SignalKeeper
from handlers.context import Ctx
from handlers.screening import ScreeningProcessor

if TYPE_CHECKING:
    from bot.safety.risk.prepared import Prepared

log = logging.getLogger(__name__)
T = TypeVar("T")
# The charts' library is loaded this long after the bot started receiving, when the first answers
# (a backlog after a restart) are out, not while they are being sent.
PRELOAD_AFTER_SECONDS = 10.0


class IOPApplication(Application):  # type: ignore[type-arg]
    """Marks each update done in the inbox once every handler for it has run."""

    async def process_update(self, update: object) -> None:
        try:
            await super().process_update(update)
        finally:
            await self.finish_update(update)

    async def finish_update(self, update: object) -> None:
        """Mark `update` done in the inbox (handled, or not handled because of a flood)."""
        if isinstance(update, Update):
            hub: Hub | None = self.bot_data.get("hub")
            if hub is not None:
                try:
                    await hub.inbox.mark_done(update.update_id)
                except Exception as exc:
                    log.warning("inbox: could not mark update %s done (%s)", update.update_id, type(exc).__name__)
                for hook in hub.processed_hooks:
                    hook(update.update_id)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the bot: on uvloop where it is installed (the same asyncio API, a faster loop; the
    bot is CPU-bound under load), otherwise on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def build_application(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Clock | None = None,
    concurrent_updates: int = 16,
    detector: Detector | None = None,
) -> Application:  # type: ignore[type-arg]
    """The application on `settings`; `detector`: the risk detector to screen with instead of
    the process's own (tests)."""
    token = settings.require_token()
    settings.require_webhook_secret()
    crypto.configure(settings.encryption_key.get_secret_value() if settings.encryption_key else None)
    db = db or Database(settings.database_url)
    clock = clock or Clock()
    base = settings.telegram_api_base_url.rstrip("/")
    updates_request = AiohttpRequest(pool_size=2)
    screening = Screening()
    processor = ScreeningProcessor(concurrent_updates, screening)
    processor.limiter = FloodLimiter(
        members=Rate(settings.flood_member_burst, settings.flood_member_every_seconds),
        strangers=Rate(settings.flood_stranger_burst, settings.flood_stranger_every_seconds),
        buttons=Rate(settings.flood_button_burst, settings.flood_button_every_seconds),
    )
    app = (
        ApplicationBuilder()
        .application_class(IOPApplication)
        .token(token)
        .base_url(base)
        .base_file_url(base.removesuffix("/bot") + "/file/bot")
        .context_types(ContextTypes(context=Ctx))
        .updater(None)
        .concurrent_updates(processor)
        .request(AiohttpRequest(pool_size=32))
        .get_updates_request(updates_request)
        .build()
    )

    async def lookup(chat_id: int, user_id: int) -> str | None:
        member = await app.bot.get_chat_member(chat_id, user_id)
        if member.status == "restricted" and not getattr(member, "is_member", False):
            return "left"  # a restricted user who left the group keeps that status
        return str(member.status)

    hub = Hub(
        settings=settings,
        db=db,
        clock=clock,
        content=get_content(settings.content_dir),
        inbox=Inbox(db, clock),
        sender=Sender(db, app.bot, clock, send_rate=settings.send_rate),
        sweeper=Sweeper(db, clock),
        roles=Roles(db, settings, clock, lookup),
        updates_request=updates_request,
    )
    hub.sweeper.after_tick.append(hub.sender.wake)
    retention.install(hub.sweeper, hub.settings)  # finished rows pruned daily, in bounded batches
    hub.on_start.append(lambda hub: retention.ensure_at_start(hub.db, hub.clock))
    hub.provide(screening)
    hub.provide(SignalKeeper(hub))
    if detector is not None:
        hub.provide(Detection(detector))  # before the safety area, which provides its own otherwise
    app.bot_data["hub"] = hub

    import bot.schema  # noqa: F401  (every table, for the data export and erasure)
    import handlers
    from bot import areas

    handlers.register(app, hub, areas.install(hub))
    screening.detection = hub.get(Detection)
    from handlers.safety import SCREENED

    screening.screened = lambda update: bool(SCREENED.check_update(update))  # type: ignore[arg-type]
    _wire_limiter(app, hub, processor)
    return app


def _wire_limiter(app: IOPApplication, hub: Hub, processor: ScreeningProcessor) -> None:
    """What the per-person limit needs from the services: who is a member, the flood line,
    and marking an update it did not let through done."""
    hub.flood = processor.limiter
    admins = set(hub.settings.admin_user_ids)

    async def is_member(user_id: int) -> bool:
        """Enrolled (or being enrolled: onboarding counts) or staff."""
        from sqlalchemy import select

        from bot.core.models import Patient
        from bot.core.people import ENROLLED

        if user_id in admins:
            return True
        async with hub.db.session() as s:
            found = await s.execute(
                select(Patient.id)
                .where(Patient.telegram_id == user_id, Patient.status.in_((*ENROLLED, "onboarding")))
                .limit(1)
            )
            if found.first() is not None:
                return True
        return bool(await hub.roles.is_staff(user_id))

    async def tell(update: object) -> None:
        user = getattr(update, "effective_user", None)
        chat = getattr(update, "effective_chat", None)
        if user is None or chat is None:
            return
        # Before any handler, without the database: what the person's earlier updates resolved.
        lang = hub.languages.known(user.id, user.language_code)
        await app.bot.send_message(chat.id, hub.content.t("common.flood", lang))

    processor.is_member = is_member
    processor.tell = tell
    processor.finish = app.finish_update


async def start_services(app: Application) -> None:  # type: ignore[type-arg]
    """After `app.start()`, before receiving: the key check, recovery, what handling depends on
    (`hub.before_receiving`), the outbox sender and the sweeper job."""
    hub: Hub = app.bot_data["hub"]

    # The key must read what is stored (a changed or removed key stops the start, in one sentence).
    await crypto.check_key(hub.db, hub.clock.now())
    if hub.settings.counselor_chat_id is not None:
        async with hub.db.session() as s:
            hub.settings.counselor_chat_id = await group.current_id(s, hub.settings.counselor_chat_id)
    await hub.sweeper.recover()
    await _run_hooks(hub, hub.before_receiving)
    await hub.sender.start()
    hub.get(SignalKeeper).start()
    if app.job_queue is not None:
        app.job_queue.run_repeating(
            _sweep_job, interval=hub.settings.sweep_interval_seconds, first=0.5, name="sweeper"
        )


async def once_receiving(app: Application) -> None:  # type: ignore[type-arg]
    """Start-up work nothing waits for, done once the bot receives: the command menus (Bot API
    calls) and the areas' start-up tasks (`hub.on_start`)."""
    hub: Hub = app.bot_data["hub"]
    import handlers

    try:
        await handlers.set_commands(app, hub)
    except Exception as exc:
        log.warning("could not set the command menu (%s)", type(exc).__name__)
    await _run_hooks(hub, hub.on_start)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def _run_hooks(hub: Hub, hooks: list[Callable[[Hub], Awaitable[None]]]) -> None:
    for hook in hooks:
        try:
            await hook(hub)
        except Exception:
            log.exception("a start-up task failed")


async def _sweep_job(ctx: Ctx) -> None:
    try:
        await ctx.hub.sweeper.tick()
    except Exception:
        log.exception("sweeper tick failed")
    if ctx.hub.flood is not None:
        ctx.hub.flood.sweep()  # floods that are over get their log line


async def stop_services(app: Application) -> None:  # type: ignore[type-arg]
    hub: Hub = app.bot_data["hub"]
    await hub.get(SignalKeeper).stop()
    if hub.flood is not None:
        hub.flood.flush()  # every flood still going gets its log line
    await hub.sender.stop()
    await hub.get(Screening).stop()


async def retry_network(step: Callable[[], Awaitable[object]], what: str, attempts: int = 8) -> None:
    """Start-up calls to Telegram survive a few network errors and 5xx answers."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            await step()
            return
        except (NetworkError, TimedOut) as exc:
            if attempt == attempts:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


class _Stopped(Exception):
    """Asked to stop while still starting."""


class Runner:
    """Runs the application with its transport until stopped (SIGTERM/SIGINT or `stop()`).

    It always winds down cleanly: each step of stopping runs whatever failed before it, and an
    error that ended the run is raised as it was, never hidden behind a later one. A transport
    that can no longer receive updates (Telegram rejected the token) stops the run, and `run`
    raises `TokenRejected` so the process exits non-zero.
    """

    def __init__(
        self,
        app: Application,  # type: ignore[type-arg]
        *,
        prepared: Prepared | None = None,
        content_checked: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.hub: Hub = app.bot_data["hub"]
        self._stop = asyncio.Event()
        self.transport: Poller | WebhookServer | None = None
        self.started = asyncio.Event()
        # Set once the start-up work done after receiving began (`once_receiving`) has finished.
        self.settled = asyncio.Event()
        self._settling: asyncio.Task[None] | None = None
        self.fatal: BaseException | None = None
        # The risk detector's prepared file (bot/safety/risk/prepared.py): written once the detector
        # was built in this process (`iop-bot run` gives it; None: nothing is written).
        self.prepared = prepared
        # Records that the content passed its check at this start, once the full detector built
        # (the build checks the risk rules; bot/cli.py). None: nothing to record.
        self.content_checked = content_checked
        self._later: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self._stop.set()

    def _on_fatal(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        self._stop.set()

    async def _or_stop(self, step: Awaitable[T]) -> T:
        """`step`, unless a stop is asked for first (a SIGTERM during a slow start)."""
        task = asyncio.ensure_future(step)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise _Stopped
        return task.result()

    async def run(self, *, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        try:
            await self._run()
        except _Stopped:
            log.info("stopped while starting")
        except InvalidToken:
            raise TokenRejected() from None
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self.fatal is not None:
            raise self.fatal

    async def _run(self) -> None:
        s = self.hub.settings
        if s.encryption_key is None:
            log.warning("ENCRYPTION_KEY is not set: free text (notes, plan entries, relayed messages) is stored unencrypted")
        try:
            # The risk detector builds in a worker thread while the bot connects and receives: a
            # crisis is answered by the crisis rules meanwhile, other texts wait (bot/safety/screening.py).
            self.hub.get(Screening).after_ready.append(gc.freeze)  # what it built lives as long as the bot
            self.hub.get(Screening).after_ready.append(self._after_detector)
            self.hub.get(Screening).start(self._on_fatal)
            await self._or_stop(retry_network(self.app.initialize, "connecting to Telegram"))
            await self.app.start()
            try:
                await start_services(self.app)
                for update in await self.hub.inbox.pending(lambda data: parse_update(data, self.app.bot)):
                    await self.app.update_queue.put(update)
                if s.webhook_url:
                    self.transport = WebhookServer(
                        self.app,
                        self.hub.inbox,
                        url=s.webhook_url,
                        secret=s.require_webhook_secret() or "",
                        listen=s.webhook_listen,
                        port=s.webhook_port,
                        check_seconds=s.webhook_check_seconds,
                        on_fatal=self._on_fatal,
                    )
                else:
                    self.transport = Poller(
                        self.app, self.hub.inbox, self.hub.updates_request, on_fatal=self._on_fatal
                    )
                await self._or_stop(retry_network(self.transport.start, "starting to receive updates"))
                log.info("iop-bot is running (%s)", "webhook" if s.webhook_url else "polling")
                self._settling = asyncio.get_running_loop().create_task(self._settle(), name="start-up")
                # What start-up built (content, the detector's rules, the handlers) lives as long as the
                # bot runs: kept out of the garbage collector's full passes, which otherwise walk it all.
                # `iop-bot run` pauses the collector while starting (bot/cli.py): it resumes here.
                gc.freeze()
                gc.enable()
                self.started.set()
                try:
                    await self._stop.wait()
                finally:
                    gc.unfreeze()
            finally:
                await _cancel(self._settling)  # the next start does it again
                await self._wind_down()
        finally:
            gc.enable()  # also when stopped or failed while starting
            await _cancel(self._settling)  # when starting failed after it was begun
            await _cancel(self._later)  # not needed any more (the file is written by the next start)
            await self._step("closing the connection to Telegram", self.app.shutdown)
            # Also when start-up failed half-way (the application then has nothing to shut down).
            for request in (self.app.bot.request, self.hub.updates_request):
                await self._step("closing an HTTP session", request.shutdown)
            await self._step("closing the database", self.hub.db.dispose)

    async def _settle(self) -> None:
        try:
            await once_receiving(self.app)
        finally:
            self.settled.set()

    def _after_detector(self) -> None:
        """Once the full detector is ready: what waits for the bot to be receiving, in the
        background (`_after_start`)."""
        if self._later is None:
            self._later = asyncio.get_running_loop().create_task(self._after_start())

    async def _after_start(self) -> None:
        """Work that is not needed to answer, kept off the first seconds (each step in a worker
        thread, which would otherwise compete with the event loop for the interpreter): write the
        detector for the next start when it was built here, record that the content passed its
        check (its risk rules by this build), then, once the first answers are out, load the
        charts' library that the first chart would otherwise load on the event loop."""
        await self.started.wait()
        loop = asyncio.get_running_loop()
        if self.prepared is not None:
            await loop.run_in_executor(None, self.prepared.save)
        if self.content_checked is not None:
            await loop.run_in_executor(None, self.content_checked)
        await asyncio.sleep(PRELOAD_AFTER_SECONDS)
        from bot.checkins import charts

        try:
            await loop.run_in_executor(None, charts.preload)
        except Exception as exc:
            log.warning("could not load the charts library (%s)", type(exc).__name__)

    async def _wind_down(self) -> None:
        log.info("stopping: finishing updates in flight")
        if self.transport is not None:
            await self._step("stopping the transport", self.transport.stop)
        if self.app.running:
            await self._step("stopping the application", self.app.stop)
        await self._step("stopping the services", lambda: stop_services(self.app))

    @staticmethod
    async def _step(what: str, step: Callable[[], Awaitable[object]]) -> None:
        """One step of stopping: a failure is logged and the next step still runs."""
        try:
            await step()
        except Exception:
            log.exception("%s failed", what)
