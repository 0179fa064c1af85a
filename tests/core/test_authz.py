"""The authorization matrix: every staff command and staff button, pressed or sent by every kind
of person, in a private chat and in the counselors' group. The role is re-checked on the server
each time; a refusal is polite and changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bot.core import staff
from bot.core.models import Cohort, StaffRole
from bot.enrolment.models import Invite
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.harness import BotHarness
from tests.onboarding_support import ADMIN, enrol, make_invite, running_bot, text_of

ADMIN_ONLY = "admin"
COUNSELORS = "counselor"

REFUSALS = ("only for the care team", "only counselors can do that here", "only an admin can do that")


async def _count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as s:
        q = select(func.count()).select_from(model)
        for w in where:
            q = q.where(w)
        return int((await s.execute(q)).scalar_one())


async def _people(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock) -> dict[str, Any]:
    people = {
        "patient": fake.add_user(first_name="Pia"),
        "counselor_role": fake.add_user(first_name="Cora", started=True),
        "counselor_group": fake.add_user(first_name="Gus", started=True),
        "facilitator": fake.add_user(first_name="Fitz", started=True),
        "stranger": fake.add_user(first_name="Stan"),
    }
    await enrol(h, fake, people["patient"], await make_invite(h, fake))
    async with db.transaction() as s:
        await staff.grant(s, actor_id=ADMIN, telegram_id=people["counselor_role"].id, role="counselor", now=clock.now())
        await staff.grant(s, actor_id=ADMIN, telegram_id=people["facilitator"].id, role="facilitator", now=clock.now())
    inc = fake.join(h.group, people["counselor_group"])
    if inc is not None:
        await h.push(inc)
    people["admin"] = h.admin
    return people


def _allowed(persona: str, needs: str, in_group: bool) -> bool:
    if persona == "admin":
        return True
    if needs == ADMIN_ONLY:
        return False
    return in_group or persona in ("counselor_role", "counselor_group")


async def _check_commands(
    h: BotHarness, fake: FakeTelegram, db: Database, people: dict[str, Any], *, in_group: bool
) -> None:
    chat_kw = {"chat": h.group} if in_group else {}
    for persona, user in sorted(people.items()):
        target = fake.add_user(first_name="Target", started=True).id
        commands = [
            (f"/cohort new Cohort {persona} {in_group}", ADMIN_ONLY, lambda: _count(db, Cohort)),
            ("/cohort list", ADMIN_ONLY, None),
            ("/invite Test cohort", COUNSELORS, lambda: _count(db, Invite)),
            ("/invites", COUNSELORS, None),
            (f"/grant {target} counselor", ADMIN_ONLY, lambda t=target: _count(db, StaffRole, StaffRole.telegram_id == t)),
            (f"/revoke {target} counselor", ADMIN_ONLY, lambda t=target: _count(db, StaffRole, StaffRole.telegram_id == t)),
            ("/staff", ADMIN_ONLY, None),
        ]
        for text, needs, measure in commands:
            before = await measure() if measure else None
            await h.send(user, text, **chat_kw)
            chat_id = h.group.id if in_group else user.id
            reply = text_of(fake.last(chat_id))
            refused = any(r in reply for r in REFUSALS)
            allowed = _allowed(persona, needs, in_group)
            where = "group" if in_group else "DM"
            assert refused != allowed, f"{persona} {text} in {where}: {reply!r}"
            if measure is not None:
                after = await measure()
                if not allowed:
                    assert after == before, f"{persona} {text} in {where} changed something"
                elif not text.startswith("/revoke"):
                    assert after == before + 1, f"{persona} {text} in {where} did nothing"


async def _check_buttons(
    h: BotHarness, fake: FakeTelegram, db: Database, people: dict[str, Any], *, in_group: bool
) -> None:
    chat_kw = {"chat": h.group} if in_group else {}
    for persona, user in sorted(people.items()):
        await make_invite(h, fake)
        async with db.session() as s:
            inv_id = (await s.execute(select(func.max(Invite.id)))).scalar_one()
        # The listing appears where the admin asked; anyone may press what they can see, and a
        # client may forge the data in their own chat.
        await h.send(h.admin, "/invites", **chat_kw)
        listing = fake.last(h.group.id if in_group else ADMIN)
        if not in_group and persona != "admin":
            await h.send(user, "/help")
            listing = fake.last(user.id)
        qid = await h.press(user, listing, f"inv:rev:{inv_id}")
        answer = (fake.callback_answer(qid) or {}).get("text") or ""
        allowed = _allowed(persona, COUNSELORS, in_group)
        async with db.session() as s:
            revoked = (await s.get(Invite, inv_id)).revoked_at is not None  # type: ignore[union-attr]
        where = "group" if in_group else "DM"
        assert revoked == allowed, f"{persona} inv:rev in {where}"
        if not allowed:
            assert any(r in answer for r in REFUSALS), f"{persona} inv:rev in {where}: {answer!r}"


async def test_authorization_matrix(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, group):
        people = await _people(h, fake, db, clock)
        await _check_commands(h, fake, db, people, in_group=False)
        await _check_buttons(h, fake, db, people, in_group=False)
        # Inside the counselors' group everyone present is a member, hence a counselor.
        for persona, user in people.items():
            if persona not in ("admin", "counselor_group"):
                inc = fake.join(group, user)
                if inc is not None:
                    await h.push(inc)
        await _check_commands(h, fake, db, people, in_group=True)
        await _check_buttons(h, fake, db, people, in_group=True)
        fake.assert_no_errors()


async def test_leaving_the_group_revokes_at_once(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, group):
        gus = fake.add_user(first_name="Gus", started=True)
        inc = fake.join(group, gus)
        if inc is not None:
            await h.push(inc)
        await h.send(gus, "/invites")
        assert not any(r in text_of(fake.last(gus.id)) for r in REFUSALS)
        inc = fake.leave(group, gus)
        if inc is not None:
            await h.push(inc)
        await h.send(gus, "/invites")
        assert any(r in text_of(fake.last(gus.id)) for r in REFUSALS)
        fake.assert_no_errors()


async def test_grant_and_revoke_refresh_the_menu(db: Database, clock: FrozenClock):
    async with running_bot(db, clock) as (h, fake, _group):
        cora = fake.add_user(first_name="Cora", started=True)
        await h.send(cora, "/start")  # she has a chat with the bot, so her menu can be set
        await h.send(ADMIN, f"/grant {cora.id} counselor")
        assert "is now a counselor" in text_of(fake.last(ADMIN))
        menu = [c["command"] for c in fake.commands(scope_type="chat", chat_id=cora.id)]
        assert "invite" in menu and "grant" not in menu
        await h.send(cora, "/invites")
        assert not any(r in text_of(fake.last(cora.id)) for r in REFUSALS)
        await h.send(ADMIN, "/staff")
        assert str(cora.id) in text_of(fake.last(ADMIN))
        await h.send(ADMIN, f"/revoke {cora.id} counselor")
        assert "no longer" in text_of(fake.last(ADMIN))
        await h.send(cora, "/invites")
        assert any(r in text_of(fake.last(cora.id)) for r in REFUSALS)
        for bad in ("/grant", "/grant abc counselor", f"/grant {cora.id} wizard", f"/grant {cora.id} admin", "/grant -5 counselor"):
            await h.send(ADMIN, bad)
            assert "is now" not in text_of(fake.last(ADMIN))
        fake.assert_no_errors()


async def test_a_known_member_is_answered_from_memory_only(db: Database, clock: FrozenClock):
    """The crisis reply asks whether the writer is staff before anything else: from what the bot
    saw of the counselors' group, never waiting for Telegram or the database."""
    from bot.core.roles import Roles
    from tests import escalation_support as sup

    asked: list[int] = []

    async def lookup(chat_id: int, user_id: int) -> str:
        asked.append(user_id)
        return "member" if user_id == 1 else "left"

    roles = Roles(db, sup.settings(counselor_chat_id=-100123), clock, lookup)
    assert not roles.known_member(1) and not roles.known_member(2)
    assert asked == []  # nothing asked to answer from memory
    assert await roles.in_counselor_group(1) and not await roles.in_counselor_group(2)
    assert roles.known_member(1) and not roles.known_member(2)
    roles.forget(1)
    assert not roles.known_member(1)
