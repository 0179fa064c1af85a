"""check_text: detector → flags, the confirmation question and its timeout, /talk, follow-ups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from bot.escalation import area as escalation_area
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.rules import Workflow
from bot.escalation.service import talk_request
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.platform.models import OutboxMessage
from bot.safety import area as safety_area
from bot.safety import service as safety
from bot.safety.models import SafetyCheck
from tests import escalation_support as sup


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> AsyncIterator[SimpleNamespace]:
    hub = sup.hub(db, clock, sup.settings())
    detector = sup.StubDetector()
    hub.provide(safety.Detection(detector))
    safety_area.install(hub)
    escalation_area.install(hub)
    pid = await sup.add_patient(db, clock.now())
    yield SimpleNamespace(
        hub=hub, pid=pid, db=db, clock=clock, detector=detector, wf=hub.get(Workflow), detection=hub.get(safety.Detection)
    )


async def _check(env: SimpleNamespace, text: str, **kw: object) -> safety.SafetyOutcome:
    async with env.db.transaction() as s:
        return await safety.check_text(s, env.wf, env.detection, env.pid, text, source="message", now=env.clock.now(), **kw)  # type: ignore[arg-type]


async def _rows(db: Database, model: type) -> list:  # type: ignore[type-arg]
    async with db.session() as s:
        return list((await s.execute(select(model))).scalars())


async def _patient_messages(db: Database) -> list[OutboxMessage]:
    return [r for r in await _rows(db, OutboxMessage) if r.chat_id == 5001]


async def test_ordinary_text_does_nothing(env: SimpleNamespace):
    out = await _check(env, "Had a good day at group today")
    assert out.flag is None and not out.crisis and out.check_id is None
    assert await _rows(env.db, Flag) == []


async def test_explicit_crisis_flags_and_sends_resources(env: SimpleNamespace):
    out = await _check(env, "I am going to end it all tonight")
    assert out.crisis and out.flag is not None and out.flag.severity == "crisis"
    (flag,) = await _rows(env.db, Flag)
    assert flag.category == "suicide_self_harm"
    (ev,) = await _rows(env.db, FlagEvent)
    assert ev.evidence == "I am going to end it all tonight"
    assert ev.reason is not None and "end it all" not in ev.reason
    msgs = await _patient_messages(env.db)
    assert len(msgs) == 1 and "988" in msgs[0].payload["text"]


async def test_the_chat_handler_sends_its_own_crisis_reply(env: SimpleNamespace):
    out = await _check(env, "I am going to end it all tonight", send_crisis=False)
    assert out.crisis and out.flag is not None
    assert await _patient_messages(env.db) == []


async def test_the_same_words_twice_are_one_trigger(env: SimpleNamespace):
    await _check(env, "I used last night")
    again = await _check(env, "I used last night")
    assert again.duplicate
    assert len(await _rows(env.db, FlagEvent)) == 1


async def test_high_signal_is_flagged_without_a_question(env: SimpleNamespace):
    out = await _check(env, "I used last night, sorry")
    assert out.flag is not None and out.flag.severity == "high" and not out.crisis


async def test_uncertain_high_asks_then_flags_after_the_timeout(env: SimpleNamespace):
    out = await _check(env, "Some days I don't want to wake up")
    assert out.check_id is not None and out.flag is None
    (q,) = await _patient_messages(env.db)
    assert "ending your life" in q.payload["text"]
    data = [b["callback_data"] for row in q.payload["reply_markup"]["inline_keyboard"] for b in row]
    assert data == [f"sf:y:{out.check_id}:suicide_self_harm", f"sf:n:{out.check_id}", f"sf:t:{out.check_id}"]
    # A second uncertain text does not ask again.
    again = await _check(env, "Really, I don't want to wake up")
    assert again.check_id == out.check_id and len(await _patient_messages(env.db)) == 1
    env.clock.advance(minutes=4)
    assert await env.hub.sweeper.tick() == 0
    env.clock.advance(minutes=1)
    assert await env.hub.sweeper.tick() == 1
    (flag,) = await _rows(env.db, Flag)
    assert flag.severity == "high" and flag.source == "safety_timeout"
    (check,) = await _rows(env.db, SafetyCheck)
    assert check.answer == "timeout" and check.flag_id == flag.id


async def test_answering_no_still_reaches_the_care_team_and_cancels_the_timeout(env: SimpleNamespace):
    out = await _check(env, "Some days I don't want to wake up")
    async with env.db.transaction() as s:
        res = await safety.confirm_answer(s, env.wf, env.detection, out.check_id, telegram_id=5001, answer="no", now=env.clock.now())
    assert res.status == "ok" and res.flag is not None and res.flag.severity == "moderate"
    env.clock.advance(minutes=10)
    await env.hub.sweeper.tick()
    (flag,) = await _rows(env.db, Flag)
    assert flag.severity == "moderate" and flag.source == "safety_confirm"
    (ev,) = await _rows(env.db, FlagEvent)
    assert ev.reason == safety.safety_rules().denied.other  # the stub's rules disclose nothing more


async def test_answering_yes_raises_a_crisis_flag(env: SimpleNamespace):
    out = await _check(env, "Maybe I'd be better off gone")
    async with env.db.transaction() as s:
        res = await safety.confirm_answer(s, env.wf, env.detection, out.check_id, telegram_id=5001, answer="yes", now=env.clock.now())
    assert res.status == "ok" and res.crisis and res.flag is not None and res.flag.severity == "crisis"
    async with env.db.transaction() as s:
        twice = await safety.confirm_answer(s, env.wf, env.detection, out.check_id, telegram_id=5001, answer="no", now=env.clock.now())
    assert twice.status == "answered"


async def test_someone_else_cannot_answer(env: SimpleNamespace):
    out = await _check(env, "Maybe I'd be better off gone")
    async with env.db.transaction() as s:
        res = await safety.confirm_answer(s, env.wf, env.detection, out.check_id, telegram_id=999, answer="yes", now=env.clock.now())
    assert res.status == "not_found"
    async with env.db.transaction() as s:
        forged = await safety.confirm_answer(s, env.wf, env.detection, 12345, telegram_id=5001, answer="yes", now=env.clock.now())
    assert forged.status == "not_found"


async def test_uncertain_moderate_unanswered_is_flagged_moderate(env: SimpleNamespace):
    out = await _check(env, "maybe I'd be better off gone")
    assert out.check_id is not None
    env.clock.advance(hours=1)
    assert await env.hub.sweeper.tick() == 1
    (flag,) = await _rows(env.db, Flag)
    assert flag.severity == "moderate" and flag.source == "safety_timeout"


async def test_talk_request_and_followup_answers(env: SimpleNamespace):
    async with env.db.transaction() as s:
        r = await talk_request(s, env.wf, env.pid, env.clock.now())
    assert r.created and r.severity == "moderate"
    async with env.db.transaction() as s:
        assert await safety.followup_answer(s, env.wf, r.flag_id, telegram_id=5001, answer="bad", now=env.clock.now()) == "ok"
        assert await safety.followup_answer(s, env.wf, r.flag_id, telegram_id=5001, answer="ok", now=env.clock.now()) == "answered"
        assert await safety.followup_answer(s, env.wf, r.flag_id, telegram_id=42, answer="ok", now=env.clock.now()) == "not_found"


async def test_detection_is_pure_and_uses_the_configured_detector(env: SimpleNamespace):
    sig = env.detection.signal("end it all tonight")
    assert sig.explicit_crisis and sig.category == "suicide_self_harm"
    assert env.detection.signal("") == safety.NO_SIGNAL
    assert env.detector.calls == 1


def test_what_the_words_disclosed_comes_from_the_rules_that_matched():
    rules = safety.safety_rules()
    assert rules.kind(("sh_did", "sh_topic")) == "self_harm"
    assert rules.kind(("si_passive_wake",)) == "passive"
    assert rules.kind(("si_not_ok",)) is None and rules.kind(()) is None
    assert rules.denied_reason("self_harm") == "self-harm disclosed; intent denied"
    assert rules.denied_reason("passive") == "wish to be dead; intent denied"
    assert rules.denied_reason(None) == rules.denied.other
    assert rules.unanswered_reason("self_harm") == "self-harm disclosed; no answer to the safety question"
    assert rules.unanswered_reason(None) == rules.unanswered
    assert [rules.denied_severity(s) for s in ("moderate", "high", "crisis")] == ["moderate", "moderate", "high"]


async def test_no_after_words_of_a_crisis_is_still_a_high_flag(env: SimpleNamespace):
    sig = safety.Signal("crisis", "suicide_self_harm", ("combo_ideation_use",), True)
    out = await _check(env, "words the detector was unsure of", signal=sig)
    async with env.db.transaction() as s:
        res = await safety.confirm_answer(s, env.wf, env.detection, out.check_id, telegram_id=5001, answer="no", now=env.clock.now())
    assert res.flag is not None and res.flag.severity == "high"
    assert safety.followup_kind("self_harm") == "self_harm" and safety.followup_kind("passive") is None


def test_content_check_catches_an_unknown_risk_rule_and_a_missing_followup(tmp_path):
    import shutil

    from bot.platform.content import DEFAULT_CONTENT_DIR

    root = tmp_path / "content"
    shutil.copytree(DEFAULT_CONTENT_DIR, root)
    assert safety.check_content(root) == []
    f = root / "rules" / "safety.yaml"
    f.write_text(
        f.read_text(encoding="utf-8").replace("[sh_intent,", "[sh_no_such_rule,").replace("followup: [self_harm]", "followup: [self_harm, passive]"),
        encoding="utf-8",
    )
    problems = [m for _, _, m in safety.check_content(root)]
    assert any("sh_no_such_rule" in m for m in problems)
    assert any("safety.followup_passive" in m for m in problems)
