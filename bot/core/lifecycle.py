"""Subscriptions to a patient's life cycle, so areas need not know about onboarding.

The hub holds one `Lifecycle` (`hub.lifecycle`); areas register a coroutine
`fn(session, patient_id, now)` on it in their `install(hub)`:

- `on_activated(fn)`: called in the transaction that makes a patient active (onboarding finished),
  e.g. to schedule the first daily check-in prompt;
- `on_settings_changed(fn)`: called in the transaction that changes a patient's time zone,
  check-in time or daily tip setting, e.g. to move scheduled prompts.

The domain functions that make these changes take the `Lifecycle` and fire it (`activated`,
`settings_changed`). Hooks write rows (outbox, schedule) in the caller's session; they must not
call Telegram. Registering the same function twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

Hook = Callable[[AsyncSession, int, datetime], Awaitable[None]]


class Lifecycle:
    """The hooks on a patient's life cycle, in the order they were registered."""

    def __init__(self) -> None:
        self._activated: list[Hook] = []
        self._settings_changed: list[Hook] = []

    def on_activated(self, fn: Hook) -> Hook:
        """Call `fn` when a patient becomes active."""
        if fn not in self._activated:
            self._activated.append(fn)
        return fn

    def on_settings_changed(self, fn: Hook) -> Hook:
        """Call `fn` when a patient's time settings change."""
        if fn not in self._settings_changed:
            self._settings_changed.append(fn)
        return fn

    async def activated(self, session: AsyncSession, patient_id: int, now: datetime) -> None:
        for fn in list(self._activated):
            await fn(session, patient_id, now)

    async def settings_changed(self, session: AsyncSession, patient_id: int, now: datetime) -> None:
        for fn in list(self._settings_changed):
            await fn(session, patient_id, now)
