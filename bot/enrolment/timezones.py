"""Time zones for people: a short list of common zones, typed names, and shared locations.

Typed input is validated against the IANA database (zoneinfo). A shared location is resolved
offline with `timezonefinder`; nothing leaves the machine.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# (label, IANA zone): offered as buttons. Index positions are used in callback data, so append only.
COMMON_ZONES: list[tuple[str, str]] = [
    ("Eastern (New York)", "America/New_York"),
    ("Central (Chicago)", "America/Chicago"),
    ("Mountain (Denver)", "America/Denver"),
    ("Arizona (Phoenix)", "America/Phoenix"),
    ("Pacific (Los Angeles)", "America/Los_Angeles"),
    ("Alaska (Anchorage)", "America/Anchorage"),
    ("Hawaii (Honolulu)", "Pacific/Honolulu"),
    ("Puerto Rico", "America/Puerto_Rico"),
    ("London", "Europe/London"),
    ("Central Europe (Berlin)", "Europe/Berlin"),
]

_ABBREVIATIONS = {
    "et": "America/New_York",
    "est": "America/New_York",
    "edt": "America/New_York",
    "eastern": "America/New_York",
    "ct": "America/Chicago",
    "cst": "America/Chicago",
    "cdt": "America/Chicago",
    "central": "America/Chicago",
    "mt": "America/Denver",
    "mst": "America/Denver",
    "mdt": "America/Denver",
    "mountain": "America/Denver",
    "pt": "America/Los_Angeles",
    "pst": "America/Los_Angeles",
    "pdt": "America/Los_Angeles",
    "pacific": "America/Los_Angeles",
    "akst": "America/Anchorage",
    "hst": "Pacific/Honolulu",
    "utc": "UTC",
    "gmt": "Etc/GMT",
}

MAX_INPUT = 64


def is_valid_zone(zone: str) -> bool:
    if not zone or len(zone) > MAX_INPUT or zone.startswith("/") or ".." in zone:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@lru_cache(maxsize=1)
def _index() -> tuple[dict[str, str], dict[str, str]]:
    """Lower-cased full names, and lower-cased city names (last path part) to zones."""
    full: dict[str, str] = {}
    city: dict[str, str] = {}
    for z in sorted(available_timezones()):
        full[z.lower()] = z
        if "/" in z and not z.startswith(("Etc/", "SystemV/", "US/")):
            name = z.rsplit("/", 1)[1].replace("_", " ").lower()
            city.setdefault(name, z)
    return full, city


def parse_zone(text: str) -> str | None:
    """An IANA zone from what a person typed ("America/Chicago", "chicago", "new york", "PST")."""
    t = text.strip()
    if not t or len(t) > MAX_INPUT:
        return None
    low = re.sub(r"\s+", " ", t).lower()
    if low in _ABBREVIATIONS:
        return _ABBREVIATIONS[low]
    full, city = _index()
    key = low.replace(" ", "_")
    if key in full:
        return full[key]
    if low in city:
        return city[low]
    return None


@lru_cache(maxsize=1)
def _finder() -> object:
    from timezonefinder import TimezoneFinder

    return TimezoneFinder()


def zone_at(latitude: float, longitude: float) -> str | None:
    """The zone of a shared location, resolved offline; None when unknown or invalid."""
    if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
        return None
    try:
        zone = _finder().timezone_at(lng=longitude, lat=latitude)  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        return None
    return zone if zone and is_valid_zone(zone) else None


def label(zone: str) -> str:
    for lbl, z in COMMON_ZONES:
        if z == zone:
            return lbl
    return zone
