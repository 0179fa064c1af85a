"""A counselor removed from the counselors' group loses access at once, even with a granted role
(issue 12, item 10), end to end: the real Application over HTTP against the fake Bot API.

Being removed (kicked, leaving, a leave seen only as a service message, or a membership check at
start that finds them gone) ends the granted counselor role: audited, every admin told. Every
counselor-only button and command refuses them, and crisis DMs no longer reach them. An admin who
grants the role again afterwards decides they are a counselor outside the group: that sticks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.models import AuditEntry, GroupMember, StaffRole
from bot.escalation.buttons import FLAG
from bot.escalation.models import Flag
from bot.platform.content import get_content
from fakeapi import FakeTelegram
from handlers import COUNSELOR_COMMANDS
from tests import escalation_support as sup
from tests.harness import BotHarness

pytestmark = pytest.mark.usefixtures("stub_detector")

C = get_content()
NOT_ALLOWED = C.t("common.not_allowed", "en")
NOT_ALLOWED_GROUP = C.t("common.not_allowed_group", "en")


def text(msg: Any) -> str:
    return msg.plain_text or ""


async def _kicked(h: BotHarness, fake: FakeTelegram, who: Any) -> None:
    await h.push(fake.set_member_status(h.group, who, "kicked", by=h.admin))


async def _left(h: BotHarness, fake: FakeTelegram, who: Any) -> None:
    fake.leave(h.group, who)  # a chat_member update and a left_chat_member service message
    await h.settle()


async def _left_bot_not_admin(h: BotHarness, fake: FakeTelegram, who: Any) -> None:
    h.group.bot_status = "member"  # no chat_member updates: only the service message
    assert fake.leave(h.group, who) is None
    await h.settle()


async def _gone_while_away(h: BotHarness, fake: FakeTelegram, who: Any) -> None:
    await h.stop()
    h.group.members[who.id] = "kicked"
    await h.start()  # the roster is checked again at start: Telegram says they are out
    await h.outbox_idle()  # what the check at start sent (the admins' note) has gone out


REMOVALS: dict[str, Callable[[BotHarness, FakeTelegram, Any], Awaitable[None]]] = {
    "kicked": _kicked,
    "left": _left,
    "left_service_message_only": _left_bot_not_admin,
    "found_gone_at_start": _gone_while_away,
}


async def _command(h: BotHarness, fake: FakeTelegram, who: Any, command: str, code: str, flag_id: int) -> str:
    args = {"patient": f" {code}", "flag": f" {flag_id}"}.get(command, "")
    await h.send(who, f"/{command}{args}")
    return text(fake.last(who.id))


async def _setup(h: BotHarness, fake: FakeTelegram) -> tuple[Any, Any, int, Any]:
    """A patient with an open crisis flag, and Dana: in the group, granted the counselor role by
    an admin, on call. Returns (patient, Dana, flag id, the group post)."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(h.db, h.clock.now(), telegram_id=u.id, code="P-4711", first_name="Jordan")
    dana = fake.add_user(first_name="Dana", username="dana_c", started=True)
    await h.push(fake.join(h.group, dana))
    await h.send(h.admin, f"/grant {dana.id} counselor")
    assert "is now a counselor" in text(fake.last(h.admin.id))
    await h.send(dana, "/oncall me")
    await h.send(u, "I'm going to end it all tonight")
    post = next(m for m in reversed(fake.sent(h.group.id)) if any(d.startswith("fl:claim:") for d in m.callback_data))
    flag_id = int(next(d for d in post.callback_data if d.startswith("fl:claim:")).split(":")[2])
    # Before the removal Dana is a counselor: /flags answers her.
    assert "P-4711" in await _command(h, fake, dana, "flags", "P-4711", flag_id)
    return u, dana, flag_id, post


@pytest.mark.parametrize("removal", list(REMOVALS))
async def test_a_removed_counselor_loses_every_counselor_action_at_once(
    h: BotHarness, fake: FakeTelegram, removal: str
) -> None:
    u, dana, flag_id, post = await _setup(h, fake)
    dms_before = len(fake.sent(dana.id))

    await REMOVALS[removal](h, fake, dana)

    # The granted role is gone, audited as the bot's own act, and the admin was told once.
    async with h.db.session() as s:
        roles = set((await s.execute(select(StaffRole.role).where(StaffRole.telegram_id == dana.id))).scalars())
        revokes = list(
            (await s.execute(select(AuditEntry).where(AuditEntry.action == "staff.revoke", AuditEntry.subject == f"user:{dana.id}"))).scalars()
        )
        roster = (await s.execute(select(GroupMember.is_member).where(GroupMember.telegram_id == dana.id))).scalar_one()
    assert roles == set() and roster is False
    assert [(a.actor_id, a.detail) for a in revokes] == [(None, {"role": "counselor", "reason": "left_group"})]
    told = [text(m) for m in fake.sent(h.admin.id) if "left or was removed" in text(m)]
    assert len(told) == 1 and str(dana.id) in told[0] and f"/grant {dana.id} counselor" in told[0]

    # Every flag button refuses her, in the group and in her private chat.
    for action in FLAG.codecs:
        qid = await h.press(dana, post, action.pack(flag_id))
        assert (fake.callback_answer(qid) or {}).get("text") == NOT_ALLOWED_GROUP, action
    # Every counselor command refuses her.
    for command in COUNSELOR_COMMANDS:
        assert await _command(h, fake, dana, command, "P-4711", flag_id) == NOT_ALLOWED, command
    # Nothing about the patient reached her after the removal (no Details, no relay).
    after = [text(m) for m in fake.sent(dana.id)[dms_before:]]
    assert not any("Jordan" in t or "end it all" in t or "P-4711" in t for t in after), after

    # She is no longer on call, and the crisis DM step passes her by.
    h.clock.advance(minutes=10)
    await h.tick()
    assert any("unclaimed for 10 min" in text(m) for m in fake.sent(h.admin.id))
    assert not any("unclaimed" in text(m) for m in fake.sent(dana.id))
    fake.assert_no_errors()


async def test_a_grant_after_the_removal_sticks(h: BotHarness, fake: FakeTelegram) -> None:
    u, dana, flag_id, post = await _setup(h, fake)
    await _kicked(h, fake, dana)
    assert await _command(h, fake, dana, "flags", "P-4711", flag_id) == NOT_ALLOWED

    # An admin decides she stays a counselor outside the group.
    await h.send(h.admin, f"/grant {dana.id} counselor")
    assert "is now a counselor" in text(fake.last(h.admin.id))
    assert "P-4711" in await _command(h, fake, dana, "flags", "P-4711", flag_id)

    # Membership checks that find her out of the group (after the cache expires, and after a
    # restart with an empty cache) leave the new grant alone.
    h.clock.advance(minutes=30)
    assert await h.hub.roles.in_counselor_group(dana.id) is False
    await h.stop()
    await h.start()
    assert await h.hub.roles.in_counselor_group(dana.id) is False
    assert "P-4711" in await _command(h, fake, dana, "flags", "P-4711", flag_id)
    qid = await h.press(dana, post, f"fl:details:{flag_id}")
    assert (fake.callback_answer(qid) or {}).get("text") != NOT_ALLOWED_GROUP
    assert "Jordan" in text(fake.last(dana.id))
    async with h.db.session() as s:
        roles = set((await s.execute(select(StaffRole.role).where(StaffRole.telegram_id == dana.id))).scalars())
    assert roles == {"counselor"}
    assert len([m for m in fake.sent(h.admin.id) if "left or was removed" in text(m)]) == 1
    fake.assert_no_errors()


async def test_leaving_without_a_granted_role_tells_no_admin(h: BotHarness, fake: FakeTelegram) -> None:
    """A group member who holds no granted role just leaves: access ends, no admin message."""
    lee = fake.add_user(first_name="Lee", started=True)
    await h.push(fake.join(h.group, lee))
    await h.send(lee, "/flags")
    assert text(fake.last(lee.id)) != NOT_ALLOWED
    await _left(h, fake, lee)
    await h.send(lee, "/flags")
    assert text(fake.last(lee.id)) == NOT_ALLOWED
    assert not any("left or was removed" in text(m) for m in fake.sent(h.admin.id))
    fake.assert_no_errors()


async def test_what_a_removed_counselor_had_in_hand_ends_with_the_removal(h: BotHarness, fake: FakeTelegram) -> None:
    """A conversation with the patient and an outcome note being written, both under way at the
    moment of the removal: the conversation ends (the patient is told), the patient's next words
    do not reach her, and the note she then sends is refused and resolves nothing."""
    u, dana, flag_id, post = await _setup(h, fake)
    await h.press(dana, post, f"fl:claim:{flag_id}")
    await h.press(dana, post, f"fl:msg:{flag_id}")
    await h.send(dana, "We are here for you.")
    assert "We are here for you." in text(fake.last(u.id))
    await h.press(dana, post, f"fl:resolve:{flag_id}")
    assert "outcome note" in text(fake.last(dana.id))
    dms_before = len(fake.sent(dana.id))

    await _kicked(h, fake, dana)

    assert C.t("flags.relay_ended_patient", "en") in [text(m) for m in fake.sent(u.id)]
    await h.send(u, "are you still there? I'm at the bridge")
    assert not any("bridge" in text(m) for m in fake.sent(dana.id))
    await h.send(dana, "INTERNAL NOTE: spoke with her")
    assert text(fake.last(dana.id)) == NOT_ALLOWED
    assert len(fake.sent(dana.id)) == dms_before + 1
    async with h.db.session() as s:
        flag = (await s.execute(select(Flag).where(Flag.id == flag_id))).scalar_one()
    assert flag.status != "resolved" and flag.outcome is None
    fake.assert_no_errors()
