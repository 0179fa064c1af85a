"""One crisis reply: every path that sends it gets it from the one builder
(`bot.safety.crisis.crisis_message`, through `bot.safety.service.crisis_reply` wherever the
database is at hand), so a patient in crisis reads the same words whichever way they told us."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from bot import areas
from bot.assessments import service as assessments
from bot.assessments.models import AssessmentResult
from bot.core.people import PatientInfo
from bot.escalation.rules import Workflow
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.safety import crisis
from bot.safety import service as safety
from tests import escalation_support as sup
from tests.checkins_support import make_patient


async def _typed_words(env: SimpleNamespace, p: PatientInfo) -> tuple[str, str | None]:
    """A chat message, screened without the chat handler's own reply: the outbox sends it."""
    async with env.db.transaction() as s:
        out = await safety.check_text(
            s, env.wf, env.detection, p.id, "I will end it all tonight", source="message", now=env.clock.now()
        )
    assert out.crisis
    async with env.db.session() as s:
        rows = (await s.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == p.telegram_id))).all()
    return "".join(str(r.payload["text"]) for r in rows), "suicide_self_harm"


async def _phq9_followup(env: SimpleNamespace, p: PatientInfo) -> tuple[str, str | None]:
    """PHQ-9 item 9 above zero, then the follow-up answered "yes" throughout: graded a crisis."""
    c, wf, now = env.hub.content, env.wf, env.clock.now()
    async with env.db.transaction() as s:
        await assessments.start(s, c, p, "phq9", now)
    for i in range(1, 10):
        async with env.db.transaction() as s:
            await assessments.answer(s, wf, c, p, "phq9", f"q{i}", "1" if i == 9 else "0", now)
    while True:
        async with env.db.session() as s:
            step = (await s.scalars(select(AssessmentResult.step))).one()
        async with env.db.transaction() as s:
            r = await assessments.followup_answer(s, wf, c, p, "phq9", str(step).removeprefix("f:"), "y", now)
        assert r is not None
        if len(r.screens) > 1:
            return r.screens[1].text, "suicide_self_harm"


# Every path that sends the crisis reply with the patient's plan and when a counselor will reach
# them. (The chat handler's first reply goes out before any database work: see the last test.)
PATHS: dict[str, Callable[[SimpleNamespace, PatientInfo], Awaitable[tuple[str, str | None]]]] = {
    "typed words": _typed_words,
    "PHQ-9 follow-up graded a crisis": _phq9_followup,
}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every crisis reply the one builder made during the test."""
    made: list[str] = []
    builder = crisis.crisis_message

    def spy(*args: Any, **kwargs: Any) -> str:
        text = builder(*args, **kwargs)
        made.append(text)
        return text

    monkeypatch.setattr(crisis, "crisis_message", spy)
    return made


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> SimpleNamespace:
    hub = sup.hub(db, clock, sup.settings())
    hub.provide(safety.Detection(sup.StubDetector()))
    areas.install(hub)
    return SimpleNamespace(hub=hub, db=db, clock=clock, wf=hub.get(Workflow), detection=hub.get(safety.Detection))


@pytest.mark.parametrize("path", list(PATHS))
async def test_every_path_sends_the_one_crisis_reply(env: SimpleNamespace, built: list[str], path: str):
    p = await make_patient(env.db, env.clock.now())
    sent, category = await PATHS[path](env, p)
    assert built and sent == built[-1]  # made by the builder, sent as it was made
    async with env.db.session() as s:
        expected = await safety.crisis_reply(s, env.wf, p, env.clock.now(), category=category)
    assert sent == expected
    assert "988" in sent and env.hub.content.t("crisis.closing", p.language) in sent


async def test_the_chat_handlers_first_reply_comes_from_the_same_builder(env: SimpleNamespace, built: list[str]):
    """Sent before the database is touched: the resources for the kind of crisis, without the
    plan or the line about the care team, which follow once the flag is recorded."""
    from handlers.safety import crisis_text

    ctx = SimpleNamespace(hub=env.hub)
    text = crisis_text(ctx, "en", category="overdose_medical")  # type: ignore[arg-type]
    assert built == [text]
    assert text == crisis.crisis_message(
        "en", env.wf.rules.default_region, None, env.hub.settings.office_hours, env.clock.now(),
        zone=env.hub.settings.default_timezone, content=env.hub.content, care_team=False, category="overdose_medical",
    )


def test_a_reply_that_cannot_be_built_is_the_short_form_on_every_path(env: SimpleNamespace) -> None:
    assert crisis.short_form(env.hub.content, "en") == env.hub.content.t("common.error", "en")
    assert "988" in crisis.short_form(env.hub.content, "en")
