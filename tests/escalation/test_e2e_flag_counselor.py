"""The counselor's side of a flag, end to end: the post says why, Details has what a counselor
needs (in the clinic's zone, named), low flags wait for the digest, one card per patient and day,
and the digest after a crisis day."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.assessments.models import AssessmentResult
from bot.checkins.models import CheckinEntry
from bot.core.models import Patient
from bot.core.vocabulary import Category
from bot.escalation.digest import KIND_DIGEST
from bot.escalation.models import Flag
from bot.escalation.rendering import why_text
from bot.escalation.rules import Workflow, sources
from bot.escalation.service import raise_flag
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import ScheduledItem
from bot.recovery import plans
from bot.recovery.rules import load_sos_rules
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.conftest import CONTENT_DIR
from tests.harness import BotHarness

TUESDAY_10AM = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST), the clinic's zone
CONTENT = Path(__file__).resolve().parents[2] / "content"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(TUESDAY_10AM)


pytestmark = pytest.mark.usefixtures("stub_detector")


async def _patient(fake: FakeTelegram, db: Database, clock: FrozenClock, **kw: Any):  # type: ignore[no-untyped-def]
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(db, clock.now(), telegram_id=u.id, code=kw.pop("code", "P-1234"), first_name="Jordan")
    if kw:
        async with db.transaction() as s:
            p = (await s.execute(select(Patient).where(Patient.telegram_id == u.id))).scalar_one()
            for k, v in kw.items():
                setattr(p, k, v)
    return u


async def _pid(db: Database, telegram_id: int) -> int:
    async with db.session() as s:
        return (await s.execute(select(Patient.id).where(Patient.telegram_id == telegram_id))).scalar_one()


def _group(h: BotHarness, fake: FakeTelegram) -> list[Any]:
    """The group's messages other than service messages, as they stand now."""
    return [m for m in fake.sent(h.group.id) if m.kind == "text"]


async def _press(h: BotHarness, fake: FakeTelegram, user: Any, data: str) -> None:
    msg = next(m for m in reversed(fake.sent(user.id)) if data in m.callback_data)
    await h.press(user, msg, data)


async def _checkin(h: BotHarness, fake: FakeTelegram, u: Any, *, craving: int = 2, use: str = "no_use") -> None:
    await h.send(u, "/checkin")
    for data in ("ci:a:mood:3", f"ci:a:craving:{craving}", f"ci:a:use:{use}", "ci:d:halt", "ci:a:sleep:4", "ci:skip:note"):
        await _press(h, fake, u, data)


async def _phq9(h: BotHarness, fake: FakeTelegram, u: Any, answers: list[int]) -> None:
    await _checkin(h, fake, u)
    await _press(h, fake, u, "as:start:phq9")
    for i, v in enumerate(answers, start=1):
        await _press(h, fake, u, f"as:a:phq9:q{i}:{v}")
        if i == 9 and v > 0:
            return  # item 9: the follow-up questions take over; the flag is already up


# -- 9. the group post says why -------------------------------------------------------------


async def _by_message(h, fake, u, clock):  # type: ignore[no-untyped-def]
    await h.send(u, "I'm going to end it all tonight")


async def _by_checkin_use(h, fake, u, clock):  # type: ignore[no-untyped-def]
    await _checkin(h, fake, u, use="used")


async def _by_checkin_craving(h, fake, u, clock):  # type: ignore[no-untyped-def]
    await _checkin(h, fake, u, craving=9)
    clock.advance(days=1)
    await _checkin(h, fake, u, craving=9)


async def _by_phq9_item9(h, fake, u, clock):  # type: ignore[no-untyped-def]
    await _phq9(h, fake, u, [0, 0, 0, 0, 0, 0, 0, 0, 1])


async def _by_phq9_total(h, fake, u, clock):  # type: ignore[no-untyped-def]
    await _phq9(h, fake, u, [2, 2, 2, 2, 2, 2, 2, 2, 0])
    await _press(h, fake, u, "as:a:phq9:difficulty:1")


async def _by_talk(h, fake, u, clock):  # type: ignore[no-untyped-def]
    await h.send(u, "/talk")


WHY_CASES = {
    "message": (_by_message, "Why: typed message · suicide or self-harm"),
    "checkin_use": (_by_checkin_use, "Why: check-in · use disclosed"),
    "checkin_craving": (_by_checkin_craving, "Why: check-in · craving 9/10, high on 2 of the last 3 days"),
    "phq9_item9": (_by_phq9_item9, "Why: PHQ-9 item 9: Several days (1)"),
    "phq9_total": (_by_phq9_total, "Why: PHQ-9 total 16 (moderately severe)"),
    "talk": (_by_talk, "Why: patient asked to talk to a counselor (/talk)"),
}


@pytest.mark.parametrize("case", sorted(WHY_CASES))
async def test_the_group_post_says_why_in_plain_words(case: str, h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    act, why = WHY_CASES[case]
    await act(h, fake, u, clock)
    posts = [m.plain_text or "" for m in _group(h, fake)]
    assert any(why in p for p in posts), posts
    texts = sup.group_texts(h, fake)
    assert not any("Jordan" in t or "end it all" in t for t in texts)
    # No rule ids and no raw keys reach the counselors.
    assert not any(re.search(r"\b[a-z]+_[a-z_]+\b|\{|risk:", t) for t in posts), posts
    fake.assert_no_errors()


def _rules_with_reasons() -> list[tuple[str, str]]:
    """(rule id, reason) of every flag rule in content/rules: what raise_rule_flag stores."""
    out: list[tuple[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("id"), str) and isinstance(node.get("reason"), str) and "severity" in node:
                out.append((node["id"], node["reason"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for f in sorted((CONTENT / "rules").glob("*.yaml")):
        walk(yaml.safe_load(f.read_text(encoding="utf-8")))
    return out


# Every answer a readable reason may name, with a plausible value.
ALL_FACTS = {f"q{i}": 1 for i in range(1, 10)} | {
    "total": 16, "domain_risk": 15, "domain_protective": 5, "mood": 2, "craving": 9, "use": "used",
    "sleep": 2, "medication": "not_taken", "days": 4,
}


def test_every_rule_and_source_reads_in_plain_words():
    c = get_content()
    rules = _rules_with_reasons()
    assert len(rules) >= 10
    for source in sources(CONTENT):
        for rule, reason in rules:
            for facts in (ALL_FACTS, {}):  # with the answers, and without (older flags)
                text = why_text({"source": source, "rule": rule, "reason": reason, "facts": facts}, content=c, lang="en")
                assert text and "{" not in text and rule not in text, (source, rule, text)
        plain = why_text({"source": source, "rule": None, "reason": "confirmed by the patient"}, content=c, lang="en")
        assert c.t(f"flags.source.{source}", "en") in plain and "confirmed by the patient" in plain
        for category in Category:
            risk = why_text({"source": source, "rule": "risk", "reason": category}, content=c, lang="en")
            assert c.t(f"flags.category.{category}", "en") in risk and "_" not in risk


# -- Details and the clinic's zone -----------------------------------------------------------


async def test_details_show_what_a_counselor_needs_in_the_clinic_zone(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    # The patient lives in Berlin; the clinic (and every time shown to counselors) is New York.
    u = await _patient(fake, db, clock, timezone="Europe/Berlin", mat=True, medication_schedule="weekly")
    pid = await _pid(db, u.id)
    dana = await sup.add_counselor(h, fake)
    async with db.transaction() as s:
        await plans.add_entry(s, load_sos_rules(CONTENT_DIR).plan, pid, "people", "Sam (sponsor) 617 555 0134", clock.now())
        await plans.add_entry(s, load_sos_rules(CONTENT_DIR).plan, pid, "coping", "walk round the block", clock.now())
        for days_ago in range(9):  # nine check-ins: Details shows the last seven
            done = clock.now() - timedelta(days=days_ago, hours=1)  # 09:00 New York, 15:00 Berlin
            s.add(CheckinEntry(
                patient_id=pid, local_date=(done + timedelta(hours=1)).date(), started_at=done, updated_at=done,
                completed_at=done, mood=2, craving=days_ago, use="no_use", medication="not_taken",
            ))
        s.add(AssessmentResult(
            patient_id=pid, instrument="phq9", local_date=date(2026, 3, 2), status="done",
            answers={f"q{i}": {"v": 2 if i < 9 else 1} for i in range(1, 10)}, total=17, band="moderately_severe",
            started_at=clock.now() - timedelta(days=1), completed_at=clock.now() - timedelta(days=1),
        ))
    await h.send(u, "craving is bad")  # a moderate flag first: one of the patient's other open flags
    clock.advance(minutes=5)
    await h.send(u, "I'm going to end it all tonight")
    async with db.session() as s:
        ids = {f.category: f.id for f in (await s.execute(select(Flag))).scalars()}
    crisis_id, craving_id = ids["suicide_self_harm"], ids["severe_craving"]
    card = _group(h, fake)[0]
    await h.press(dana, card, f"fl:details:{crisis_id}")
    d = "\n".join(m.plain_text or "" for m in fake.sent(dana.id))
    assert "Jordan" in d and "end it all tonight" in d
    assert "Times are America/New_York (EST)." in d and "UTC" not in d and "CET" not in d
    assert "typed message · suicide or self-harm" in d and "risk:" not in d and "stub_" not in d
    assert "10:05" in d  # the trigger, in New York time
    assert "PHQ-9: total 17 · Moderately severe" in d and "item 9 (thoughts of death or self-harm): Several days (1)" in d
    assert f"#{craving_id}" in d and "severe craving" in d
    assert "Sam (sponsor) — +1 617 555 0134" in d and "walk round the block" in d
    assert "MAT: yes · weekly medication" in d
    checkins = [line for line in d.splitlines() if "mood 2 · craving" in line]
    assert len(checkins) == 7 and all("09:00" in line and "15:00" not in line for line in checkins)
    assert "medication No" in checkins[0] and "use No" in checkins[0]
    # The flag's history in the group reads the same way: no rule ids, no words.
    await h.send(dana, f"/flag {crisis_id}", chat=h.group)
    history = fake.last(h.group.id).plain_text or ""
    assert "trigger · 🔴 CRISIS · typed message · suicide or self-harm" in history
    assert "risk:" not in history and "stub_" not in history and "end it all" not in history
    fake.assert_no_errors()


async def test_patient_view_uses_one_zone_and_names_it(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock, timezone="Europe/Berlin")
    await _checkin(h, fake, u, craving=3)
    await h.send(u, "I used last night")
    await h.send(sup_admin(fake), "/patient P-1234")
    view = next(m.plain_text or "" for m in reversed(fake.sent(sup_admin(fake).id)) if "Patient P-1234" in (m.plain_text or ""))
    assert "Times are America/New_York (EST)." in view
    assert "UTC" not in view and "15:00" not in view and "16:00" not in view  # neither UTC nor Berlin
    assert "Tue 03 Mar 10:00" in view  # the check-in and the flag, in New York time
    assert "use disclosed" in view and "use_disclosure" not in view
    fake.assert_no_errors()


def sup_admin(fake: FakeTelegram) -> Any:
    from tests.harness import ADMIN_ID

    return fake.user(ADMIN_ID)


# -- 10. less noise ------------------------------------------------------------------------------


async def _digest(h: BotHarness, fake: FakeTelegram, clock: FrozenClock) -> str:
    """Move to the next 08:30 in New York and let the digest go out; its text."""
    async with h.hub.db.session() as s:
        due = min(
            i.due_at for i in (await s.execute(select(ScheduledItem))).scalars()
            if i.kind == KIND_DIGEST and i.status == "pending"
        )
    clock.set(due)
    await h.tick()
    return next(m.plain_text or "" for m in reversed(_group(h, fake)) if "Daily digest" in (m.plain_text or ""))


async def test_a_low_flag_goes_to_the_digest_only(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    pid = await _pid(db, u.id)
    async with h.hub.db.transaction() as s:
        r = await raise_flag(
            s, h.hub.get(Workflow), patient_id=pid, category="missed_checkins", severity="low",
            reason="checkin_silent: No check-in for 3 days or more", source="checkin_silence", now=clock.now(),
        )
    h.hub.sender.wake()
    await h.outbox_idle()
    assert _group(h, fake) == []
    clock.advance(hours=3)
    await h.tick()  # no re-notification for a low flag either
    assert _group(h, fake) == []
    digest = await _digest(h, fake, clock)
    assert "Low flags (digest only, not posted): 1" in digest and "No open flags" not in digest
    assert f"#{r.flag_id}" in digest and "P-1234" in digest and "missed check-ins" in digest
    assert "Jordan" not in digest
    fake.assert_no_errors()


async def test_one_card_per_patient_and_day(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    dana = await sup.add_counselor(h, fake)
    await h.send(u, "I used last night")
    clock.advance(hours=2)
    await h.send(u, "my craving is bad")
    group = _group(h, fake)
    assert len(group) == 1, [m.texts for m in group]  # one message for the patient's day, edited
    card = group[0]
    async with db.session() as s:
        ids = {f.category: f.id for f in (await s.execute(select(Flag))).scalars()}
    use, craving = ids["use_disclosure"], ids["severe_craving"]
    text = card.plain_text or ""
    assert "P-1234" in text and "2 flags today" in text and f"#{use}" in text and f"#{craving}" in text
    assert text.index(f"#{use}") < text.index(f"#{craving}")  # most severe first
    for fid in (use, craving):  # each flag keeps its own buttons
        assert {f"fl:claim:{fid}", f"fl:details:{fid}", f"fl:msg:{fid}", f"fl:resolve:{fid}"} <= set(card.callback_data)
    assert f"#{craving} ✋ Claim" in card.button_texts

    await h.press(dana, card, f"fl:claim:{craving}")
    card = fake.sent_message(h.group.id, card.message_id)
    text = card.plain_text or ""
    assert "Claimed by Dana" in text and "Not claimed yet" in text  # one each
    assert f"fl:claim:{craving}" not in card.callback_data and f"fl:claim:{use}" in card.callback_data

    # A crisis the same day: on the card, and a new message in reply to it (an edit notifies nobody).
    clock.advance(hours=3)
    await h.send(u, "I'm going to end it all tonight")
    group = _group(h, fake)
    assert len(group) == 2
    card, alert = fake.sent_message(h.group.id, card.message_id), group[1]
    assert "3 flags today" in (card.plain_text or "")
    assert alert.reply_to_message_id == card.message_id
    assert "New flag for P-1234" in (alert.plain_text or "") and "CRISIS" in (alert.plain_text or "")
    crisis = [d for d in alert.callback_data if d.startswith("fl:claim:")]
    assert len(crisis) == 1 and crisis[0] in card.callback_data

    # The next day starts a new card.
    clock.advance(days=1)
    await h.send(u, "took all my pills")
    assert len(_group(h, fake)) == 3 and "P-1234" in (_group(h, fake)[2].plain_text or "")
    fake.assert_no_errors()


async def test_flags_raised_together_arrive_as_one_card(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    pid = await _pid(db, u.id)
    async with h.hub.db.transaction() as s:  # two rules of one answer set, one transaction
        for category, severity in (("use_disclosure", "high"), ("severe_craving", "moderate")):
            await raise_flag(
                s, h.hub.get(Workflow), patient_id=pid, category=category, severity=severity, reason="r", source="checkin",
                now=clock.now(),
            )
    h.hub.sender.wake()
    await h.outbox_idle()
    (card,) = _group(h, fake)
    assert card.edits == [] and "2 flags today" in (card.plain_text or "")  # complete when it arrives
    fake.assert_no_errors()


async def test_the_digest_after_a_crisis_day(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    u = await _patient(fake, db, clock)
    pid = await _pid(db, u.id)
    dana = await sup.add_counselor(h, fake)
    async with db.transaction() as s:
        s.add(AssessmentResult(
            patient_id=pid, instrument="phq9", local_date=date(2026, 3, 3), status="done",
            answers={f"q{i}": {"v": 2 if i == 9 else 1} for i in range(1, 10)}, total=10, band="moderate",
            started_at=clock.now(), completed_at=clock.now(),
        ))
    await h.send(u, "I'm going to end it all tonight")
    card = _group(h, fake)[0]
    fid = next(d for d in card.callback_data if d.startswith("fl:claim:")).split(":")[2]
    await h.press(dana, card, f"fl:resolve:{fid}")
    clock.advance(hours=2)
    await h.send(dana, "Spoke by phone; safe with her sister tonight")
    digest = await _digest(h, fake, clock)
    assert "No notable changes" not in digest
    assert "Crisis or high in the last 24 h" in digest and f"#{fid}" in digest and "typed message · suicide or self-harm" in digest
    assert "Resolved in the last 24 h: 1" in digest and "by Dana" in digest
    assert "Follow-ups due in the next 24 h" in digest and f"after flag #{fid}" in digest
    assert "PHQ-9 item 9 above zero (last 24 h): P-1234 (item 9: More than half the days (2))" in digest
    assert "Times are America/New_York (EST)." in digest
    assert "Jordan" not in digest and "sister" not in digest
    fake.assert_no_errors()


async def test_a_quiet_day_still_says_no_notable_changes(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    await _patient(fake, db, clock)
    digest = await _digest(h, fake, clock)
    assert "No notable changes." in digest and "No open flags." in digest
    fake.assert_no_errors()


# -- answers as labels, never stored values ----------------------------------------------------


def test_every_option_of_every_instrument_reads_as_its_label() -> None:
    from bot.core.rules_loader import load_instruments

    clinical = load_instruments(CONTENT_DIR)
    for inst_id in clinical.instruments_by_lang["en"]:
        inst = clinical.instrument(inst_id, "en")
        for item in inst.items:
            for o in item.options:
                shown = inst.answer_label(item.id, o.value)
                assert shown.startswith(str(o.label)), (inst_id, item.id, o.value, shown)
                assert str(o.value) in str(o.label) or isinstance(o.value, int) or str(o.value) not in shown


async def test_counselor_views_show_every_checkin_answer_as_its_label(h: BotHarness, fake: FakeTelegram, db: Database, clock: FrozenClock):
    """/patient and Details list the last seven check-ins: driven from every option of the
    check-in's use, medication and HALT items (and PHQ-9 item 9 in Details and the digest), each
    shows the label in content, never the stored value."""
    from bot.core.rules_loader import load_instruments

    inst = load_instruments(CONTENT_DIR).checkin("en")
    phq = load_instruments(CONTENT_DIR).instrument("phq9", "en")
    use, medication, halt = (inst.item(i).options for i in ("use", "medication", "halt"))
    u = await _patient(fake, db, clock, mat=True)
    pid = await _pid(db, u.id)
    dana = await sup.add_counselor(h, fake)
    rows = max(len(use), len(medication), len(halt))
    async with db.transaction() as s:
        for i in range(rows):
            done = clock.now() - timedelta(days=i, hours=1)
            s.add(CheckinEntry(
                patient_id=pid, local_date=done.date(), started_at=done, updated_at=done, completed_at=done,
                mood=2, craving=3, use=use[i % len(use)].value, medication=medication[i % len(medication)].value,
                halt=[halt[i % len(halt)].value, halt[(i + 1) % len(halt)].value] if not halt[i % len(halt)].exclusive else [halt[i % len(halt)].value],
            ))
    # Stored values that are not plain words of the views ("none" is: "Open flags: none").
    raw = {str(o.value) for o in (*use, *medication, *halt)} - {"none"}
    await h.send(sup_admin(fake), "/patient P-1234")
    view = next(m.plain_text or "" for m in reversed(fake.sent(sup_admin(fake).id)) if "Patient P-1234" in (m.plain_text or ""))
    for o in (*use, *halt):
        assert str(o.label) in view, (o.value, view)
    words = set(re.findall(r"[a-z_]+", view))
    assert not raw & words, raw & words
    for q9 in phq.item("q9").options[1:]:
        async with db.transaction() as s:
            s.add(AssessmentResult(
                patient_id=pid, instrument="phq9", local_date=date(2026, 3, 2), status="done",
                answers={f"q{i}": {"v": q9.value if i == 9 else 0} for i in range(1, 10)}, total=q9.value, band="minimal",
                started_at=clock.now(), completed_at=clock.now(),
            ))
        clock.advance(minutes=1)
        await h.send(u, "I'm going to end it all tonight")
        async with db.session() as s:
            flag_id = (await s.execute(select(Flag.id))).scalars().first()
        n = len(fake.sent(dana.id))
        await h.press(dana, _group(h, fake)[0], f"fl:details:{flag_id}")
        d = "\n".join(m.plain_text or "" for m in fake.sent(dana.id)[n:])
        assert f"{q9.label} ({q9.value})" in d, d
        for o in (*use, *medication):
            assert str(o.label) in d, (o.value, d)
        assert not raw & set(re.findall(r"[a-z_]+", d))
    # The digest's item 9 line reads the same way.
    digest = await _digest(h, fake, clock)
    assert f"item 9: {phq.item('q9').options[-1].label}" in digest, digest
