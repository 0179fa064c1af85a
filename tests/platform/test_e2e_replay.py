"""An update handled again after the process died before marking it done (DESIGN §3 Durability):
what reached people the first time is not sent again, and what did not is still sent.

"Died before marking it done" is what a SIGKILL leaves between the end of a handler and the
inbox's mark (tests/platform/test_crash.py does it with a real process): here the inbox fails to mark the
update, the bot stops, and a new Application starts on the same database and handles it again.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import handlers.safety as safety_handlers
from bot.assessments import service as assessment_service
from bot.assessments.models import AssessmentResult
from bot.checkins.models import CheckinEntry
from bot.escalation.models import FlagEvent
from bot.platform.clock import FrozenClock
from bot.platform.content import Content, get_content
from bot.platform.db import Database
from bot.platform.models import InboxUpdate
from bot.safety.models import SafetyCheck
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.checkins_support import make_patient
from tests.harness import BotHarness
from tests.onboarding_support import make_invite, running_bot

CRISIS = "I'm going to end it all tonight"
C: Content = get_content()


def dies_before_marking(h: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on this run never marks an update done, as if it were killed right after its handlers."""

    async def killed(update_id: int, *, failed: bool = False) -> None:
        raise RuntimeError("the process was killed")

    monkeypatch.setattr(h.hub.inbox, "mark_done", killed)


async def handled_again(h: BotHarness, update_id: int, clock: FrozenClock, *, minutes: int = 15) -> None:
    """Stop, let time pass (a slow restart), start a new Application and wait for `update_id`."""
    await h.stop()
    async with h.db.session() as s:
        assert (await s.get(InboxUpdate, update_id)).status == "pending"  # type: ignore[union-attr]
    clock.advance(minutes=minutes)
    h.processed.discard(update_id)
    await h.start()
    await h.handled(update_id, timeout=30)
    await h.outbox_idle()
    async with h.db.session() as s:
        row = await s.get(InboxUpdate, update_id)
        assert row is not None and row.status == "done" and row.payload is None


def crisis_replies(fake: FakeTelegram, chat_id: int) -> list[Any]:
    return [m for m in fake.sent(chat_id) if "988lifeline.org" in (m.plain_text or "")]


async def triggers(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(FlagEvent).where(FlagEvent.kind == "trigger"))).scalar_one())


async def test_a_crisis_handled_again_is_not_answered_or_flagged_twice(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_before_marking(h, monkeypatch)
    inc = await h.send(u, CRISIS)
    assert len(crisis_replies(fake, u.id)) == 1
    sent_before = len(fake.sent(u.id))
    posts = len(fake.sent(h.group.id))
    assert posts == 1 and await triggers(db) == 1

    await handled_again(h, inc.update_id, clock)
    assert len(crisis_replies(fake, u.id)) == 1, "the crisis reply went out twice"
    assert len(fake.sent(u.id)) == sent_before  # nor the plan, nor the line about the care team
    assert len(fake.sent(h.group.id)) == posts  # no second post, no "new trigger"
    assert await triggers(db) == 1
    fake.assert_no_errors()


async def test_a_crisis_reply_telegram_refused_arrives_once_after_the_restart(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct reply failed, so it went to the outbox with the flag; the process died before
    the update was marked done. After the restart the reply arrives, once (not lost, not doubled)."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_before_marking(h, monkeypatch)
    fake.fail("sendMessage", kind="500", times=1, chat_id=u.id)
    inc = fake.send_text(u, CRISIS)
    await h.handled(inc.update_id)
    await handled_again(h, inc.update_id, clock)
    assert len(crisis_replies(fake, u.id)) == 1
    assert len(fake.sent(h.group.id)) == 1 and await triggers(db) == 1


async def test_a_crisis_never_recorded_is_answered_after_the_restart(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died before anything was recorded (the database refused the flag's write):
    handled again, the crisis reply goes out again rather than not at all, and the flag is raised."""
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_before_marking(h, monkeypatch)

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr("bot.safety.signals.record", refused)
    inc = fake.send_text(u, CRISIS)
    await h.handled(inc.update_id)
    assert len(crisis_replies(fake, u.id)) == 1 and await triggers(db) == 0
    monkeypatch.undo()
    await handled_again(h, inc.update_id, clock, minutes=1)
    assert len(crisis_replies(fake, u.id)) == 2  # a duplicate, never a loss
    assert await triggers(db) == 1


async def test_yes_to_the_safety_question_handled_again_sends_the_crisis_reply_once(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "I don't want to wake up")
    question = fake.last(u.id)
    assert any(d.startswith("sf:y:") for d in question.callback_data)
    dies_before_marking(h, monkeypatch)
    fake.press_button(u, question, "Yes")
    update_id = fake.updates[-1].update_id
    await h.handled(update_id)
    await h.outbox_idle()
    assert len(crisis_replies(fake, u.id)) == 1
    posts = len(fake.sent(h.group.id))
    await handled_again(h, update_id, clock)
    assert len(crisis_replies(fake, u.id)) == 1, "the crisis reply went out twice"
    assert len(fake.sent(h.group.id)) == posts and await triggers(db) == 1


# -- buttons on screen after a restart ---------------------------------------------------------


async def test_a_checkin_button_after_a_restart_goes_on_where_the_checkin_is(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer was recorded and the process died before the update was marked done (and, with
    a SIGKILL, before the next question replaced the screen): handled again, and every button of
    the question still on screen, take the patient on where the check-in is, not to "expired"."""
    u = fake.add_user(first_name="Ash", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, sobriety_date=date(2026, 1, 1))
    await h.send(u, "/checkin")
    screen = fake.last(u.id)
    await h.press(u, screen, "ci:a:mood:2")
    assert "ci:a:craving:8" in fake.last(u.id).callback_data
    dies_before_marking(h, monkeypatch)
    fake.press(u, screen, "ci:a:craving:8")
    pressed = fake.updates[-1].update_id
    await h.handled(pressed)
    await handled_again(h, pressed, clock, minutes=1)
    for data in ("ci:a:craving:8", "ci:a:craving:3", "ci:a:mood:2"):  # buttons of the screens before
        qid = await h.press(u, screen, data)
        assert "expired" not in ((fake.callback_answer(qid) or {}).get("text") or ""), data
        shown = fake.sent_message(u.id, screen.message_id).plain_text or ""
        assert "pick up your check-in" in shown and "did you drink or use" in shown, data
    await h.press(u, screen, "ci:a:use:no_use")
    assert "ci:d:halt" in fake.sent_message(u.id, screen.message_id).callback_data
    async with db.session() as s:
        draft = (await s.execute(select(CheckinEntry.draft))).scalar_one()
    assert {k: v["v"] for k, v in draft.items()} == {"mood": 2, "craving": 8, "use": "no_use"}
    # Only what Telegram says to the replayed press (too late to answer) and to the same screen
    # shown again; the bot takes both in its stride.
    assert {(e.method, e.description.split(":")[0]) for e in fake.errors} <= {
        ("answerCallbackQuery", "Bad Request"), ("editMessageText", "Bad Request")
    }
    assert all("too old" in e.description or "not modified" in e.description for e in fake.errors)


async def test_a_questionnaire_button_after_a_restart_goes_on_where_it_is(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Ash", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "/help")
    screen = fake.last(u.id)
    await h.press(u, screen, "as:start:phq9")
    await h.press(u, screen, "as:a:phq9:q1:1")
    assert "as:a:phq9:q2:1" in fake.sent_message(u.id, screen.message_id).callback_data
    dies_before_marking(h, monkeypatch)
    fake.press(u, screen, "as:a:phq9:q2:1")
    pressed = fake.updates[-1].update_id
    await h.handled(pressed)
    await handled_again(h, pressed, clock, minutes=1)
    qid = await h.press(u, screen, "as:a:phq9:q2:2")  # the question on screen before the restart
    assert "expired" not in ((fake.callback_answer(qid) or {}).get("text") or "")
    assert "as:a:phq9:q3:0" in fake.sent_message(u.id, screen.message_id).callback_data
    await h.press(u, screen, "as:a:phq9:q3:0")
    assert "as:a:phq9:q4:0" in fake.sent_message(u.id, screen.message_id).callback_data


async def test_an_onboarding_button_after_a_restart_asks_the_question_onboarding_is_on(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(db, clock) as (h, fake, _g):
        code = await make_invite(h, fake)
        u = fake.add_user(first_name="Robin")
        await h.send(u, f"/start {code}")
        age = fake.last(u.id)
        dies_before_marking(h, monkeypatch)
        fake.press(u, age, "ob:age:y")
        pressed = fake.updates[-1].update_id
        await h.handled(pressed)
        await handled_again(h, pressed, clock, minutes=1)
        qid = await h.press(u, age, "ob:age:y")  # the question on screen before the restart
        assert "expired" not in ((fake.callback_answer(qid) or {}).get("text") or "")
        consent = fake.last(u.id)
        assert "Welcome back" in (consent.plain_text or "") and "ob:con:y" in consent.callback_data
        await h.press(u, consent, "ob:con:y")
        assert "ob:tz:0" in fake.last(u.id).callback_data


# -- killed between the commit of an answer and its reply ------------------------------------


class Killed(BaseException):
    """The process is killed (-9): nothing after this point of it runs (not an error it handles)."""


def dies_after_commit(
    h: BotHarness, monkeypatch: pytest.MonkeyPatch, recorded: Callable[[AsyncSession], Awaitable[bool]]
) -> None:
    """This run dies right after committing the transaction after which `recorded` holds: the
    handler goes no further (no reply sent straight to Telegram), its outbox sends nothing more,
    and the update is never marked done."""
    dies_before_marking(h, monkeypatch)
    hub = h.hub

    async def dead() -> tuple[int, None]:
        return 0, None

    monkeypatch.setattr(hub.sender, "run_once", dead)
    transaction = hub.db.transaction

    @asynccontextmanager
    async def then_killed() -> AsyncIterator[AsyncSession]:
        async with transaction() as s:
            yield s
        async with hub.db.session() as s:
            if await recorded(s):
                raise Killed

    monkeypatch.setattr(hub.db, "transaction", then_killed)


async def followup_graded(s: AsyncSession) -> bool:
    row = (await s.execute(select(AssessmentResult).where(AssessmentResult.instrument == "phq9"))).scalar_one()
    return "grade" in ((row.answers or {}).get(assessment_service.FOLLOWUP) or {})


async def _phq9_to_the_last_followup_question(h: BotHarness, fake: FakeTelegram, u: Any) -> Any:
    """PHQ-9 with item 9 above zero, the follow-up answered up to its last question (the crisis
    grade on "yes"): the screen showing it."""
    await h.send(u, "/help")
    screen = fake.last(u.id)
    await h.press(u, screen, "as:start:phq9")
    for i in range(1, 10):
        await h.press(u, screen, f"as:a:phq9:q{i}:{2 if i == 9 else 0}")
    for qid in ("wish_dead", "thoughts"):
        await h.press(u, screen, f"as:f:phq9:{qid}:n")
    assert "as:f:phq9:preparation:y" in fake.sent_message(u.id, screen.message_id).callback_data
    return screen


async def test_the_phq9_followup_crisis_reply_arrives_once_though_the_process_died_after_the_grade(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow-up's grade (crisis) was committed and the process died before the crisis reply
    went out: after the restart it arrives, once."""
    u = fake.add_user(first_name="Ash", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    screen = await _phq9_to_the_last_followup_question(h, fake, u)
    dies_after_commit(h, monkeypatch, followup_graded)
    fake.press(u, screen, "as:f:phq9:preparation:y")
    pressed = fake.updates[-1].update_id
    await h.handled(pressed)
    assert crisis_replies(fake, u.id) == []  # killed before anything reached the patient
    await handled_again(h, pressed, clock, minutes=1)
    assert len(crisis_replies(fake, u.id)) == 1
    thanks = html.unescape(re.sub(r"<[^>]+>", "", C.t("assessments.followup.thanks", "en")))
    assert fake.sent_message(u.id, screen.message_id).plain_text == thanks  # the question, replaced
    fake.assert_no_errors()


async def test_the_phq9_followup_crisis_reply_goes_out_at_once(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock
) -> None:
    """Sent through the outbox with the grade, in the crisis lane: no wait worth noting."""
    u = fake.add_user(first_name="Ash", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id)
    screen = await _phq9_to_the_last_followup_question(h, fake, u)
    await h.outbox_idle()
    started = time.monotonic()
    fake.press(u, screen, "as:f:phq9:preparation:y")
    while not crisis_replies(fake, u.id):
        assert time.monotonic() - started < 2.0, "the crisis reply took more than 2 s"
        await asyncio.sleep(0.005)
    print(f"crisis reply after {1000 * (time.monotonic() - started):.0f} ms")


def _safety_answers() -> list[str]:
    return sorted(set(safety_handlers._ANSWERS.values()))


@pytest.mark.parametrize("ans", _safety_answers())
async def test_an_answer_to_are_you_safe_is_replied_to_once_though_the_process_died_after_recording_it(
    ans: str, h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    await h.send(u, "I don't want to wake up")
    question = fake.last(u.id)
    codec = next(k for k, v in safety_handlers._ANSWERS.items() if v == ans and any(k.made(d) for d in question.callback_data))
    data = next(d for d in question.callback_data if codec.made(d))
    await h.outbox_idle()
    before = len(fake.sent(u.id))

    async def answered(s: AsyncSession) -> bool:
        return (await s.execute(select(SafetyCheck.answer))).scalar_one_or_none() is not None

    dies_after_commit(h, monkeypatch, answered)
    fake.press(u, question, data)
    pressed = fake.updates[-1].update_id
    await h.handled(pressed)
    await handled_again(h, pressed, clock, minutes=1)
    new = [m.plain_text or "" for m in fake.sent(u.id)[before:]]
    if ans == "yes":
        assert len(crisis_replies(fake, u.id)) == 1
        return
    expected = C.t("safety.confirm_talk_reply", "en") if ans == "talk" else None
    assert len(new) == 1, new
    assert expected is None or new == [expected]
    assert "988" in new[0] or ans == "talk"
    assert fake.sent_message(u.id, question.message_id).callback_data == []  # the question's buttons went


async def flagged(s: AsyncSession) -> bool:
    return bool((await s.execute(select(func.count()).select_from(FlagEvent).where(FlagEvent.kind == "trigger"))).scalar_one())


# A risk message the bot answers itself (no crisis, no question): the acknowledgement of the
# flag, and a lapse in the patient's words.
ANSWERED_RISK = {
    "acknowledgement": "I really want to drink tonight, the cravings are so bad",
    "lapse": "I drank last night",
}


@pytest.mark.parametrize("what", sorted(ANSWERED_RISK))
async def test_the_reply_to_a_flagged_message_arrives_once_though_the_process_died_after_the_flag(
    what: str, h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id)
    dies_after_commit(h, monkeypatch, flagged)
    inc = fake.send_text(u, ANSWERED_RISK[what])
    await h.handled(inc.update_id)
    assert fake.sent(u.id) == []
    await handled_again(h, inc.update_id, clock, minutes=1)
    said = [m.plain_text or "" for m in fake.sent(u.id)]
    assert len(said) == 1, said
    if what == "acknowledgement":
        assert said == [C.t("safety.ack.high", "en")]
    else:
        assert "day" in said[0].lower() and not crisis_replies(fake, u.id)
    assert await triggers(db) == 1


async def test_a_finished_checkins_closing_arrives_once_though_the_process_died_after_recording_it(
    h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    u = fake.add_user(first_name="Ash", started=True)
    await make_patient(db, clock.now(), telegram_id=u.id, sobriety_date=date(2026, 1, 1))
    await h.send(u, "/checkin")
    screen = fake.last(u.id)
    for data in ("ci:a:mood:3", "ci:a:craving:1", "ci:a:use:no_use", "ci:d:halt", "ci:a:sleep:3"):
        await h.press(u, screen, data)
    question = fake.sent_message(u.id, screen.message_id).plain_text
    assert "ci:skip:note" in fake.sent_message(u.id, screen.message_id).callback_data
    sent_before = len(fake.sent(u.id))

    async def completed(s: AsyncSession) -> bool:
        return (await s.execute(select(CheckinEntry.completed_at))).scalar_one() is not None

    dies_after_commit(h, monkeypatch, completed)
    fake.press(u, screen, "ci:skip:note")
    pressed = fake.updates[-1].update_id
    await h.handled(pressed)
    assert fake.sent_message(u.id, screen.message_id).plain_text == question  # nothing reached the patient
    await handled_again(h, pressed, clock, minutes=1)
    closing = fake.sent_message(u.id, screen.message_id)
    assert closing.plain_text != question and "ci:skip:note" not in closing.callback_data
    assert "Thank" in (closing.plain_text or "")
    texts = [m.plain_text for m in fake.sent(u.id)]
    assert texts.count(closing.plain_text) == 1 and len(texts) >= sent_before
