"""A flag's life as one table (bot/escalation/lifecycle.py), driven from the table itself: every
status and every move, allowed ones with their stamp, event and audit entry, forbidden ones
refused with the reason the handlers answer; then the same through the service and the buttons."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from bot.core.models import AuditEntry
from bot.core.vocabulary import FlagStatus
from bot.escalation import area as escalation_area
from bot.escalation import buttons, lifecycle
from bot.escalation.lifecycle import REFUSALS, STAMPS, TRANSITIONS, Move, Refused
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rules import Workflow
from bot.escalation.service import claim, raise_flag, resolve
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

ANA, DANA = 41, 42
ORDER = list(FlagStatus)
MOVES = [m for m in Move if m is not Move.OPEN]  # the moves of a flag that exists
# How a flag reaches each status from open (the first allowed path in the table).
PATH = {FlagStatus.OPEN: [], FlagStatus.CLAIMED: [Move.CLAIM], FlagStatus.RESOLVED: [Move.RESOLVE]}
CASES = list(itertools.product(FlagStatus, MOVES))
BUTTONS = {Move.CLAIM: buttons.CLAIM, Move.RESOLVE: buttons.RESOLVE}


# -- the table -----------------------------------------------------------------------------------


def test_the_table_covers_every_move_and_status():
    assert set(TRANSITIONS) == set(Move)
    assert set(STAMPS) == set(FlagStatus) == set(REFUSALS)
    assert {t.target for t in TRANSITIONS.values()} == set(FlagStatus)  # every status is reachable
    assert TRANSITIONS[Move.OPEN].sources == frozenset()  # only a new flag opens
    for status, moves in PATH.items():
        assert [TRANSITIONS[m].target for m in moves][-1:] == ([status] if moves else [])


@pytest.mark.parametrize("action", list(Move))
def test_no_move_goes_back(action: Move):
    t = TRANSITIONS[action]
    assert all(ORDER.index(s) < ORDER.index(t.target) for s in t.sources)


def test_each_status_has_one_timestamp_of_its_own():
    columns = [s.at.key for s in STAMPS.values()]
    assert len(set(columns)) == len(columns) == len(FlagStatus)


# -- the moves on a stored flag --------------------------------------------------------------------


@pytest.fixture
async def pid(db: Database, clock: FrozenClock) -> int:
    return await sup.add_patient(db, clock.now())


async def _flag_in(db: Database, pid: int, status: FlagStatus, at: datetime) -> int:
    """A flag brought to `status` through the table by Ana."""
    async with db.transaction() as s:
        flag = Flag(patient_id=pid, category="suicide_self_harm", severity="crisis", source="message", renotify_stage=0, rev=0)
        lifecycle.open_flag(flag, at)
        s.add(flag)
        await s.flush()
        for m in PATH[status]:
            assert await lifecycle.move(s, flag, m, actor_id=ANA, actor_name="Ana", now=at)
        return flag.id


async def _record(db: Database, fid: int) -> tuple[Flag, list[tuple[str, int | None]], list[str]]:
    async with db.session() as s:
        flag = await s.get(Flag, fid)
        assert flag is not None
        events = [(e.kind, e.actor_id) for e in (await s.execute(select(FlagEvent).where(FlagEvent.flag_id == fid).order_by(FlagEvent.id))).scalars()]
        audits = [a.action for a in (await s.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()]
        s.expunge(flag)
        return flag, events, audits


@pytest.mark.parametrize(("status", "action"), CASES)
async def test_every_move_from_every_status(db: Database, clock: FrozenClock, pid: int, status: FlagStatus, action: Move):
    opened = clock.now()
    fid = await _flag_in(db, pid, status, opened)
    before, events, audits = await _record(db, fid)
    t = TRANSITIONS[action]
    later = opened + timedelta(minutes=7)
    async with db.transaction() as s:
        flag = await s.get(Flag, fid)
        assert flag is not None
        if status in t.sources:
            assert await lifecycle.move(s, flag, action, actor_id=DANA, actor_name="Dana", now=later)
        else:
            with pytest.raises(Refused) as refused:
                await lifecycle.move(s, flag, action, actor_id=DANA, actor_name="Dana", now=later)
            assert refused.value.reason == REFUSALS[status] and refused.value.status is status
    after, events_after, audits_after = await _record(db, fid)
    if status not in t.sources:  # refused: nothing changed, nothing recorded
        assert (after.status, after.rev, after.claimed_at, after.resolved_at) == (
            before.status, before.rev, before.claimed_at, before.resolved_at
        )
        assert (events_after, audits_after) == (events, audits)
        return
    assert after.status == t.target and after.rev == before.rev + 1
    assert events_after == [*events, (t.event, DANA)] and audits_after == [*audits, t.audit]
    assert after.opened_at == opened  # an opening's stamp never moves
    for state in ORDER[1 : ORDER.index(t.target) + 1]:
        stamp = STAMPS[state]
        was = getattr(before, stamp.at.key)
        # A state reached before keeps its stamp; one reached now (or passed through: resolving an
        # open flag claims it) is stamped now, by Dana.
        at, by = (was, getattr(before, stamp.by.key)) if was is not None else (later, DANA)
        assert (getattr(after, stamp.at.key), getattr(after, stamp.by.key)) == (at, by), state
    for state in ORDER[ORDER.index(t.target) + 1 :]:
        assert getattr(after, STAMPS[state].at.key) is None


async def test_the_holder_claiming_again_changes_nothing(db: Database, clock: FrozenClock, pid: int):
    fid = await _flag_in(db, pid, FlagStatus.CLAIMED, clock.now())
    before, events, audits = await _record(db, fid)
    async with db.transaction() as s:
        flag = await s.get(Flag, fid)
        assert flag is not None
        assert not await lifecycle.move(s, flag, Move.CLAIM, actor_id=ANA, actor_name="Ana", now=clock.now() + timedelta(minutes=1))
    after, events_after, audits_after = await _record(db, fid)
    assert (after.rev, after.claimed_at, events_after, audits_after) == (before.rev, before.claimed_at, events, audits)


async def test_a_long_name_is_kept_to_the_column(db: Database, clock: FrozenClock, pid: int):
    fid = await _flag_in(db, pid, FlagStatus.OPEN, clock.now())
    async with db.transaction() as s:
        flag = await s.get(Flag, fid)
        assert flag is not None
        await lifecycle.move(s, flag, Move.CLAIM, actor_id=DANA, actor_name="D" * 100, now=clock.now())
        await lifecycle.move(s, flag, Move.RESOLVE, actor_id=7, actor_name=None, now=clock.now())
    after, _, _ = await _record(db, fid)
    assert after.claimed_by_name == "D" * lifecycle.NAME_MAX and after.resolved_by_name == "7"


# -- through the service ------------------------------------------------------------------------


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> AsyncIterator[SimpleNamespace]:
    hub = sup.hub(db, clock, sup.settings())
    escalation_area.install(hub)
    patient = await sup.add_patient(db, clock.now())
    yield SimpleNamespace(hub=hub, wf=hub.get(Workflow), pid=patient, db=db, clock=clock)


async def test_a_first_trigger_opens_a_flag_stamped_with_its_event(env: SimpleNamespace):
    async with env.db.transaction() as s:
        r = await raise_flag(
            s, env.wf, patient_id=env.pid, category="depression", severity="moderate", reason="r", source="checkin", now=env.clock.now()
        )
    flag, events, _ = await _record(env.db, r.flag_id)
    assert r.created and flag.status == FlagStatus.OPEN and flag.opened_at == env.clock.now()
    assert (flag.claimed_at, flag.resolved_at, events) == (None, None, [("trigger", None)])


@pytest.mark.parametrize(("status", "action"), CASES)
async def test_the_service_answers_every_move_as_the_table_says(env: SimpleNamespace, status: FlagStatus, action: Move):
    fid = await _flag_in(env.db, env.pid, status, env.clock.now())
    async with env.db.transaction() as s:
        if action is Move.CLAIM:
            res = await claim(s, env.wf, fid, actor_id=DANA, actor_name="Dana", now=env.clock.now())
        else:
            res = await resolve(s, env.wf, fid, actor_id=DANA, actor_name="Dana", note="ok", now=env.clock.now())
    if lifecycle.allowed(status, action):
        assert res.ok and res.reason is None and res.flag is not None and res.flag.status == TRANSITIONS[action].target
    else:
        assert not res.ok and res.reason == REFUSALS[status] and res.flag is not None and res.flag.status == status


async def test_the_service_refuses_an_unknown_flag(env: SimpleNamespace):
    async with env.db.transaction() as s:
        assert (await claim(s, env.wf, 999, actor_id=DANA, actor_name="Dana", now=env.clock.now())).reason == "not_found"
        assert (await resolve(s, env.wf, 999, actor_id=DANA, actor_name="Dana", note="x", now=env.clock.now())).reason == "not_found"


# -- only the lifecycle changes a flag's status -----------------------------------------------------


def test_no_other_code_sets_a_flags_status():
    root = Path(__file__).resolve().parents[2]
    writes = re.compile(r"\bflag\.status\s*=[^=]|update\(Flag\)|Flag\(.*\bstatus=", re.IGNORECASE)
    found = [
        f"{p.relative_to(root)}:{n}"
        for folder in ("bot", "handlers")
        for p in sorted((root / folder).rglob("*.py"))
        if p.name != "lifecycle.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if writes.search(line)
    ]
    assert found == []


# -- through the buttons: each forbidden move gets the handlers' words ---------------------------


SATURDAY_3AM = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(SATURDAY_3AM)


def _answer(fake: FakeTelegram, qid: str) -> str:
    return str((fake.callback_answer(qid) or {}).get("text") or "")


@pytest.mark.usefixtures("stub_detector")
@pytest.mark.parametrize(("status", "action"), CASES)
async def test_each_button_on_a_flag_in_each_status(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, status: FlagStatus, action: Move
):
    c = get_content()
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    ana = await sup.add_counselor(h, fake, "Ana")
    dana = await sup.add_counselor(h, fake, "Dana")
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = buttons.FLAG.parse(post.callback_data[0]).values[0]
    for m in PATH[status]:  # Ana brings the flag to `status` with her buttons
        await h.press(ana, post, BUTTONS[m].pack(fid))
        if m is Move.RESOLVE:
            await h.send(ana, "Called; safe")
    async with db.session() as s:
        assert (await s.execute(select(Flag.status))).scalar_one() == status
    qid = await h.press(dana, post, BUTTONS[action].pack(fid))
    said = _answer(fake, qid)
    expected = {
        (FlagStatus.OPEN, Move.CLAIM): c.t("flags.claimed_ok", "en"),
        (FlagStatus.OPEN, Move.RESOLVE): c.t("flags.resolve_asked", "en"),
        (FlagStatus.CLAIMED, Move.CLAIM): c.t("flags.already_claimed", "en", name="Ana"),
        (FlagStatus.CLAIMED, Move.RESOLVE): c.t("flags.resolve_asked", "en"),
        (FlagStatus.RESOLVED, Move.CLAIM): c.t("flags.already_resolved", "en"),
        (FlagStatus.RESOLVED, Move.RESOLVE): c.t("flags.already_resolved", "en"),
    }[(status, action)]
    assert said == expected
    fake.assert_no_errors()


@pytest.mark.usefixtures("stub_detector")
async def test_a_note_for_a_flag_resolved_meanwhile_is_refused(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    ana = await sup.add_counselor(h, fake, "Ana")
    dana = await sup.add_counselor(h, fake, "Dana")
    await h.send(u, "I'm going to end it all tonight")
    post = fake.last(h.group.id)
    fid = buttons.FLAG.parse(post.callback_data[0]).values[0]
    await h.press(dana, post, buttons.RESOLVE.pack(fid))  # Dana is asked for her note...
    await h.press(ana, post, buttons.RESOLVE.pack(fid))
    await h.send(ana, "Called; safe")  # ...and Ana resolves it first
    await h.send(dana, "Spoke with them too")
    assert (fake.last(dana.id).plain_text or "") == get_content().t("flags.already_resolved", "en")
    async with db.session() as s:
        flag = (await s.execute(select(Flag))).scalar_one()
        resolves = (await s.execute(select(func.count()).select_from(FlagEvent).where(FlagEvent.kind == "resolve"))).scalar_one()
    assert (flag.status, flag.resolved_by, resolves) == (FlagStatus.RESOLVED, ana.id, 1)
    fake.assert_no_errors()
