"""The hub: the services of one process, and what the areas install on it (DESIGN §3).

The composition root (`bot/app.py`) builds one `Hub`, then calls each area's `install(hub)` in
the order of `bot.areas.AREAS`. On the hub an area registers its sweeper kinds
(`hub.sweeper.register`), life-cycle hooks (`hub.lifecycle`), start-up tasks (`hub.before_receiving`, `hub.on_start`), hooks on sent messages
(`hub.sender.sent_hooks`) and the services it offers others (`hub.provide`, typed: another
area asks with `hub.get(TheType)`). Tests build a real hub through the application
(tests/harness.py), or a bare one to install a single area on (`tests/escalation_support.hub`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from bot.core.language import Languages
from bot.core.lifecycle import Lifecycle
from bot.core.roles import Roles
from bot.platform.clock import Clock
from bot.platform.config import Settings
from bot.platform.content import Content
from bot.platform.db import Database
from bot.platform.flood import FloodLimiter
from bot.platform.http import AiohttpRequest
from bot.platform.inbox import Inbox
from bot.platform.outbox import Sender
from bot.platform.scheduler import Sweeper

T = TypeVar("T")


@dataclass
class Hub:
    """Everything areas and handlers may use, created once per process."""

    settings: Settings
    db: Database
    clock: Clock
    content: Content
    inbox: Inbox
    sender: Sender
    sweeper: Sweeper
    roles: Roles
    updates_request: AiohttpRequest  # long polling's own connection (getUpdates)
    # Per-person limits (bot/platform/flood.py), set by the composition root.
    flood: FloodLimiter | None = None
    # Hooks on a patient's life cycle (activated, settings changed) the areas register.
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    # Called with each update_id once its handlers have run (tests and benchmarks listen here).
    processed_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Run once at start-up, after recovery and before the bot receives: only what handling an
    # update depends on (e.g. the counselors' roster, which decides who is alerted).
    before_receiving: list[Callable[[Hub], Awaitable[None]]] = field(default_factory=list)
    # Run once the bot receives, in the background, so a restart answers at once (e.g. make sure
    # every patient has a next prompt).
    on_start: list[Callable[[Hub], Awaitable[None]]] = field(default_factory=list)
    # People who have a private chat with the bot: Telegram sets a chat's menu only for them.
    private_chats: set[int] = field(default_factory=set)
    # Each person's language, resolved once per update (bot/core/language.py, handlers/context.py).
    languages: Languages = field(init=False)
    _services: dict[type, object] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.languages = Languages(self.db, self.content.languages, self.settings.default_language)

    def provide(self, service: T) -> T:
        """Offer `service` to the other areas, under its type."""
        kind = type(service)
        if kind in self._services:
            raise RuntimeError(f"a {kind.__name__} is already provided")
        self._services[kind] = service
        return service

    def provides(self, kind: type) -> bool:
        """Whether a service of type `kind` is provided (e.g. by the composition root, before
        the area that would provide its own)."""
        return kind in self._services

    def get(self, kind: type[T]) -> T:
        """The service of type `kind` an area provided."""
        try:
            return cast(T, self._services[kind])
        except KeyError:
            raise LookupError(f"no {kind.__name__} is provided: is its area installed?") from None
