"""The crisis reply (DESIGN §2.6): resources, the patient's plan, an honest line about counselors.

Everything here is built from `content/` alone: no database, no network. The handler sends this
reply before any database work, so it must not depend on anything that can be down.

The resources fit the situation (`by_category` in content/resources/<region>.yaml): the most
important one leads the reply, and the part before the patient's own plan stays short enough to
read on a phone in one screen (`HEAD_MAX` characters, checked by `iop-bot content check`). Times
of the counselors' office hours are told in the patient's own zone, and the zone is named.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import Field, StringConstraints

from bot.core import timefmt
from bot.core.clinical import FALLBACK_LANGUAGE, Id, LocalText, Model, PlainText
from bot.core.rules_loader import Problem, Reader, loaded, resolved
from bot.core.vocabulary import Category
from bot.platform.clock import local_datetime
from bot.platform.config import OfficeHours
from bot.platform.content import DEFAULT_CONTENT_DIR, Content, Html, get_content

log = logging.getLogger(__name__)

FALLBACK_REGION = "intl"
DEFAULT_ZONE = "America/New_York"
# The crisis reply up to the patient's own plan, as the patient reads it (characters of text):
# one phone screen.
HEAD_MAX = 700


@dataclass(frozen=True)
class Resource:
    id: str
    name: str
    how: str
    description: str


# -- the region files, validated (`content/resources/<region>.yaml`) ---------------------------

Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ]{0,18}[0-9]$")]


class ResourceEntry(Model):
    id: Id
    name: LocalText
    how: LocalText
    description: LocalText
    phone: Phone | None = None
    sms: Phone | None = None
    url: Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}(/\S*)?$")] | None = None
    always_open: bool = False


class RegionFile(Model):
    region: Id
    name: PlainText
    resources: list[ResourceEntry] = Field(min_length=1)
    # Resource ids by flag category ("a+b": two at once), most important first; `default` for
    # any other category. Without it, every resource in file order.
    by_category: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}(\+[a-z][a-z0-9_]{0,39})?$")], list[Id]
    ] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CrisisResource:
    id: str
    name: str
    how: str
    description: str
    phone: str | None
    sms: str | None
    url: str | None
    always_open: bool


@dataclass(frozen=True)
class Regions:
    """Every region's crisis resources, validated."""

    by_region: Mapping[str, RegionFile]

    def resources(
        self, region: str | None, lang: str | None = None, category: str | None = None
    ) -> tuple[CrisisResource, ...]:
        """Crisis resources for ``region`` (e.g. ``us``); unknown regions get ``intl``. With
        ``category`` (a flag category, or ``default``), the ones the region lists for it (else
        its ``default``), in that order; without, every resource of the region."""
        key = (region or "").lower()
        region_file = self.by_region.get(key) or self.by_region[FALLBACK_REGION]
        chosen = list(region_file.resources)
        lists = region_file.by_category
        # "a+b" (two kinds at once) falls back to its first kind, then to `default`.
        ids = None if category is None else lists.get(category, lists.get(category.split("+")[0], lists.get("default")))
        if ids is not None:
            by_id = {r.id: r for r in region_file.resources}
            chosen = [by_id[i] for i in ids if i in by_id]
        return tuple(
            CrisisResource(
                id=r.id,
                name=_localized(r.name, lang),
                how=_localized(r.how, lang),
                description=_localized(r.description, lang),
                phone=r.phone,
                sms=r.sms,
                url=r.url,
                always_open=r.always_open,
            )
            for r in chosen
        )


def _localized(text: str | Mapping[str, str], lang: str | None) -> str:
    if isinstance(text, str):
        return text
    for code in (lang, (lang or "").split("-")[0], FALLBACK_LANGUAGE):
        if code and code in text:
            return text[code]
    return next(iter(text.values()))


def _read_regions(reader: Reader) -> dict[str, RegionFile]:
    regions: dict[str, RegionFile] = {}
    folder = reader.root / "resources"
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    names.add(FALLBACK_REGION)
    for name in sorted(names):
        rel = f"resources/{name}.yaml"
        model = reader.model(rel, RegionFile)
        if model is None:
            continue
        if model.region != name:
            reader.at(
                rel, ("region",), f"region {model.region!r} must match the file name {name!r}"
            )
        reader.unique(
            rel,
            [(("resources", i, "id"), r.id) for i, r in enumerate(model.resources)],
            "resource id",
        )
        known = {r.id for r in model.resources}
        for category, ids in model.by_category.items():
            if not ids:
                reader.at(rel, ("by_category", category), "lists no resource")
            for i, rid in enumerate(ids):
                if rid not in known:
                    reader.at(rel, ("by_category", category, i), f"no resource {rid!r} in this file")
        regions[name] = model
    return regions


def _read(root: Path) -> tuple[Regions | None, list[Problem]]:
    reader = Reader(root)
    return reader.result(lambda: Regions(_read_regions(reader)))


def load_regions(content_dir: Path | None = None) -> Regions:
    """Load and validate the crisis resources; cached per directory. Raises
    :class:`bot.core.rules_loader.ContentError` listing every problem when anything is wrong."""
    return _load_cached(resolved(content_dir or DEFAULT_CONTENT_DIR))


@lru_cache(maxsize=8)
def _load_cached(content_dir: Path) -> Regions:
    return loaded(_read(content_dir))


def check_regions(content_dir: Path) -> list[Problem]:
    """Every problem in the region files as (file, line, problem), for `iop-bot content check`."""
    return _read(Path(content_dir))[1]


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


def resources(
    region: str | None, lang: str = "en", content_dir: Path | None = None, category: str | None = None
) -> list[Resource]:
    """Crisis resources for a region (unknown regions get the international list): the ones the
    region lists for `category` (None: its `default`), most important first."""
    root = Path(content_dir or DEFAULT_CONTENT_DIR)
    try:
        return [
            Resource(r.id, r.name, r.how, r.description)
            for r in load_regions(root).resources(region, lang, category or "default")
        ]
    except Exception as exc:  # the loader validates every region; a crisis must not wait on it
        log.warning("crisis: resource loader unavailable (%s); reading resources directly", type(exc).__name__)
    data = _region_file(root, region or FALLBACK_REGION) or _region_file(root, FALLBACK_REGION)
    if data is None:
        return []
    items = [r for r in data["resources"] if isinstance(r, dict)]
    by_category = data.get("by_category") if isinstance(data.get("by_category"), dict) else {}
    key = category or "default"
    ids = by_category.get(key, by_category.get(key.split("+")[0], by_category.get("default")))
    if isinstance(ids, list):
        by_id = {str(r.get("id", "")): r for r in items}
        items = [by_id[str(i)] for i in ids if str(i) in by_id]
    return [
        Resource(
            str(r.get("id", "")),
            _local(r.get("name"), lang),
            _local(r.get("how"), lang),
            _local(r.get("description"), lang),
        )
        for r in items
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


def _zone_label(zone: str) -> str:
    """The zone as the patient reads it: its IANA name ("Europe/Berlin")."""
    return zone


def local_time(c: Content, lang: str, instant: datetime, zone: str) -> str:
    """A clock time as seen in `zone` (the patient's clock format), with the zone named:
    "3:00 pm your time (Europe/Berlin)"."""
    shown = timefmt.clock(c, lang, instant.astimezone(ZoneInfo(zone)))
    return c.t("crisis.zone_time", lang, time=shown, zone=_zone_label(zone))



def _when(c: Content, lang: str, instant: datetime, now: datetime, zone: str) -> str:
    """The day (today, tomorrow, a weekday) and time of `instant`, as seen in `zone`."""
    tz = ZoneInfo(zone)
    local = instant.astimezone(tz)
    today = now.astimezone(tz).date()
    at = Html(local_time(c, lang, instant, zone))
    if local.date() == today:
        return c.t("crisis.when_today", lang, time=at)
    if local.date() == today + timedelta(days=1):
        return c.t("crisis.when_tomorrow", lang, time=at)
    names = c.raw("crisis.weekdays", lang)
    return c.t("crisis.when_day", lang, day=str(names[local.weekday()]), time=at)


def counselor_line(
    lang: str,
    office_hours: OfficeHours | None,
    now: datetime,
    *,
    zone: str = DEFAULT_ZONE,
    content: Content | None = None,
    patient_zone: str | None = None,
    live: bool = False,
    crisis: bool = False,
) -> str:
    """The one honest sentence about when a counselor will reach the patient (`crisis.reach.*`),
    for every message that says so: the crisis reply, /talk, Talk to my counselor, the PHQ-9
    follow-up. From the configured office hours only: open now, "as soon as they can" with the
    end of today's hours; closed, the earliest they open; not known, "as soon as they can".

    `zone` is the clinic's (office hours are kept there); times are told in `patient_zone`
    (the patient's own; the clinic's when not given), with the zone named. `live`: a counselor
    is talking with the patient through the bot right now, so office hours do not apply.
    `crisis`: inside the crisis reply, which says first that the team is being told and, when
    nobody can answer soon, points back to the numbers above.
    """
    c = content or get_content()
    shown = patient_zone or zone
    a = None if live or office_hours is None else availability(office_hours, now, zone)
    if live:
        line = c.t("crisis.reach.live", lang)
    elif a is not None and a.open_now and a.until is not None:
        line = c.t("crisis.reach.now", lang, until=Html(local_time(c, lang, a.until, shown)))
    elif a is not None and a.next_open is not None:
        line = c.t("crisis.reach.later", lang, when=Html(_when(c, lang, a.next_open, now, shown)))
    else:
        line = c.t("crisis.reach.unknown", lang)
    if not crisis:
        return line
    soon = live or (a is not None and a.open_now)
    return " ".join([c.t("crisis.telling", lang), line] + ([] if soon else [c.t("crisis.until_then", lang)]))


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
    category: str | None = None,
    patient_zone: str | None = None,
    live: bool = False,
) -> str:
    """The whole crisis reply as HTML, from content alone (no database).

    `category`: the kind of crisis (a flag category), which chooses the resources; None gives
    the region's default list. The most important resource leads. `care_team=False` leaves out
    the line about the care team, for a reply sent before we know whether the person is a
    patient whose counselors are being told. `zone`, `patient_zone`, `live`: see
    `counselor_line`.
    """
    c = content or get_content()
    now = now or datetime.now(UTC)
    parts = [head(lang, region, category, content=c)]
    if plan_lines:
        parts.append(plan_block(lang, plan_lines, content=c))
    if care_team:
        parts.append(
            counselor_line(lang, office_hours, now, zone=zone, content=c, patient_zone=patient_zone, live=live, crisis=True)
        )
    parts.append(c.t("crisis.closing", lang))
    return "\n\n".join(p for p in parts if p)


def short_form(content: Content, lang: str) -> str:
    """What is sent instead when the crisis reply cannot be built (a gap in the words): the
    emergency numbers, in as few words as there are."""
    try:
        return content.t("common.error", lang)
    except Exception:
        return "988 · 911"


def head(lang: str, region: str | None, category: str | None, *, content: Content | None = None) -> str:
    """The crisis reply before the patient's plan: the most important resource first, a warm
    line, then the other resources for this kind of crisis."""
    c = content or get_content()
    found = resources(region, lang, c.root, category)
    # resource texts are trusted HTML from content, validated by the clinical checker
    if not found:
        return c.t("crisis.no_resources", lang) + "\n" + c.t("crisis.intro", lang)
    first, rest = found[0], found[1:]
    lead = c.t("crisis.lead", lang, name=Html(first.name), how=Html(first.how), description=Html(first.description))
    lines = [
        c.t("crisis.resource", lang, name=Html(r.name), how=Html(r.how), description=Html(r.description))
        for r in rest
    ]
    body = c.t("crisis.intro", lang) + ("\n" + "\n".join(lines) if lines else "")
    return lead + "\n\n" + body


SHORT_LIST = "sos"  # the key in `by_category` of the short list (/sos); without it, `default`


def short_lines(lang: str, region: str | None, *, content: Content | None = None) -> str:
    """The crisis lines in short (one line each, no description), for screens that are not a
    crisis reply but must always show where help answers at once (/sos): the region's `sos`
    list in content/resources, else its `default` list, the same resources as the crisis reply."""
    c = content or get_content()
    found = resources(region, lang, c.root, SHORT_LIST)
    if not found:
        return c.t("crisis.no_resources", lang)
    lines = [c.t("crisis.short_line", lang, name=Html(r.name), how=Html(r.how)) for r in found]
    return c.t("crisis.short_title", lang) + "\n" + "\n".join(lines)


def plan_block(lang: str, plan_lines: Sequence[str], *, content: Content | None = None) -> str:
    """The patient's own plan lines (escaped: the patient typed them)."""
    c = content or get_content()
    body = "\n".join(c.t("crisis.plan_line", lang, line=str(x)) for x in plan_lines if str(x).strip())
    return c.t("crisis.plan_title", lang) + "\n" + body if body else ""


def plain_length(text: str) -> int:
    """Characters of `text` (Telegram HTML) as the reader sees them."""
    return len(html.unescape(re.sub(r"<[^>]+>", "", text)))


def check_content(content_dir: Path) -> list[tuple[str, int, str]]:
    """The region files are valid, every kind of crisis gets resources, and the reply before the
    plan fits one screen (for `iop-bot content check`)."""
    c = get_content(content_dir)
    out: list[tuple[str, int, str]] = list(check_regions(content_dir))
    folder = Path(content_dir) / "resources"
    regions = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    for region in regions:
        rel = f"resources/{region}.yaml"
        data = _region_file(Path(content_dir), region) or {}
        for key in data.get("by_category") or {}:
            for part in str(key).split("+"):
                if key not in ("default", SHORT_LIST) and not Category.known(part):
                    out.append((rel, 0, f"by_category: unknown category {part!r} (see bot/core/vocabulary.py)"))
        combined = [str(k) for k in data.get("by_category") or {} if "+" in str(k)]
        for lang in c.languages:
            for category in (None, *Category, *combined):
                if not resources(region, lang, content_dir, category):
                    out.append((rel, 0, f"{lang}: no resource for {category or 'default'}"))
                    continue
                n = plain_length(head(lang, region, category, content=c) + "\n\n" + c.t("crisis.closing", lang))
                if n > HEAD_MAX:
                    out.append((rel, 0, f"{lang}: the crisis reply for {category or 'default'} is {n} characters before the plan (at most {HEAD_MAX})"))
    return out


__all__ = [
    "HEAD_MAX",
    "Availability",
    "CrisisResource",
    "Regions",
    "Resource",
    "availability",
    "check_regions",
    "counselor_line",
    "crisis_message",
    "head",
    "load_regions",
    "local_time",
    "plan_block",
    "plain_length",
    "resources",
    "short_form",
    "short_lines",
]

