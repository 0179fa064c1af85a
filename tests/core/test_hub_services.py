"""The services areas offer each other on the hub (bot/core/hub.py): escalation's workflow and
safety's risk detection are provided by their area's `install` and passed explicitly, never kept
in a module."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from bot import areas
from bot.app import build_application
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_flag
from bot.platform.clock import FrozenClock
from bot.platform.config import load_settings
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.safety.screening import Screening
from bot.safety.service import Detection
from tests import escalation_support as sup


def test_installing_the_areas_provides_the_workflow_and_risk_detection(db: Database, clock: FrozenClock):
    hub = sup.hub(db, clock, sup.settings())
    areas.install(hub)
    wf = hub.get(Workflow)
    assert wf.settings is hub.settings and wf.content is hub.content and wf.group == sup.GROUP
    detection = hub.get(Detection)
    assert detection.fixed is None  # the process's own detectors (bot/safety/risk/registry.py)
    assert hub.inbox.urgent == detection.crisis_update  # receiving asks the same detection


def test_a_detector_provided_before_the_areas_is_the_one_used(db: Database, clock: FrozenClock):
    hub = sup.hub(db, clock, sup.settings())
    stub = sup.StubDetector()
    hub.provide(Detection(stub))
    areas.install(hub)
    assert hub.get(Detection).fixed is stub
    assert hub.get(Detection).signal("I will end it all tonight").explicit_crisis and stub.calls == 1


def test_the_composition_root_screens_with_the_detector_it_is_given(tmp_path: Path):
    settings = load_settings(
        _env_file=None, telegram_bot_token="123456:TEST-TOKEN-0000", database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db"
    )
    stub = sup.StubDetector()
    hub = build_application(settings, detector=stub).bot_data["hub"]
    assert hub.get(Detection).fixed is stub
    # Screening before the handlers and the handlers themselves ask the same service.
    assert hub.get(Screening).detection is hub.get(Detection)
    assert build_application(settings).bot_data["hub"].get(Detection).fixed is None


async def test_each_hub_has_its_own_workflow(db: Database, clock: FrozenClock):
    """Two hubs in one process (two bots, or a test next to another): each flag is posted to the
    counselors' group of the workflow it was raised with."""
    first = sup.hub(db, clock, sup.settings(counselor_chat_id=-1001))
    second = sup.hub(db, clock, sup.settings(counselor_chat_id=-1002))
    areas.install(first)
    areas.install(second)
    assert first.get(Workflow) is not second.get(Workflow)
    a = await sup.add_patient(db, clock.now(), telegram_id=5001, code="P-1001")
    b = await sup.add_patient(db, clock.now(), telegram_id=5002, code="P-1002")
    for hub, pid in ((first, a), (second, b)):
        async with db.transaction() as s:
            await raise_flag(
                s, hub.get(Workflow), patient_id=pid, category="suicide_self_harm", severity="crisis",
                reason="test", source="message", now=clock.now(),
            )
    async with db.session() as s:
        posts = [(r.chat_id, r.payload["text"]) for r in (await s.scalars(select(OutboxMessage))).all()]
    assert {chat for chat, _ in posts} == {-1001, -1002}
    assert all(("P-1001" in text) == (chat == -1001) for chat, text in posts)
