"""Cohorts and invite codes (DESIGN §2.1).

An invite is an unguessable code carried in a deep link (`t.me/<bot>?start=<code>`). It expires
(14 days by default) and is single-use unless made reusable for a cohort. A code is checked when
someone opens the link and consumed when they give consent.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.audit import audit
from bot.core.models import Cohort, Patient
from bot.enrolment.models import Invite

DEFAULT_VALID_FOR = timedelta(days=14)
MAX_VALID_DAYS = 90
CODE_BYTES = 18  # 24 URL-safe characters
# Telegram's deep-link payload: A-Z a-z 0-9 _ - and at most 64 characters.
_PAYLOAD_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_COHORT_NAME = 80


class CohortError(ValueError):
    """A cohort request that cannot be done; `reason` is a short machine word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CohortInfo:
    id: int
    name: str
    archived: bool
    patients: int


@dataclass(frozen=True)
class InviteInfo:
    id: int
    code: str
    cohort_id: int | None
    cohort_name: str | None
    created_by: int
    created_at: datetime
    expires_at: datetime
    reusable: bool
    uses: int


@dataclass(frozen=True)
class InviteCheck:
    """Whether a code can be used: status is ok | unknown | expired | used | revoked."""

    status: str
    invite_id: int | None = None
    cohort_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# Cohorts ---------------------------------------------------------------------------------------


def clean_name(name: str) -> str:
    name = re.sub(r"\s+", " ", name).strip()
    if not name:
        raise CohortError("empty")
    if len(name) > MAX_COHORT_NAME:
        raise CohortError("too_long")
    return name


async def create_cohort(session: AsyncSession, name: str, *, actor_id: int, now: datetime) -> CohortInfo:
    name = clean_name(name)
    if await _cohort_by_name(session, name) is not None:
        raise CohortError("exists")
    c = Cohort(name=name, created_at=now)
    session.add(c)
    await session.flush()
    await audit(session, actor_id, "cohort.create", f"cohort:{c.id}", now=now)
    return CohortInfo(c.id, c.name, False, 0)


async def list_cohorts(session: AsyncSession, *, include_archived: bool = True) -> list[CohortInfo]:
    counts = dict(
        (
            await session.execute(
                select(Patient.cohort_id, func.count())
                .where(Patient.status.in_(("active", "inactive")))
                .group_by(Patient.cohort_id)
            )
        ).all()
    )
    q = select(Cohort).order_by(Cohort.id)
    if not include_archived:
        q = q.where(Cohort.archived_at.is_(None))
    return [
        CohortInfo(c.id, c.name, c.archived_at is not None, int(counts.get(c.id, 0)))
        for c in (await session.execute(q)).scalars()
    ]


async def find_cohort(session: AsyncSession, ref: str) -> CohortInfo | None:
    """A cohort by id ("3", "#3") or by name (case-insensitive)."""
    ref = ref.strip()
    c: Cohort | None = None
    digits = ref.removeprefix("#")
    if digits.isdigit() and len(digits) < 10:
        c = await session.get(Cohort, int(digits))
    if c is None and ref:
        c = await _cohort_by_name(session, ref)
    if c is None:
        return None
    return CohortInfo(c.id, c.name, c.archived_at is not None, 0)


async def rename_cohort(
    session: AsyncSession, cohort_id: int, name: str, *, actor_id: int, now: datetime
) -> CohortInfo:
    name = clean_name(name)
    c = await session.get(Cohort, cohort_id, with_for_update=True)
    if c is None:
        raise CohortError("unknown")
    other = await _cohort_by_name(session, name)
    if other is not None and other.id != c.id:
        raise CohortError("exists")
    c.name = name
    await audit(session, actor_id, "cohort.rename", f"cohort:{c.id}", now=now)
    return CohortInfo(c.id, c.name, c.archived_at is not None, 0)


async def archive_cohort(session: AsyncSession, cohort_id: int, *, actor_id: int, now: datetime) -> CohortInfo:
    """Archive a cohort: its open invites are revoked; its patients stay enrolled."""
    c = await session.get(Cohort, cohort_id, with_for_update=True)
    if c is None:
        raise CohortError("unknown")
    if c.archived_at is None:
        c.archived_at = now
        for inv in (
            await session.execute(select(Invite).where(Invite.cohort_id == c.id, Invite.revoked_at.is_(None)))
        ).scalars():
            inv.revoked_at = now
        await audit(session, actor_id, "cohort.archive", f"cohort:{c.id}", now=now)
    return CohortInfo(c.id, c.name, True, 0)


async def _cohort_by_name(session: AsyncSession, name: str) -> Cohort | None:
    q = select(Cohort).where(func.lower(Cohort.name) == name.strip().lower())
    return (await session.execute(q)).scalars().first()


# Invites ---------------------------------------------------------------------------------------


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def looks_like_code(payload: str) -> bool:
    return bool(_PAYLOAD_RE.match(payload))


def invite_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={code}"


def qr_png(link: str, *, scale: int = 8) -> bytes:
    """A QR code image (PNG) of the link."""
    import segno  # on first use, not with the module (start-up time)

    buf = io.BytesIO()
    segno.make(link, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


async def create_invite(
    session: AsyncSession,
    *,
    created_by: int,
    now: datetime,
    cohort_id: int | None,
    reusable: bool = False,
    valid_for: timedelta = DEFAULT_VALID_FOR,
) -> InviteInfo:
    """An invite into an open cohort: every patient joins one (an invite without a cohort, or
    into an unknown or archived cohort, is refused with `CohortError`)."""
    if cohort_id is None:
        raise CohortError("needs_cohort")
    c = await session.get(Cohort, cohort_id)
    if c is None:
        raise CohortError("unknown")
    if c.archived_at is not None:
        raise CohortError("archived")
    cohort_name = c.name
    valid_for = min(valid_for, timedelta(days=MAX_VALID_DAYS))
    inv = Invite(
        code=new_code(),
        cohort_id=cohort_id,
        created_by=created_by,
        created_at=now,
        expires_at=now + valid_for,
        reusable=reusable,
        uses=0,
    )
    session.add(inv)
    await session.flush()
    await audit(
        session, created_by, "invite.create", f"invite:{inv.id}",
        {"cohort_id": cohort_id, "reusable": reusable}, now=now,
    )
    return _info(inv, cohort_name)


async def list_invites(session: AsyncSession, now: datetime) -> list[InviteInfo]:
    """Invites that can still be used, newest first."""
    q = (
        select(Invite, Cohort.name)
        .outerjoin(Cohort, Cohort.id == Invite.cohort_id)
        .where(Invite.revoked_at.is_(None), Invite.expires_at > now)
        .order_by(Invite.id.desc())
    )
    out = []
    for inv, name in (await session.execute(q)).all():
        if inv.reusable or inv.uses == 0:
            out.append(_info(inv, name))
    return out


async def revoke_invite(session: AsyncSession, invite_id: int, *, actor_id: int, now: datetime) -> bool:
    """Revoke an invite; False when it does not exist or was already revoked."""
    inv = await session.get(Invite, invite_id, with_for_update=True)
    if inv is None or inv.revoked_at is not None:
        return False
    inv.revoked_at = now
    await audit(session, actor_id, "invite.revoke", f"invite:{inv.id}", now=now)
    return True


async def check_invite(session: AsyncSession, code: str, now: datetime) -> InviteCheck:
    if not looks_like_code(code):
        return InviteCheck("unknown")
    inv = (await session.execute(select(Invite).where(Invite.code == code))).scalar_one_or_none()
    return _check(inv, now, check_expiry=True)


async def consume_invite(session: AsyncSession, invite_id: int, now: datetime) -> InviteCheck:
    """Use an invite at consent (locked). Expiry is not re-checked: the link was valid when opened."""
    inv = await session.get(Invite, invite_id, with_for_update=True)
    result = _check(inv, now, check_expiry=False)
    if result.ok and inv is not None:
        inv.uses += 1
        inv.used_at = now
    return result


def _check(inv: Invite | None, now: datetime, *, check_expiry: bool) -> InviteCheck:
    if inv is None:
        return InviteCheck("unknown")
    if inv.revoked_at is not None:
        return InviteCheck("revoked", inv.id, inv.cohort_id)
    if not inv.reusable and inv.uses > 0:
        return InviteCheck("used", inv.id, inv.cohort_id)
    if check_expiry and inv.expires_at <= now:
        return InviteCheck("expired", inv.id, inv.cohort_id)
    return InviteCheck("ok", inv.id, inv.cohort_id)


def _info(inv: Invite, cohort_name: str | None) -> InviteInfo:
    return InviteInfo(
        id=inv.id,
        code=inv.code,
        cohort_id=inv.cohort_id,
        cohort_name=cohort_name,
        created_by=inv.created_by,
        created_at=inv.created_at,
        expires_at=inv.expires_at,
        reusable=inv.reusable,
        uses=inv.uses,
    )
