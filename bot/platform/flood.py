"""Per-person limits, so that one person sending a flood cannot slow everyone else.

Each person has token buckets keyed by their Telegram id: one for messages (texts, commands,
captions, edits) and a more generous one for buttons. Enrolled patients and staff ("members")
get the members' message limit; anyone else ("strangers") the strictest one. Whether someone is a
member is only asked (of the database) when they are beyond the strangers' limit, so ordinary use
costs nothing.

What a flood loses is ordinary handling beyond the limit. Risk comes first and is never dropped:
the processor screens each text before it asks the limiter (handlers/screening.py), and a text with a
risk signal from a member is handled whatever the limit says. A stranger's crisis text beyond
the limit is handled once per flood (the resources), the rest of a stranger's flood is dropped
without a reply. A member's flood is answered once, with one short line.

A flood ends once the bucket it emptied has had time to fill again; then one log line says how
many updates it dropped (the id shortened, never what was written). Pure bookkeeping: no
Telegram types, no database; time comes from `now` (monotonic seconds, injectable).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MEMBER_CACHE_SECONDS = 600.0  # a member stays known this long
STRANGER_CACHE_SECONDS = 30.0  # a stranger is asked about again after this (they may enrol)


@dataclass(frozen=True)
class Rate:
    """`burst` updates at once, then one every `every` seconds."""

    burst: float
    every: float

    @property
    def refill_seconds(self) -> float:
        return self.burst * self.every


class Kind(enum.Enum):
    MESSAGE = "message"
    BUTTON = "button"


class Verdict(enum.Enum):
    HANDLE = "handle"  # within the limit (or risk, which always is)
    DROP = "drop"  # beyond the limit: marked done, not handled, no reply
    DROP_TELL = "drop_tell"  # the first drop of a member's flood: tell them once
    ASK = "ask"  # beyond the strangers' limit and not known whether a member: ask, then again


@dataclass
class _Bucket:
    tokens: float
    at: float

    def refill(self, rate: Rate, now: float) -> None:
        if now > self.at:
            self.tokens = min(rate.burst, self.tokens + (now - self.at) / rate.every)
        self.at = now

    def take(self) -> bool:
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class _Flood:
    started: float
    until: float  # the flood is over once nothing was dropped for the emptied bucket's refill
    dropped: int = 0
    told: bool = False
    risk_passed: bool = False


@dataclass
class _Person:
    stranger: _Bucket
    member: _Bucket
    buttons: _Bucket
    member_known: bool | None = None
    known_until: float = 0.0
    flood: _Flood | None = None
    last_seen: float = 0.0


def mask(user_id: int) -> str:
    """Enough of an id to correlate log lines, not to identify anyone."""
    return "…" + str(user_id)[-3:]


@dataclass
class FloodLimiter:
    members: Rate
    strangers: Rate
    buttons: Rate
    now: Callable[[], float] = time.monotonic
    _people: dict[int, _Person] = field(default_factory=dict)
    _next_sweep: float = 0.0

    def membership(self, user_id: int) -> bool | None:
        """Whether `user_id` is known to be a member (None: not known, or known too long ago)."""
        p = self._people.get(user_id)
        if p is None or p.member_known is None or self.now() >= p.known_until:
            return None
        return p.member_known

    def remember(self, user_id: int, member: bool) -> None:
        p = self._person(user_id, self.now())
        p.member_known = member
        p.known_until = self.now() + (MEMBER_CACHE_SECONDS if member else STRANGER_CACHE_SECONDS)

    def check(self, user_id: int, kind: Kind, *, risk: bool = False, urgent: bool = False) -> Verdict:
        """Count one update of `kind` from `user_id`. `risk`: the text carries a risk signal
        (handled for members whatever the limit); `urgent`: at high or crisis (also handled once
        per flood for strangers)."""
        now = self.now()
        self.sweep(now)
        p = self._person(user_id, now)
        p.last_seen = now
        if kind is Kind.BUTTON:
            p.buttons.refill(self.buttons, now)
            if p.buttons.take():
                return Verdict.HANDLE
            return self._drop(user_id, p, now, self.buttons, member=self.membership(user_id) is not False)
        p.member.refill(self.members, now)
        p.stranger.refill(self.strangers, now)
        member = self.membership(user_id)
        within_strangers = p.stranger.tokens >= 1
        if not within_strangers and member is None and not risk:
            return Verdict.ASK  # nothing taken: asked again once it is known
        within_members = p.member.tokens >= 1
        p.member.take()
        p.stranger.take()
        if member is not False and (risk or within_members):
            return Verdict.HANDLE  # a member, or not known yet while within the strangers' limit
        if member is False and within_strangers:
            return Verdict.HANDLE
        if member is None:
            return Verdict.HANDLE  # risk from someone not yet known: handled
        if member:
            return self._drop(user_id, p, now, self.members, member=True)
        # A stranger beyond their limit.
        rate = self.strangers
        if urgent and (p.flood is None or not p.flood.risk_passed):
            flood = self._flood(p, now, rate)
            flood.risk_passed = True
            return Verdict.HANDLE
        return self._drop(user_id, p, now, rate, member=False)

    def _flood(self, p: _Person, now: float, rate: Rate) -> _Flood:
        if p.flood is None:
            p.flood = _Flood(started=now, until=now + rate.refill_seconds)
        return p.flood

    def _drop(self, user_id: int, p: _Person, now: float, rate: Rate, *, member: bool) -> Verdict:
        fresh = p.flood is None or p.flood.dropped == 0
        flood = self._flood(p, now, rate)
        flood.dropped += 1
        flood.until = max(flood.until, now + rate.refill_seconds)
        if fresh:
            log.warning("flood: user %s is beyond the %s limit; updates beyond it are not handled", mask(user_id),
                        "members'" if member else "strangers'")
        if member and not flood.told:
            flood.told = True
            return Verdict.DROP_TELL
        return Verdict.DROP

    def sweep(self, now: float | None = None, *, force: bool = False) -> None:
        """End the floods that are over (one log line each) and forget people long quiet."""
        now = self.now() if now is None else now
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        longest = max(self.members.refill_seconds, self.strangers.refill_seconds, self.buttons.refill_seconds)
        for user_id, p in list(self._people.items()):
            if p.flood is not None and (force or now >= p.flood.until):
                self._end(user_id, p.flood, now)
                p.flood = None
            if p.flood is None and now - p.last_seen > max(longest, MEMBER_CACHE_SECONDS):
                del self._people[user_id]

    def flush(self) -> None:
        """At stop: every flood still going gets its log line."""
        self.sweep(force=True)

    @staticmethod
    def _end(user_id: int, flood: _Flood, now: float) -> None:
        if flood.dropped:
            log.warning(
                "flood: user %s: %d updates beyond the limit were not handled (over %.0fs)",
                mask(user_id),
                flood.dropped,
                max(0.0, now - flood.started),
            )

    def _person(self, user_id: int, now: float) -> _Person:
        p = self._people.get(user_id)
        if p is None:
            p = self._people[user_id] = _Person(
                stranger=_Bucket(self.strangers.burst, now),
                member=_Bucket(self.members.burst, now),
                buttons=_Bucket(self.buttons.burst, now),
                last_seen=now,
            )
        return p

    def flooding(self, user_id: int) -> bool:
        p = self._people.get(user_id)
        return p is not None and p.flood is not None
