"""My plan: a patient's relapse-prevention and safety plan, in sections (DESIGN §2.5).

Entries are free text, stored encrypted. People to call (and professional contacts) carry a
phone number, validated and written in international form (`+1 555 123 4567`) so Telegram
shows it as a tappable number. The plan is rendered as readable HTML, split under Telegram's
limit; 988 is always among the professional contacts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.platform.content import Content
from bot.platform.text import pack
from bot.recovery.models import PlanEntry
from bot.recovery.rules import PlanRules

SECTIONS: tuple[str, ...] = (
    "warning_signs",
    "triggers",
    "coping",
    "reasons",
    "people",
    "places",
    "professionals",
)
# In a hard moment the reasons and what helps come first.
SOS_ORDER: tuple[str, ...] = ("reasons", "coping", "people", "places", "professionals", "warning_signs", "triggers")
# Sections whose entries are a name and a phone number (required for people).
PHONE_SECTIONS: dict[str, bool] = {"people": True, "professionals": False}
RENDER_LIMIT = 4000

_SPACE_RE = re.compile(r"\s+")
# Separators left around a name once its phone number is taken out ("Sam (sponsor): …").
_NAME_TRIM = " \t,;:-–—/|."
_SEPARATORS = ",;:-–—/|."
_PAIRS = {"(": ")", "[": "]", "{": "}"}
# A separator left just inside a bracket ("(sponsor, )"), or brackets left with nothing inside.
_PHONE_START_RE = re.compile(r"\+|\(\s*\d|\d")
_INNER_SEP_RE = re.compile(r"\s*[,;:\-–—/|]+\s*(?=[)\]}])|(?<=[(\[{])\s*[,;:\-–—/|]+\s*")
_EMPTY_BRACKETS_RE = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}")


class PlanError(ValueError):
    """An entry that cannot be saved; `code` names the sentence `plan.error.<code>`."""

    def __init__(self, code: str, **kwargs: Any) -> None:
        super().__init__(code)
        self.code = code
        self.kwargs = kwargs


@dataclass(frozen=True)
class Entry:
    id: int
    section: str
    text: str
    phone: str | None


@dataclass(frozen=True)
class Plan:
    entries: dict[str, list[Entry]] = field(default_factory=dict)

    def section(self, name: str) -> list[Entry]:
        return self.entries.get(name, [])

    @property
    def is_empty(self) -> bool:
        return not any(self.entries.values())

    @property
    def people(self) -> list[Entry]:
        return self.section("people")


# ---------------------------------------------------------------------------------------
# Validation (pure)
# ---------------------------------------------------------------------------------------


def format_phone(raw: str, region: str) -> str | None:
    """A phone number in international form with spaces (`+1 555 123 4567`), or None."""
    import phonenumbers  # on first use, not with the module (start-up time)

    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_possible_number_with_reason(number) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return text.replace("-", " ")


def _clean(raw: str) -> str:
    return _SPACE_RE.sub(" ", raw.replace("\x00", "")).strip()


def _balanced(text: str) -> str:
    """`text` without brackets that have no partner (a bracket the number was taken from)."""
    drop: set[int] = set()
    stack: list[tuple[str, int]] = []
    closers = {v: k for k, v in _PAIRS.items()}
    for i, ch in enumerate(text):
        if ch in _PAIRS:
            stack.append((ch, i))
        elif ch in closers:
            if stack and stack[-1][0] == closers[ch]:
                stack.pop()
            else:
                drop.add(i)
    drop.update(i for _, i in stack)
    return "".join(ch for i, ch in enumerate(text) if i not in drop)


def _name_part(rest: str) -> str:
    """The name left once the phone number is taken out: brackets kept whole and balanced
    ("Sam (sponsor)"), separators and empty brackets the number leaves behind removed."""
    name = _clean(rest)
    while True:
        before = name
        name = _INNER_SEP_RE.sub("", name)
        name = _clean(_EMPTY_BRACKETS_RE.sub(" ", name))
        name = _balanced(name).strip(_NAME_TRIM)
        if name == before:
            return name


def validate_entry(section: str, raw: str | None, r: PlanRules) -> tuple[str, str | None]:
    """The entry as stored: (text, phone). Raises PlanError with a reason a person can read."""
    if section not in SECTIONS:
        raise PlanError("unknown_section")
    text = _clean(raw or "")
    if not any(ch.isalnum() for ch in text):
        raise PlanError("empty")
    if len(text) > r.max_entry_chars:
        raise PlanError("too_long", limit=r.max_entry_chars, length=len(text))
    if section not in PHONE_SECTIONS:
        return text, None
    required = PHONE_SECTIONS[section]
    import phonenumbers

    match = next(
        iter(phonenumbers.PhoneNumberMatcher(text, r.default_phone_region, leniency=phonenumbers.Leniency.POSSIBLE)),
        None,
    )
    if match is None:
        if any(ch.isdigit() for ch in text) and sum(ch.isdigit() for ch in text) >= 3:
            raise PlanError("bad_number")
        if required:
            raise PlanError("no_number")
        return text, None
    # The matcher may take a bracketed word before the number as part of it ("Sam (X) (617) …"):
    # the number starts at its first digit, "+" or bracketed digit.
    lead = _PHONE_START_RE.search(match.raw_string)
    skip = lead.start() if lead else 0
    phone = format_phone(match.raw_string[skip:], r.default_phone_region)
    if phone is None:
        raise PlanError("bad_number")
    name = _name_part(text[: match.start + skip] + " " + text[match.end :])
    if not name:
        raise PlanError("no_name")
    if any(ch.isdigit() for ch in name) and sum(ch.isdigit() for ch in name) >= 3:
        raise PlanError("bad_number")
    return name, phone


# ---------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------


def _entry(row: PlanEntry) -> Entry:
    return Entry(row.id, row.section, row.text, row.phone)


async def get_plan(session: AsyncSession, patient_id: int) -> Plan:
    rows = (
        await session.execute(
            select(PlanEntry)
            .where(PlanEntry.patient_id == patient_id)
            .order_by(PlanEntry.position, PlanEntry.id)
        )
    ).scalars()
    entries: dict[str, list[Entry]] = {s: [] for s in SECTIONS}
    for row in rows:
        if row.section in entries:
            entries[row.section].append(_entry(row))
    return Plan(entries)


async def get_entry(session: AsyncSession, patient_id: int, entry_id: int) -> Entry | None:
    row = await session.get(PlanEntry, entry_id)
    return None if row is None or row.patient_id != patient_id else _entry(row)


async def count(session: AsyncSession, patient_id: int, section: str) -> int:
    q = select(func.count()).select_from(PlanEntry).where(
        PlanEntry.patient_id == patient_id, PlanEntry.section == section
    )
    return int((await session.execute(q)).scalar_one())


async def add_entry(
    session: AsyncSession, r: PlanRules, patient_id: int, section: str, raw: str | None, now: datetime
) -> Entry:
    text, phone = validate_entry(section, raw, r)
    n = await count(session, patient_id, section)
    if n >= r.max_entries_per_section:
        raise PlanError("full", limit=r.max_entries_per_section)
    row = PlanEntry(
        patient_id=patient_id,
        section=section,
        text=text,
        phone=phone,
        position=n,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return _entry(row)


async def edit_entry(
    session: AsyncSession, r: PlanRules, patient_id: int, entry_id: int, raw: str | None, now: datetime
) -> Entry:
    row = (
        await session.execute(
            select(PlanEntry).where(PlanEntry.id == entry_id, PlanEntry.patient_id == patient_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise PlanError("not_found")
    text, phone = validate_entry(row.section, raw, r)
    row.text, row.phone, row.updated_at = text, phone, now
    await session.flush()
    return _entry(row)


async def remove_entry(session: AsyncSession, patient_id: int, entry_id: int) -> bool:
    res = await session.execute(
        delete(PlanEntry).where(PlanEntry.id == entry_id, PlanEntry.patient_id == patient_id)
    )
    return bool(res.rowcount)


async def delete_plan(session: AsyncSession, patient_id: int) -> int:
    """Erase a patient's whole plan (for data deletion)."""
    res = await session.execute(delete(PlanEntry).where(PlanEntry.patient_id == patient_id))
    return res.rowcount or 0


# ---------------------------------------------------------------------------------------
# Rendering (HTML, escaped)
# ---------------------------------------------------------------------------------------


def entry_line(entry: Entry) -> str:
    """One entry as HTML: the text escaped, the number as Telegram recognises it."""
    text = html.escape(entry.text, quote=False)
    return f"{text} — {entry.phone}" if entry.phone else text


def entry_line_plain(entry: Entry) -> str:
    """One entry as plain text (for a template that escapes it)."""
    return f"{entry.text} — {entry.phone}" if entry.phone else entry.text


def render_people(content: Content, lang: str, plan: Plan) -> str:
    """Call someone: the people in the plan (or an invitation to add them), then 988."""
    lines = [content.t("plan.call.title", lang)]
    if plan.people:
        lines += [f"• {entry_line(e)}" for e in plan.people]
    else:
        lines.append(content.t("plan.call.none", lang))
    pros = [e for e in plan.section("professionals") if e.phone]
    lines += [f"• {entry_line(e)}" for e in pros]
    lines.append(f"• {content.t('plan.always_988', lang)}")
    return "\n".join(lines)


def render_plan(
    content: Content,
    lang: str,
    plan: Plan,
    *,
    limit: int = RENDER_LIMIT,
    order: Sequence[str] = SECTIONS,
) -> list[str]:
    """The whole plan as one readable message (more parts only if it is very long)."""
    blocks: list[list[str]] = [[content.t("plan.view.title", lang)]]
    if plan.is_empty:
        blocks.append([content.t("plan.view.empty", lang)])
    for section in order:
        entries = plan.section(section)
        if not entries and section != "professionals":
            continue
        lines = [content.t(f"plan.sections.{section}.title", lang)]
        lines += [f"• {entry_line(e)}" for e in entries]
        if section == "professionals":
            lines.append(f"• {content.t('plan.always_988', lang)}")
        blocks.append(lines)
    return pack(["\n".join(b) for b in blocks], limit=limit)


def crisis_lines(plan: Plan) -> list[str]:
    """Plain lines (unescaped) for the crisis reply: reasons, people to call, what helps, places."""
    lines: list[str] = []
    for section in ("reasons", "people", "coping", "places", "professionals"):
        lines += [entry_line_plain(e) for e in plan.section(section)]
    return lines
