"""The safety area on the hub: risk detection (unless the composition root provided one), the
timeout of an unanswered safety question, and which received updates are a crisis."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.hub import Hub
from bot.escalation.rules import Workflow
from bot.platform.models import ScheduledItem
from bot.safety.service import KIND_CONFIRM, Detection, confirm_timeout


def install(hub: Hub) -> None:
    detection = hub.get(Detection) if hub.provides(Detection) else hub.provide(Detection(content_dir=hub.settings.content_dir))

    async def timeout(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        # The workflow is escalation's, installed after this area: asked for when it runs.
        await confirm_timeout(session, hub.get(Workflow), detection, item, now)

    hub.sweeper.register(KIND_CONFIRM, timeout)
    hub.inbox.urgent = detection.crisis_update
