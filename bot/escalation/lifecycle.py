"""A flag's life: open → claimed → resolved (DESIGN §2.6), as one table of the moves allowed.

A first trigger opens a flag; a counselor claims it; a counselor resolves it, claimed or not
(resolving an open flag also claims it: the one who resolved it is the one who took it). Nothing
moves a flag back: a new trigger after resolution opens a new flag.

Each state has one timestamp, and the counselor who brought the flag there (`STAMPS`); each move
records its event and its audit entry (the first trigger is the event of an opening). Every
change of a flag's status goes through `open_flag` or `move`; a move the table does not allow is
refused with `Refused`, whose `reason` the handlers answer (`already_claimed`, `resolved`).
What a move sets off besides (the group's posts, re-notification, the follow-up) is the
service's (`bot/escalation/service.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bot.core.audit import audit
from bot.core.vocabulary import FlagStatus
from bot.escalation.models import Flag, FlagEvent


class Move(StrEnum):
    OPEN = "open"
    CLAIM = "claim"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[FlagStatus]  # the statuses it may start from (none: a new flag)
    target: FlagStatus
    event: str | None  # the FlagEvent kind it records (an opening's event is its first trigger)
    audit: str | None  # the audit action it records
    # The counselor who holds the target state doing it again gets the flag as it is (a second
    # tap on Claim), not a refusal.
    again_by_holder: bool = False


TRANSITIONS: Mapping[Move, Transition] = {
    Move.OPEN: Transition(frozenset(), FlagStatus.OPEN, None, None),
    Move.CLAIM: Transition(frozenset({FlagStatus.OPEN}), FlagStatus.CLAIMED, "claim", "flag.claim", again_by_holder=True),
    Move.RESOLVE: Transition(frozenset({FlagStatus.OPEN, FlagStatus.CLAIMED}), FlagStatus.RESOLVED, "resolve", "flag.resolve"),
}


@dataclass(frozen=True)
class Stamp:
    """Where a state keeps when the flag reached it and who brought it there."""

    at: InstrumentedAttribute[datetime | None] | InstrumentedAttribute[datetime]
    by: InstrumentedAttribute[int | None] | None = None
    name: InstrumentedAttribute[str | None] | None = None


STAMPS: Mapping[FlagStatus, Stamp] = {
    FlagStatus.OPEN: Stamp(Flag.opened_at),
    FlagStatus.CLAIMED: Stamp(Flag.claimed_at, Flag.claimed_by, Flag.claimed_by_name),
    FlagStatus.RESOLVED: Stamp(Flag.resolved_at, Flag.resolved_by, Flag.resolved_by_name),
}

# Why a move is refused, by the status the flag is in (what the handlers answer).
REFUSALS: Mapping[FlagStatus, str] = {
    FlagStatus.OPEN: "already_open",
    FlagStatus.CLAIMED: "already_claimed",
    FlagStatus.RESOLVED: "resolved",
}

NAME_MAX = 64  # the column's size


class Refused(Exception):
    """A move the table does not allow from the flag's status."""

    def __init__(self, action: Move, status: FlagStatus) -> None:
        super().__init__(f"flag {status}: {action} is not allowed")
        self.action = action
        self.status = status
        self.reason = REFUSALS[status]


def allowed(status: str, action: Move) -> bool:
    """Whether `action` may start from a flag in `status`."""
    return status in TRANSITIONS[action].sources


def holder(flag: Flag, status: FlagStatus) -> int | None:
    """Who brought the flag to `status` (None for an opening, or not known)."""
    by = STAMPS[status].by
    return None if by is None else getattr(flag, by.key)


def open_flag(flag: Flag, now: datetime) -> None:
    """A new flag enters its life open, stamped `now` (before it is added to the session)."""
    _enter(flag, TRANSITIONS[Move.OPEN].target, None, None, now)


async def move(
    session: AsyncSession, flag: Flag, action: Move, *, actor_id: int, actor_name: str | None, now: datetime
) -> bool:
    """Move a (locked) flag as the table says, with its stamps, event and audit entry.

    True when the flag moved; False when the counselor holding it repeated a move the table lets
    the holder repeat (nothing changes). `Refused` for any other move not allowed from its status.
    """
    t = TRANSITIONS[action]
    status = FlagStatus(flag.status)
    if status not in t.sources:
        if t.again_by_holder and status is t.target and holder(flag, status) == actor_id:
            return False
        raise Refused(action, status)
    _enter(flag, t.target, actor_id, (actor_name or str(actor_id))[:NAME_MAX], now)
    flag.rev = (flag.rev or 0) + 1
    if t.event is not None:
        session.add(FlagEvent(flag_id=flag.id, at=now, kind=t.event, actor_id=actor_id))
    if t.audit is not None:
        await audit(session, actor_id, t.audit, f"flag:{flag.id}", now=now)
    return True


def _enter(flag: Flag, target: FlagStatus, actor_id: int | None, name: str | None, now: datetime) -> None:
    """Set the status, and stamp every state up to it not stamped yet: resolving an open flag
    stamps its claim too."""
    order = list(FlagStatus)
    for state in order[: order.index(target) + 1]:
        stamp = STAMPS[state]
        if getattr(flag, stamp.at.key) is not None:
            continue
        setattr(flag, stamp.at.key, now)
        if stamp.by is not None:
            setattr(flag, stamp.by.key, actor_id)
        if stamp.name is not None:
            setattr(flag, stamp.name.key, name)
    flag.status = target
