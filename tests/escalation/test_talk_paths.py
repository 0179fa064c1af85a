"""One talk request: "I want to talk to a counselor" from /talk, /sos, the lapse check-in, the
follow-up after a flag and a conversation whose counselor left the team all go through
`bot.escalation.service.talk_request`, the one place the talk flag is raised."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from bot import areas
from bot.checkins import service as checkins
from bot.core.models import Patient
from bot.core.people import PatientInfo
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_flag, talk_request
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.recovery import sos
from bot.recovery.rules import SosRules
from bot.safety import service as safety
from tests import escalation_support as sup
from tests.checkins_support import make_patient

ROOT = Path(__file__).resolve().parents[2]


async def _talk(env: SimpleNamespace, pid: int) -> None:
    async with env.db.transaction() as s:
        await talk_request(s, env.wf, pid, env.clock.now())


async def _sos(env: SimpleNamespace, pid: int) -> None:
    async with env.db.transaction() as s:
        await sos.request_talk(s, env.wf, env.hub.get(SosRules), pid, env.clock.now())


async def _lapse_checkin(env: SimpleNamespace, pid: int) -> None:
    async with env.db.transaction() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        await checkins.talk_request(s, env.wf, env.hub.content, PatientInfo.of(patient), True, env.clock.now())


async def _followup(env: SimpleNamespace, pid: int) -> None:
    """"I'd like to talk" in the follow-up after another flag."""
    async with env.db.transaction() as s:
        first = await raise_flag(
            s, env.wf, patient_id=pid, category="severe_craving", severity="moderate", reason="r", source="checkin",
            now=env.clock.now(),
        )
    async with env.db.transaction() as s:
        patient = await s.get(Patient, pid)
        assert patient is not None
        said = await safety.followup_answer(
            s, env.wf, first.flag_id, telegram_id=patient.telegram_id, answer="talk", now=env.clock.now()
        )
    assert said == "ok"


# Every way a patient asks for a counselor, and the source and rule its flag carries.
PATHS: dict[str, tuple[Callable[[SimpleNamespace, int], Awaitable[None]], str]] = {
    "/talk": (_talk, "talk"),
    "/sos": (_sos, "sos"),
    "the lapse check-in": (_lapse_checkin, "checkin_lapse"),
    "the follow-up after a flag": (_followup, "followup"),
}


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> SimpleNamespace:
    hub = sup.hub(db, clock, sup.settings())
    areas.install(hub)
    return SimpleNamespace(hub=hub, db=db, clock=clock, wf=hub.get(Workflow))


@pytest.mark.parametrize("path", list(PATHS))
async def test_every_way_of_asking_raises_the_talk_flag(env: SimpleNamespace, path: str):
    drive, source = PATHS[path]
    p = await make_patient(env.db, env.clock.now())
    await drive(env, p.id)
    async with env.db.session() as s:
        (event,) = (
            await s.scalars(
                select(FlagEvent).join(Flag, Flag.id == FlagEvent.flag_id).where(
                    Flag.category == "talk_request", FlagEvent.kind == "trigger", FlagEvent.source == source
                )
            )
        ).all()
    rules = env.wf.rules
    expected = {
        "sos": (env.hub.get(SosRules).talk_request.severity, env.hub.get(SosRules).talk_request.reason),
        "followup": (rules.followup.severity, None),
    }.get(source, (rules.talk.severity, rules.talk.reason))
    assert event.severity == expected[0]
    assert expected[1] is None or event.reason == expected[1]


def test_the_talk_flag_is_raised_in_one_place():
    """No other module raises a flag of the talk category itself."""
    raising = re.compile(r'category\s*=\s*"talk_request"')
    found = sorted(
        str(path.relative_to(ROOT))
        for folder in ("bot", "handlers")
        for path in (ROOT / folder).rglob("*.py")
        if raising.search(path.read_text(encoding="utf-8"))
    )
    assert found == ["bot/escalation/service.py"]
