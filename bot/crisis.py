"""The crisis reply (DESIGN §2.6): resources, the patient's plan, an honest line about counselors.

Everything here is built from `content/` alone: no database, no network. The handler sends this
reply before any database work, so it must not depend on anything that can be down.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from bot.clock import local_datetime
from bot.config import OfficeHours
from bot.content import DEFAULT_CONTENT_DIR, Content, Html, get_content

log = logging.getLogger(__name__)

FALLBACK_REGION = "intl"
DEFAULT_ZONE = "America/New_York"


@dataclass(frozen=True)
class Resource:
    id: str
    name: str
    how: str
    description: str


def _local(text: Any, lang: str) -> str:
    if isinstance(text, dict):
        return str(text.get(lang) or text.get("en") or next(iter(text.values()), ""))
    return "" if text is None else str(text)


@lru_cache(maxsize=32)
def _read_region(path: str, mtime: float) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("resources"), list):
        raise ValueError(f"{path}: no resources")
    return data


def _region_file(root: Path, region: str) -> dict[str, Any] | None:
    p = root / "resources" / f"{region.lower()}.yaml"
    if not p.is_file():
        return None
    return _read_region(str(p), p.stat().st_mtime)


def resources(region: str | None, lang: str = "en", content_dir: Path | None = None) -> list[Resource]:
    """Crisis resources for a region (unknown regions get the international list)."""
    root = Path(content_dir or DEFAULT_CONTENT_DIR)
    try:
        from bot.clinical import load_clinical

        return [
            Resource(r.id, r.name, r.how, r.description)
            for r in load_clinical(root).resources(region, lang)
        ]
    except Exception as exc:  # the clinical loader validates everything; a crisis must not wait on it
        log.warning("crisis: clinical loader unavailable (%s); reading resources directly", type(exc).__name__)
    data = _region_file(root, region or FALLBACK_REGION) or _region_file(root, FALLBACK_REGION)
    if data is None:
        return []
    return [
        Resource(
            str(r.get("id", "")),
            _local(r.get("name"), lang),
            _local(r.get("how"), lang),
            _local(r.get("description"), lang),
        )
        for r in data["resources"]
        if isinstance(r, dict)
    ]


# -- office hours -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    open_now: bool
    until: datetime | None  # when open: the end of the current block
    next_open: datetime | None  # when closed: the next opening


def availability(hours: OfficeHours, now: datetime, zone: str) -> Availability:
    """Whether counselors work now (in the clinic's zone), and until when or from when."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    today = local.date()
    for days, start, end in hours.blocks:
        if local.weekday() in days and start <= local.time().replace(tzinfo=None) < end:
            return Availability(True, local_datetime(today, end, zone), None)
    best: datetime | None = None
    for offset in range(0, 8):
        d = today + timedelta(days=offset)
        for days, start, _end in hours.blocks:
            if d.weekday() not in days:
                continue
            opening = local_datetime(d, start, zone)
            if opening > now and (best is None or opening < best):
                best = opening
        if best is not None:
            break
    return Availability(False, None, best)


def _when(c: Content, lang: str, instant: datetime, now: datetime, zone: str) -> str:
    tz = ZoneInfo(zone)
    local = instant.astimezone(tz)
    today = now.astimezone(tz).date()
    hhmm = local.strftime("%H:%M")
    if local.date() == today:
        return c.t("crisis.when_today", lang, time=hhmm)
    if local.date() == today + timedelta(days=1):
        return c.t("crisis.when_tomorrow", lang, time=hhmm)
    names = c.raw("crisis.weekdays", lang)
    return c.t("crisis.when_day", lang, day=str(names[local.weekday()]), time=hhmm)


def counselor_line(
    lang: str,
    office_hours: OfficeHours | None,
    now: datetime,
    *,
    zone: str = DEFAULT_ZONE,
    content: Content | None = None,
    prefix: str = "crisis.counselor",
) -> str:
    """The honest line about when a counselor will reach the patient.

    `prefix` chooses the wording: `<prefix>_now`, `<prefix>_later`, `<prefix>_unknown`.
    """
    c = content or get_content()
    if office_hours is None:
        return c.t(f"{prefix}_unknown", lang)
    a = availability(office_hours, now, zone)
    if a.open_now and a.until is not None:
        return c.t(f"{prefix}_now", lang, until=a.until.astimezone(ZoneInfo(zone)).strftime("%H:%M"))
    if a.next_open is not None:
        return c.t(f"{prefix}_later", lang, when=_when(c, lang, a.next_open, now, zone), hours=str(office_hours))
    return c.t(f"{prefix}_unknown", lang)


# -- the message ------------------------------------------------------------------------------


def crisis_message(
    lang: str = "en",
    region: str | None = "us",
    plan_lines: Sequence[str] | None = None,
    office_hours: OfficeHours | None = None,
    now: datetime | None = None,
    *,
    zone: str = DEFAULT_ZONE,
    content: Content | None = None,
    care_team: bool = True,
) -> str:
    """The whole crisis reply as HTML, from content alone (no database).

    `care_team=False` leaves out the line about the care team, for a reply sent before we know
    whether the person is a patient whose counselors are being told.
    """
    c = content or get_content()
    now = now or datetime.now(UTC)
    parts = [c.t("crisis.intro", lang)]
    lines = [
        c.t("crisis.resource", lang, name=Html(r.name), how=Html(r.how), description=Html(r.description))
        # resource texts are trusted HTML from content, validated by the clinical checker
        for r in resources(region, lang, c.root)
    ]
    if lines:
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("crisis.no_resources", lang))
    if plan_lines:
        parts.append(plan_block(lang, plan_lines, content=c))
    if care_team:
        parts.append(counselor_line(lang, office_hours, now, zone=zone, content=c))
    parts.append(c.t("crisis.closing", lang))
    return "\n\n".join(p for p in parts if p)


def plan_block(lang: str, plan_lines: Sequence[str], *, content: Content | None = None) -> str:
    """The patient's own plan lines (escaped: the patient typed them)."""
    c = content or get_content()
    body = "\n".join(c.t("crisis.plan_line", lang, line=str(x)) for x in plan_lines if str(x).strip())
    return c.t("crisis.plan_title", lang) + "\n" + body if body else ""


__all__ = [
    "Availability",
    "Resource",
    "availability",
    "counselor_line",
    "crisis_message",
    "plan_block",
    "resources",
]

