"""Subscriptions to a patient's life cycle, so areas need not know about onboarding.

Other areas register a coroutine `fn(session, patient_id, now)`:

- `register(fn)`: called in the transaction that makes a patient active (onboarding finished),
  e.g. to schedule the first daily check-in prompt;
- `register_settings_changed(fn)`: called in the transaction that changes a patient's time zone,
  check-in time or daily tip setting, e.g. to move scheduled prompts.

Hooks write rows (outbox, schedule) in the caller's session; they must not call Telegram.
Registering the same function twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

Hook = Callable[[AsyncSession, int, datetime], Awaitable[None]]

_activated: list[Hook] = []
_settings_changed: list[Hook] = []


def register(fn: Hook) -> Hook:
    """Call `fn` when a patient becomes active. Usable as a decorator."""
    if fn not in _activated:
        _activated.append(fn)
    return fn


def register_settings_changed(fn: Hook) -> Hook:
    """Call `fn` when a patient's time settings change. Usable as a decorator."""
    if fn not in _settings_changed:
        _settings_changed.append(fn)
    return fn


def unregister(fn: Hook) -> None:
    for hooks in (_activated, _settings_changed):
        while fn in hooks:
            hooks.remove(fn)


async def run(session: AsyncSession, patient_id: int, now: datetime) -> None:
    for fn in list(_activated):
        await fn(session, patient_id, now)


async def run_settings_changed(session: AsyncSession, patient_id: int, now: datetime) -> None:
    for fn in list(_settings_changed):
        await fn(session, patient_id, now)
