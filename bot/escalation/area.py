"""The escalation area on the hub: the flag workflow's configuration, sweeper kinds and the
sender's hook that records where each post landed; the daily digest, the counselors' group
roster, and what ends when someone is no longer a counselor."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.hub import Hub
from bot.core.roles import group_members
from bot.escalation import digest, relay, renotify
from bot.escalation.rendering import record_sent
from bot.escalation.rules import Workflow, build_workflow
from bot.platform.models import OutboxMessage, ScheduledItem

log = logging.getLogger(__name__)

# The roster's check at start (before the bot receives): at most this long, this many at once.
ROSTER_CHECK_SECONDS = 5
ROSTER_CHECKS_AT_ONCE = 8


def install(hub: Hub) -> None:
    wf = hub.provide(build_workflow(hub.settings, hub.content))

    async def renotify_item(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        await renotify.renotify_item(session, wf, item, now)

    async def followup_item(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        await renotify.followup_item(session, wf, item, now)

    async def digest_item(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        await digest.digest_item(session, wf, item, now)

    hub.sweeper.register(renotify.KIND_RENOTIFY, renotify_item)
    hub.sweeper.register(renotify.KIND_FOLLOWUP, followup_item)
    hub.sweeper.register(digest.KIND_DIGEST, digest_item)

    async def on_sent(row: OutboxMessage, message_id: int | None) -> None:
        if message_id is None or not row.ref or not row.ref.startswith(("flag:", "card:")):
            return
        async with hub.db.transaction() as s:
            await record_sent(s, wf, row.ref, row.chat_id, message_id, hub.clock.now())

    hub.sender.sent_hooks.append(on_sent)

    async def access_lost(session: AsyncSession, user_id: int, now: datetime) -> None:
        await relay.staff_access_lost(session, wf, user_id, now=now)

    hub.roles.on_access_lost.append(access_lost)
    hub.on_start.append(_ensure_digest)
    hub.before_receiving.append(_refresh_roster)


async def _ensure_digest(hub: Hub) -> None:
    try:
        async with hub.db.transaction() as s:
            await digest.ensure_digest_scheduled(s, hub.get(Workflow), hub.clock.now())
    except Exception as exc:
        log.warning("flags: could not schedule the daily digest (%s)", type(exc).__name__)


async def _refresh_roster(hub: Hub) -> None:
    """At start: ask Telegram again about everyone the roster has in the counselors' group, so a
    member who left while the bot was away is no longer sent crisis alerts. Done before the bot
    receives (alerts go to the roster), so it asks about several members at once and is bounded
    in time; a member Telegram cannot be asked about keeps their place."""
    at_once = asyncio.Semaphore(ROSTER_CHECKS_AT_ONCE)

    async def check(uid: int) -> None:
        async with at_once:
            await hub.roles.in_counselor_group(uid)

    async def check_all() -> None:
        async with hub.db.session() as s:
            ids = await group_members(s)
        await asyncio.gather(*(check(uid) for uid in ids))

    try:
        await asyncio.wait_for(check_all(), ROSTER_CHECK_SECONDS)
    except Exception as exc:
        log.warning("flags: the group roster was not fully re-checked (%s)", type(exc).__name__)
