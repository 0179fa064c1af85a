"""Every table, imported in one place so metadata (and Alembic) sees them all."""

from bot.models.core import (
    AuditEntry,
    BlockedChat,
    ChatState,
    Cohort,
    InboxUpdate,
    Invite,
    OutboxMessage,
    Patient,
    ScheduledItem,
    StaffRole,
)
from bot.models.flags import Flag, FlagEvent

__all__ = [
    "AuditEntry",
    "BlockedChat",
    "ChatState",
    "Cohort",
    "Flag",
    "FlagEvent",
    "InboxUpdate",
    "Invite",
    "OutboxMessage",
    "Patient",
    "ScheduledItem",
    "StaffRole",
]
