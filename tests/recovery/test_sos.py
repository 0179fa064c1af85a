"""The /sos services: toolbox from data, exercise stepping, ratings, follow-up, talk, lapse."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from bot.checkins.lapse import lapse_message
from bot.checkins.sobriety import SobrietyNumbers
from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.config import OfficeHours
from bot.platform.content import Content, get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper
from bot.recovery import sos
from bot.recovery.library import clear_cache
from bot.recovery.rules import load_sos_rules
from bot.safety import crisis
from tests import escalation_support as sup
from tests.conftest import CONTENT_DIR
from tests.sos_helpers import make_patient

content = get_content(CONTENT_DIR)
RULES = load_sos_rules(CONTENT_DIR)
WF = sup.workflow()  # flags go to the counselors' group, as in the bot


def _all_data(rows: list[list[tuple[str, str]]]) -> list[str]:
    return [d for row in rows for _, d in row]


def test_toolbox_offers_every_tool_in_one_tap() -> None:
    text, rows = sos.toolbox(content, "en")
    data = _all_data(rows)
    for ex in sos.exercises(content, "en").exercises:
        assert f"sos:x:{ex.id}:0" in data
    assert {"sos:plan", "sos:call", "sos:talk"} <= set(data)
    assert "sos:meet" not in data  # hidden until the meeting lookup exists
    assert all(len(d.encode()) <= 64 for d in data)
    assert text


def test_a_new_exercise_in_yaml_appears_without_code(tmp_path: Path) -> None:
    root = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, root)
    path = root / "en" / "exercises.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["exercises"].append(
        {
            "id": "cold_water",
            "title": "Cold water",
            "button_label": "💧 Cold water",
            "steps": [{"text": "Run cold water over your hands."}, {"text": "Rate it.", "ask": {"key": "before"}}],
            "closing": "Well done.",
        }
    )
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    clear_cache()
    try:
        c = Content(root)
        _, rows = sos.toolbox(c, "en")
        assert "sos:x:cold_water:0" in _all_data(rows)
        view = sos.exercise_view(c, "en", "cold_water", 1)
        assert view is not None and "sos:r:cold_water:1:10" in _all_data(view[1])
    finally:
        clear_cache()


@pytest.mark.parametrize("exercise_id", ["ride_the_wave", "grounding_54321", "halt_check", "tape_forward"])
def test_each_exercise_can_be_walked_to_its_end(exercise_id: str) -> None:
    ex = sos.exercises(content, "en").get(exercise_id)
    assert ex is not None
    for i, step in enumerate(ex.steps):
        view = sos.exercise_view(content, "en", exercise_id, i)
        assert view is not None
        text, rows = view
        data = _all_data(rows)
        assert all(len(d.encode()) <= 64 for d in data)
        if step.ask is not None:
            assert f"sos:r:{exercise_id}:{i}:0" in data and f"sos:r:{exercise_id}:{i}:10" in data
            assert sos.rating_key(content, "en", exercise_id, i, 7) == step.ask.key
        elif step.choices is not None:
            assert data == [f"sos:c:{exercise_id}:{i}:{j}" for j in range(len(step.choices))]
            chosen = sos.exercise_view(content, "en", exercise_id, i, choice=0)
            assert chosen is not None and step.choices[0].text in chosen[0]
            assert _all_data(chosen[1]) == [f"sos:x:{exercise_id}:{i + 1}"]
        else:
            assert data == [f"sos:x:{exercise_id}:{i + 1}"]
    closing = sos.exercise_view(content, "en", exercise_id, len(ex.steps), ratings={"before": 7, "after": 4})
    assert closing is not None and ex.closing in closing[0]
    assert "sos:menu" in _all_data(closing[1])


def test_stale_or_forged_steps_are_refused() -> None:
    assert sos.exercise_view(content, "en", "nope", 0) is None
    assert sos.exercise_view(content, "en", "ride_the_wave", 99) is None
    assert sos.exercise_view(content, "en", "ride_the_wave", -1) is None
    assert sos.exercise_view(content, "en", "halt_check", 0, choice=9) is None
    assert sos.rating_key(content, "en", "ride_the_wave", 0, 5) is None  # not a rating step
    assert sos.rating_key(content, "en", "ride_the_wave", 1, 11) is None


async def _items(db: Database, kind: str = sos.FOLLOWUP_KIND) -> list[ScheduledItem]:
    async with db.session() as s:
        return list((await s.execute(select(ScheduledItem).where(ScheduledItem.kind == kind))).scalars())


async def _flags(db: Database) -> list[Flag]:
    async with db.session() as s:
        return list((await s.execute(select(Flag))).scalars())


def _sweeper(db: Database, clock: FrozenClock) -> Sweeper:
    sw = Sweeper(db, clock)
    sw.register(sos.FOLLOWUP_KIND, sos.followup_handler(content))
    return sw


async def test_one_pending_followup_per_person(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())
    async with db.transaction() as s:
        first = await sos.open_session(s, RULES, pid, clock.now())
    clock.advance(minutes=5)
    async with db.transaction() as s:
        again = await sos.open_session(s, RULES, pid, clock.now())
    assert again.id == first.id
    (item,) = await _items(db)
    assert item.key == f"urge:{pid}" and item.status == "pending"
    assert item.due_at == clock.now() + timedelta(minutes=20)

    sw = _sweeper(db, clock)
    clock.advance(minutes=20)
    assert await sw.tick() == 1
    assert await sw.tick() == 0
    async with db.session() as s:
        out = list((await s.execute(select(OutboxMessage))).scalars())
    assert len(out) == 1 and "How strong is the urge now" in out[0].payload["text"]

    # A later /sos is a new hard moment with its own follow-up.
    clock.advance(hours=5)
    async with db.transaction() as s:
        later = await sos.open_session(s, RULES, pid, clock.now())
    assert later.id != first.id
    items = await _items(db)
    assert [i.status for i in items if i.key == f"urge:{pid}"] == ["pending"]
    assert len(items) == 2


async def test_followup_lower_encourages_without_a_flag(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now(), sobriety_date=datetime(2026, 2, 20, tzinfo=UTC).date())
    async with db.transaction() as s:
        info = await sos.open_session(s, RULES, pid, clock.now())
        await sos.record_rating(s, pid, "before", 8, clock.now())
        await sos.record_rating(s, pid, "after", 6, clock.now())
    async with db.transaction() as s:
        res = await sos.answer_followup(s, WF, RULES, pid, info.id, 3, clock.now())
    assert res.status == "recorded" and res.lower and res.previous == 6 and res.flag_severity is None
    assert res.streak_days == 10
    text, rows = sos.followup_reply(content, "en", res)
    assert "6" in text and "3" in text and "10 days" in text
    assert await _flags(db) == []
    async with db.transaction() as s:
        twice = await sos.answer_followup(s, WF, RULES, pid, info.id, 9, clock.now())
    assert twice.status == "already"
    assert await _flags(db) == []


@pytest.mark.parametrize(
    ("before", "answer", "severity"),
    [(5, 6, "moderate"), (5, 5, "low"), (9, 8, "high"), (None, 9, "high")],
)
async def test_followup_same_higher_or_high_offers_counselor_and_flags(
    db: Database, clock: FrozenClock, before: int | None, answer: int, severity: str
) -> None:
    pid = await make_patient(db, clock.now())
    async with db.transaction() as s:
        info = await sos.open_session(s, RULES, pid, clock.now())
        if before is not None:
            await sos.record_rating(s, pid, "before", before, clock.now())
    async with db.transaction() as s:
        res = await sos.answer_followup(s, WF, RULES, pid, info.id, answer, clock.now())
    assert res.offer_counselor and res.flag_severity == severity
    (flag,) = await _flags(db)
    assert flag.category == "urge_followup" and flag.severity == severity
    text, rows = sos.followup_reply(content, "en", res)
    assert "sos:talk" in _all_data(rows)


async def test_followup_for_someone_else_is_refused(db: Database, clock: FrozenClock) -> None:
    a = await make_patient(db, clock.now())
    b = await make_patient(db, clock.now(), telegram_id=5009, code="P-9999")
    async with db.transaction() as s:
        info = await sos.open_session(s, RULES, a, clock.now())
    async with db.transaction() as s:
        assert (await sos.answer_followup(s, WF, RULES, b, info.id, 9, clock.now())).status == "unknown"
        assert (await sos.answer_followup(s, WF, RULES, a, info.id + 100, 9, clock.now())).status == "unknown"


async def test_talk_raises_one_flag(db: Database, clock: FrozenClock) -> None:
    pid = await make_patient(db, clock.now())
    async with db.transaction() as s:
        first = await sos.request_talk(s, WF, RULES, pid, clock.now())
        second = await sos.request_talk(s, WF, RULES, pid, clock.now())
    assert first.created and not second.created and first.flag_id == second.flag_id
    (flag,) = await _flags(db)
    assert flag.category == "talk_request" and flag.severity == "moderate"


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2026, 3, 2, 15, 0, tzinfo=UTC), "today until 5:00 pm your time (America/New_York)"),  # Monday 10:00 in New York
        (datetime(2026, 3, 2, 23, 0, tzinfo=UTC), "tomorrow at 9:00 am"),  # Monday 18:00
        (datetime(2026, 3, 7, 15, 0, tzinfo=UTC), "Monday at 9:00 am"),  # Saturday
        (datetime(2026, 3, 3, 12, 0, tzinfo=UTC), "today at 9:00 am"),  # Tuesday 07:00
    ],
)
def test_expectation_is_honest(when: datetime, expected: str) -> None:
    line = crisis.counselor_line("en", OfficeHours("Mon-Fri 09:00-17:00"), when, zone="America/New_York", content=content)
    assert expected in line


def test_expectation_in_the_patients_own_time() -> None:
    when = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    line = crisis.counselor_line(
        "en", OfficeHours("Mon-Fri 09:00-17:00"), when, zone="America/New_York", patient_zone="America/Los_Angeles", content=content
    )
    assert "tomorrow at 6:00 am your time (America/Los_Angeles)" in line


def test_lapse_message_is_warm_and_offers_next_steps() -> None:
    text, rows = lapse_message("en", content=content)
    assert "A lapse is not a relapse" in text
    # Without a sobriety date there is no counter to speak of; with one, the total still counts.
    assert "sober day" not in text
    numbers = SobrietyNumbers(
        sobriety_date=date(2026, 1, 1), streak_start=date(2026, 3, 1), current_days=0,
        longest_days=59, total_days=59, lapses=1, last_lapse=date(2026, 3, 1),
    )
    counted, _ = lapse_message("en", content=content, numbers=numbers)
    assert "Your 59 total sober days still count." in counted
    data = _all_data(rows)
    assert {"sos:call", "sos:talk", "sos:helped", "pl:add:triggers", "sos:menu"} <= set(data)
    assert "sos:meet" not in data
    lowered = text.lower()
    for word in ("failure", "failed", "weak", "shame", "should have", "disappoint"):
        assert word not in lowered

    class P:
        first_name = "<Sam>"

    named, _ = lapse_message("en", P(), content=content)
    assert "&lt;Sam&gt;" in named


def test_rules_file_is_checked(tmp_path: Path) -> None:
    from bot.recovery.rules import check_sos_rules

    assert check_sos_rules(CONTENT_DIR) == []
    (tmp_path / "rules").mkdir()
    text = (CONTENT_DIR / "rules" / "sos.yaml").read_text(encoding="utf-8")
    (tmp_path / "rules" / "sos.yaml").write_text(text.replace("delay_minutes: 20", "delay_minutes: -5"), encoding="utf-8")
    problems = check_sos_rules(tmp_path)
    assert problems and "delay_minutes" in problems[0][2]
