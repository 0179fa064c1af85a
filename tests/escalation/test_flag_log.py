"""The log records each flag raised, escalated, claimed and resolved: its number, severity,
category and source only — never the patient's code, name, Telegram id or words."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from bot.core.vocabulary import FLAG_SEVERITIES, Category
from bot.escalation import area as escalation_area
from bot.escalation.rules import Workflow, sources
from bot.escalation.service import claim, raise_flag, resolve
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests import escalation_support as sup

CODE = "P-7391"
NAME = "Zephyrine"
TELEGRAM_ID = 88004422
WORDS = "QUOKKA-WORDS I will end it all tonight"
COUNSELOR_ID = 99007733
COUNSELOR = "Marisol"
NOTE = "OUTCOME-NOTE called them back"
LOGGER = "bot.escalation.service"


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> AsyncIterator[SimpleNamespace]:
    hub = sup.hub(db, clock, sup.settings())
    escalation_area.install(hub)
    pid = await sup.add_patient(db, clock.now(), telegram_id=TELEGRAM_ID, code=CODE, first_name=NAME)
    yield SimpleNamespace(pid=pid, db=db, clock=clock, wf=hub.get(Workflow))


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


def _assert_private(lines: list[str]) -> None:
    text = "\n".join(lines)
    for secret in (CODE, NAME, str(TELEGRAM_ID), "QUOKKA", str(COUNSELOR_ID), COUNSELOR, "OUTCOME"):
        assert secret not in text, secret


@pytest.mark.parametrize("category", list(Category))
async def test_every_flag_raised_escalated_claimed_and_resolved_is_logged_without_personal_data(
    env: SimpleNamespace, caplog: pytest.LogCaptureFixture, category: str
) -> None:
    all_sources = sources()
    caplog.set_level(logging.INFO, logger=LOGGER)
    for i, severity in enumerate(FLAG_SEVERITIES):
        source = all_sources[i % len(all_sources)]
        caplog.clear()
        async with env.db.transaction() as s:
            r = await raise_flag(
                s, env.wf, patient_id=env.pid, category=category, severity=severity, reason="risk:test",
                source=source, now=env.clock.now(), evidence=WORDS,
            )
        lines = _lines(caplog)
        what = "raised" if i == 0 else "escalated"
        assert lines == [f"flags: flag {r.flag_id} {what} (severity {severity}, category {category}, source {source})"]
        _assert_private(lines)
    # A trigger that neither opens nor raises a flag is not a new line.
    caplog.clear()
    async with env.db.transaction() as s:
        await raise_flag(
            s, env.wf, patient_id=env.pid, category=category, severity="low", reason="risk:test",
            source="message", now=env.clock.now(), evidence=WORDS,
        )
    assert _lines(caplog) == []
    wf = env.wf
    for action, what in ((claim, "claimed"), (resolve, "resolved")):
        caplog.clear()
        extra = {"note": NOTE} if action is resolve else {}
        async with env.db.transaction() as s:
            res = await action(s, wf, r.flag_id, actor_id=COUNSELOR_ID, actor_name=COUNSELOR, now=env.clock.now(), **extra)
        assert res.ok
        lines = _lines(caplog)
        assert lines == [f"flags: flag {r.flag_id} {what} (severity crisis, category {category}, source {all_sources[0]})"]
        _assert_private(lines)
