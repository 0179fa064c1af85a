"""Every table, imported in one place so metadata (and Alembic) sees them all."""

from bot.models.checkins import AssessmentResult, CheckinEntry, SobrietyState
from bot.models.core import (
    AuditEntry,
    BlockedChat,
    ChatState,
    Cohort,
    InboxUpdate,
    Invite,
    OutboxMessage,
    Patient,
    RuntimeSetting,
    ScheduledItem,
    StaffRole,
)
from bot.models.flags import (
    Flag,
    FlagCard,
    FlagEvent,
    OnCall,
    RelayConversation,
    RelayMessage,
    SafetyCheck,
)
from bot.models.roster import GroupMember
from bot.models.sos import PlanEntry, TipShown, UrgeSession
from bot.models.staff_messages import StaffMessage

__all__ = [
    "AssessmentResult",
    "AuditEntry",
    "BlockedChat",
    "ChatState",
    "CheckinEntry",
    "Cohort",
    "Flag",
    "FlagCard",
    "FlagEvent",
    "GroupMember",
    "InboxUpdate",
    "Invite",
    "OnCall",
    "OutboxMessage",
    "Patient",
    "RuntimeSetting",
    "PlanEntry",
    "RelayConversation",
    "RelayMessage",
    "SafetyCheck",
    "ScheduledItem",
    "SobrietyState",
    "StaffMessage",
    "StaffRole",
    "TipShown",
    "UrgeSession",
]
