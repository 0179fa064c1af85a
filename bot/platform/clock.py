"""Time: an injectable clock and local-time helpers (DST-safe, IANA zones via zoneinfo)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class Clock:
    """The real clock. Services take `now` from a Clock so tests can freeze or move time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = ensure_utc(when)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now


def ensure_utc(dt: datetime) -> datetime:
    """Naive datetimes (as some drivers return them) are UTC; aware ones are converted."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def local_datetime(d: date, t: time, zone: str) -> datetime:
    """The UTC instant at which the wall clock in `zone` shows `t` on `d`.

    On a fall-back day an ambiguous time is taken at its first occurrence; on a spring-forward
    day a time inside the gap is moved forward by the gap's length (02:30 becomes 03:30), so a
    daily item still happens that day, once.
    """
    tz = ZoneInfo(zone)
    naive = datetime.combine(d, t)
    first = naive.replace(tzinfo=tz, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        # Non-existent local time: fold=0 uses the offset before the gap, which lands after it.
        utc = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return utc


def local_date(instant: datetime, zone: str) -> date:
    return ensure_utc(instant).astimezone(ZoneInfo(zone)).date()


def next_local_due(t: time, zone: str, after: datetime) -> datetime:
    """The first instant strictly after `after` at which the wall clock in `zone` shows `t`.

    Exactly one instant per local date, DST-safe.
    """
    after = ensure_utc(after)
    day = local_date(after, zone) - timedelta(days=1)
    for _ in range(4):
        due = local_datetime(day, t, zone)
        if due > after:
            return due
        day += timedelta(days=1)
    raise AssertionError("unreachable: a local time recurs within two days")


def local_text(instant: datetime, zone: str, fmt: str = "%a %d %b %H:%M") -> str:
    """An instant as the wall clock in `zone` shows it (for people; storage stays UTC)."""
    return ensure_utc(instant).astimezone(ZoneInfo(zone)).strftime(fmt)


def zone_name(zone: str, at: datetime) -> str:
    """A zone named for people: its IANA name and, when it differs, its abbreviation at `at`
    ("America/New_York (EST)", "UTC")."""
    abbr = ensure_utc(at).astimezone(ZoneInfo(zone)).tzname() or ""
    return zone if not abbr or abbr == zone or abbr.lstrip("+-").isdigit() else f"{zone} ({abbr})"
