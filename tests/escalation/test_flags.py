"""The flag service: lifecycle, group posts and their edits, re-notification, digest, on call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.core.models import AuditEntry, StaffRole
from bot.core.vocabulary import FLAG_SEVERITIES, Category, FlagStatus
from bot.escalation import area as escalation_area
from bot.escalation import rendering, rules, service
from bot.escalation.digest import KIND_DIGEST, build_digest, ensure_digest_scheduled
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.oncall import counselor_ids, get_oncall, set_oncall
from bot.escalation.rendering import record_sent, render_details
from bot.escalation.renotify import restart_renotify
from bot.escalation.rules import (
    Workflow,
    build_workflow,
    check_content,
    sources,
)
from bot.escalation.service import (
    FlagResult,
    claim,
    details,
    get_flag,
    history,
    open_flags,
    raise_flag,
    resolve,
)
from bot.platform.clock import FrozenClock
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.models import OutboxMessage, ScheduledItem
from bot.platform.scheduler import Sweeper
from tests import escalation_support as sup


@pytest.fixture
async def env(db: Database, clock: FrozenClock) -> AsyncIterator[SimpleNamespace]:
    hub = sup.hub(db, clock, sup.settings())
    escalation_area.install(hub)
    pid = await sup.add_patient(db, clock.now())
    yield SimpleNamespace(hub=hub, pid=pid, db=db, clock=clock, wf=hub.get(Workflow))


async def _outbox(db: Database) -> list[OutboxMessage]:
    async with db.session() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def _raise(env: SimpleNamespace, severity: str = "crisis", category: str = "suicide_self_harm", **kw: Any) -> FlagResult:
    async with env.db.transaction() as s:
        return await raise_flag(
            s,
            kw.pop("wf", env.wf),
            patient_id=env.pid,
            category=category,
            severity=severity,
            reason=kw.pop("reason", "risk:test"),
            source=kw.pop("source", "message"),
            now=env.clock.now(),
            evidence=kw.pop("evidence", "I will end it all tonight"),
            **kw,
        )


async def _sent(env: SimpleNamespace, row: OutboxMessage, message_id: int) -> None:
    async with env.db.transaction() as s:
        await record_sent(s, env.hub.get(Workflow), row.ref or "", row.chat_id, message_id, env.clock.now())


async def test_a_flag_is_posted_once_with_code_and_no_words(env: SimpleNamespace):
    r1 = await _raise(env)
    r2 = await _raise(env, severity="high", evidence="another message")
    assert r1.created and not r2.created and r1.flag_id == r2.flag_id
    rows = await _outbox(env.db)
    assert len(rows) == 1
    post = rows[0]
    text = post.payload["text"]
    assert post.chat_id == sup.GROUP
    assert "P-1234" in text and f"#{r1.flag_id}" in text and "CRISIS" in text
    assert "suicide or self-harm" in text
    assert "Jordan" not in text and "end it all" not in text
    data = [b["callback_data"] for row in post.payload["reply_markup"]["inline_keyboard"] for b in row]
    assert data == [f"fl:claim:{r1.flag_id}", f"fl:details:{r1.flag_id}", f"fl:msg:{r1.flag_id}", f"fl:resolve:{r1.flag_id}"]
    async with env.db.session() as s:
        events = await history(s, r1.flag_id)
    assert [e.kind for e in events] == ["trigger", "trigger"]


async def test_other_categories_open_their_own_flag(env: SimpleNamespace):
    a = await _raise(env)
    b = await _raise(env, severity="moderate", category="severe_craving")
    assert a.flag_id != b.flag_id
    # Both on the patient's one card of the day: its post (not sent yet) now lists both.
    (card,) = await _outbox(env.db)
    text = card.payload["text"]
    assert f"#{a.flag_id}" in text and f"#{b.flag_id}" in text and "severe craving" in text


async def test_escalation_edits_the_post_and_brings_renotification_forward(env: SimpleNamespace):
    first = await _raise(env, severity="high")
    (post,) = await _outbox(env.db)
    await _sent(env, post, 501)
    up = await _raise(env, severity="crisis")
    assert up.escalated and up.severity == "crisis"
    rows = await _outbox(env.db)
    assert len(rows) == 3 and rows[1].method == "editMessageText"
    assert rows[1].payload["message_id"] == 501 and "CRISIS" in rows[1].payload["text"]
    # The group also hears of it: a reply to the post (an edit alone notifies nobody).
    assert rows[2].method == "sendMessage" and rows[2].payload["reply_parameters"]["message_id"] == 501
    assert "New trigger" in rows[2].payload["text"]
    async with env.db.session() as s:
        items = {i.key: (i.due_at, i.status) for i in (await s.execute(select(ScheduledItem))).scalars()}
    pending = {k: due for k, (due, status) in items.items() if status == "pending"}
    assert sorted(pending.values()) == [env.clock.now() + timedelta(minutes=5), env.clock.now() + timedelta(minutes=10)]
    assert all(k.startswith(f"flagrenotify:f{first.flag_id}:") for k in pending)


async def test_claim_then_resolve_edit_the_post_and_schedule_a_followup(env: SimpleNamespace):
    r = await _raise(env)
    (post,) = await _outbox(env.db)
    await _sent(env, post, 700)
    env.clock.advance(minutes=2)
    async with env.db.transaction() as s:
        res = await claim(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", now=env.clock.now())
    assert res.ok and res.flag is not None and res.flag.status == "claimed"
    async with env.db.transaction() as s:
        again = await claim(s, env.hub.get(Workflow), r.flag_id, actor_id=43, actor_name="Sam", now=env.clock.now())
    assert not again.ok and again.reason == "already_claimed" and again.flag.claimed_by_name == "Dana"
    edits = [x for x in await _outbox(env.db) if x.method == "editMessageText"]
    assert len(edits) == 1 and "Claimed by Dana" in edits[0].payload["text"]
    env.clock.advance(minutes=30)
    async with env.db.transaction() as s:
        done = await resolve(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", note="Called; safe with family", now=env.clock.now())
    assert done.ok and done.flag.status == "resolved"
    edits = [x for x in await _outbox(env.db) if x.method == "editMessageText"]
    assert len(edits) == 2 and "Resolved by Dana" in edits[1].payload["text"]
    assert "safe with family" not in edits[1].payload["text"]
    async with env.db.session() as s:
        keys = {i.key: i for i in (await s.execute(select(ScheduledItem))).scalars()}
        actions = [a.action for a in (await s.execute(select(AuditEntry))).scalars()]
    assert keys[f"flagfollowup:f{r.flag_id}"].due_at == env.clock.now() + timedelta(hours=24)
    assert keys[f"flagrenotify:f{r.flag_id}:s1"].status == "cancelled"
    assert actions == ["flag.claim", "flag.resolve"]
    async with env.db.transaction() as s:
        twice = await resolve(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", note="x", now=env.clock.now())
    assert not twice.ok and twice.reason == "resolved"
    # A new trigger after resolution opens a new flag.
    again_flag = await _raise(env)
    assert again_flag.created and again_flag.flag_id != r.flag_id


async def test_moderate_flags_get_no_followup_and_no_renotification(env: SimpleNamespace):
    r = await _raise(env, severity="moderate", category="severe_craving")
    async with env.db.transaction() as s:
        await resolve(s, env.hub.get(Workflow), r.flag_id, actor_id=1, actor_name="A", note="ok", now=env.clock.now())
    async with env.db.session() as s:
        assert (await s.execute(select(ScheduledItem))).scalars().all() == []


async def test_a_post_still_waiting_shows_a_claim_itself(env: SimpleNamespace):
    r = await _raise(env)
    async with env.db.transaction() as s:
        await claim(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", now=env.clock.now())
    (post,) = await _outbox(env.db)  # nowhere to edit yet: the waiting post carries the claim
    assert "Claimed by Dana" in post.payload["text"]
    await _sent(env, post, 900)
    assert len(await _outbox(env.db)) == 1  # nothing to catch up


async def test_a_post_sent_after_a_claim_is_caught_up(env: SimpleNamespace):
    r = await _raise(env)
    async with env.db.transaction() as s:  # the sender has taken the post: it is on its way
        await s.execute(update(OutboxMessage).values(status="sending"))
    async with env.db.transaction() as s:
        await claim(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", now=env.clock.now())
    assert len(await _outbox(env.db)) == 1  # nowhere to edit yet
    (post,) = await _outbox(env.db)
    assert "Claimed by Dana" not in post.payload["text"]
    await _sent(env, post, 900)
    rows = await _outbox(env.db)
    assert len(rows) == 2 and rows[1].payload["message_id"] == 900 and "Claimed by Dana" in rows[1].payload["text"]
    await _sent(env, post, 900)  # the hook running twice changes nothing more
    assert len(await _outbox(env.db)) == 2


async def test_crisis_renotification_reposts_then_messages_every_counselor(env: SimpleNamespace):
    async with env.db.transaction() as s:
        s.add(StaffRole(telegram_id=31, role="counselor", granted_at=env.clock.now()))
        s.add(StaffRole(telegram_id=32, role="counselor", granted_at=env.clock.now()))
        await set_oncall(s, 31, name="Dana", by=31, now=env.clock.now())
    r = await _raise(env)
    sweeper: Sweeper = env.hub.sweeper
    env.clock.advance(minutes=4)
    assert await sweeper.tick() == 0
    env.clock.advance(minutes=1)
    assert await sweeper.tick() == 1
    rows = await _outbox(env.db)
    repost = rows[-1]
    assert repost.chat_id == sup.GROUP and "Still unclaimed" in repost.payload["text"]
    assert 'tg://user?id=31' in repost.payload["text"] and "P-1234" in repost.payload["text"]
    env.clock.advance(minutes=5)
    assert await sweeper.tick() == 1
    dms = sorted(x.chat_id for x in await _outbox(env.db) if x.chat_id > 0)
    assert dms == [31, 32, 777]
    async with env.db.session() as s:
        kinds = [e.kind for e in await history(s, r.flag_id)]
    assert kinds.count("renotify") == 2


async def test_a_claimed_crisis_is_not_renotified(env: SimpleNamespace):
    r = await _raise(env)
    async with env.db.transaction() as s:
        await claim(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", now=env.clock.now())
    env.clock.advance(minutes=30)
    await env.hub.sweeper.tick()
    assert len(await _outbox(env.db)) == 1


async def test_high_is_reposted_after_thirty_minutes_only(env: SimpleNamespace):
    await _raise(env, severity="high", category="use_disclosure")
    env.clock.advance(minutes=29)
    assert await env.hub.sweeper.tick() == 0
    env.clock.advance(minutes=1)
    assert await env.hub.sweeper.tick() == 1
    rows = await _outbox(env.db)
    assert len(rows) == 2 and "Nobody is on call" in rows[1].payload["text"]
    env.clock.advance(hours=5)
    assert await env.hub.sweeper.tick() == 0


async def test_details_hold_the_words_and_are_audited(env: SimpleNamespace):
    r = await _raise(env)
    async with env.db.transaction() as s:
        d = await details(s, env.hub.get(Workflow), r.flag_id, actor_id=42, now=env.clock.now())
    assert d is not None and d.first_name == "Jordan"
    text = render_details(d, env.hub.get(Workflow))
    assert "Jordan" in text and "end it all tonight" in text and "P-1234" in text
    async with env.db.session() as s:
        audits = list((await s.execute(select(AuditEntry))).scalars())
        evs = list((await s.execute(select(FlagEvent.kind))).scalars())
    assert audits[-1].action == "flag.details" and audits[-1].actor_id == 42
    assert "Jordan" not in str(audits[-1].detail) and "details" in evs


async def test_open_flags_are_listed_by_their_latest_trigger(env: SimpleNamespace):
    a = await _raise(env, severity="moderate", category="severe_craving")
    opened = env.clock.now()
    env.clock.advance(minutes=5)
    b = await _raise(env, severity="crisis")
    async with env.db.session() as s:
        assert [f.id for f in await open_flags(s)] == [b.flag_id, a.flag_id]
    env.clock.advance(hours=3)
    await _raise(env, severity="moderate", category="severe_craving")
    async with env.db.session() as s:
        listed = await open_flags(s)
    assert [f.id for f in listed] == [a.flag_id, b.flag_id]
    assert listed[0].last_trigger_at == env.clock.now() and listed[0].opened_at == opened


async def test_oncall_show_set_clear(env: SimpleNamespace):
    async with env.db.session() as s:
        assert await get_oncall(s) is None
    async with env.db.transaction() as s:
        await set_oncall(s, 31, name="Dana", by=31, now=env.clock.now())
    async with env.db.session() as s:
        oc = await get_oncall(s)
    assert oc is not None and oc.telegram_id == 31 and oc.name == "Dana"
    async with env.db.transaction() as s:
        await set_oncall(s, None, name=None, by=31, now=env.clock.now())
    async with env.db.session() as s:
        assert await get_oncall(s) is None


async def test_digest_lists_open_flags_and_silent_patients_without_names(env: SimpleNamespace):
    await _raise(env, severity="moderate", category="severe_craving")
    env.clock.advance(days=4)
    async with env.db.session() as s:
        text = await build_digest(s, env.hub.get(Workflow), env.clock.now())
    assert "P-1234" in text and "severe craving" in text and "4 days" in text
    assert "Silent for 3+ days" in text
    assert "Jordan" not in text and "end it all" not in text


async def test_digest_is_scheduled_daily_and_posted(env: SimpleNamespace):
    async with env.db.transaction() as s:
        await ensure_digest_scheduled(s, env.hub.get(Workflow), env.clock.now())
    env.clock.advance(days=1)
    assert await env.hub.sweeper.tick() == 1
    rows = await _outbox(env.db)
    assert rows[-1].chat_id == sup.GROUP and "Daily digest" in rows[-1].payload["text"]
    async with env.db.session() as s:
        pending = [i for i in (await s.execute(select(ScheduledItem))).scalars() if i.status == "pending"]
    assert len(pending) == 1 and pending[0].kind == KIND_DIGEST


async def test_followup_reaches_the_patient_a_day_after_resolution(env: SimpleNamespace):
    r = await _raise(env)
    async with env.db.transaction() as s:
        await resolve(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", note="ok", now=env.clock.now())
    env.clock.advance(hours=24)
    await env.hub.sweeper.tick()
    rows = [x for x in await _outbox(env.db) if x.chat_id == 5001]
    assert len(rows) == 1 and "check in" in rows[0].payload["text"]
    data = [b["callback_data"] for row in rows[0].payload["reply_markup"]["inline_keyboard"] for b in row]
    assert data == [f"sf:fu:{r.flag_id}:ok", f"sf:fu:{r.flag_id}:bad", f"sf:fu:{r.flag_id}:talk"]


async def test_unknown_severity_or_category_is_refused(env: SimpleNamespace):
    with pytest.raises(ValueError):
        await _raise(env, severity="urgent")
    with pytest.raises(ValueError):
        await _raise(env, category="weather")


def test_rules_content_is_valid():
    from bot.platform.config import REPO_ROOT

    assert check_content(REPO_ROOT / "content") == []


async def test_the_counselor_holding_a_flag_hears_of_new_triggers(env: SimpleNamespace):
    r = await _raise(env)
    async with env.db.transaction() as s:
        await claim(s, env.hub.get(Workflow), r.flag_id, actor_id=42, actor_name="Dana", now=env.clock.now())
    await _raise(env, evidence="still thinking about it")
    dm = [x for x in await _outbox(env.db) if x.chat_id == 42]
    assert len(dm) == 1 and f"flag #{r.flag_id}" in dm[0].payload["text"] and "P-1234" in dm[0].payload["text"]
    assert "still thinking" not in dm[0].payload["text"] and "Jordan" not in dm[0].payload["text"]


async def test_erasing_one_patient_leaves_other_patients_reminders(env: SimpleNamespace):
    from bot.privacy import erasure
    from bot.privacy import service as privacy

    removed = erasure.removed_text(env.hub.content, env.hub.settings.default_language)

    other = await sup.add_patient(env.db, env.clock.now(), telegram_id=5002, code="P-2222", first_name="Robin")
    async with env.db.transaction() as s:
        r = await raise_flag(
            s, env.wf, patient_id=other, category="suicide_self_harm", severity="crisis", reason="t", source="message", now=env.clock.now()
        )
    async with env.db.transaction() as s:
        await privacy.erase(s, 5001, now=env.clock.now(), removed=removed)  # the first patient (id 1)
    async with env.db.session() as s:
        keys = {i.key for i in (await s.execute(select(ScheduledItem))).scalars()}
    assert {f"flagrenotify:f{r.flag_id}:s1", f"flagrenotify:f{r.flag_id}:s2"} <= keys
    async with env.db.transaction() as s:
        await privacy.erase(s, 5002, now=env.clock.now(), removed=removed)
    async with env.db.session() as s:
        assert (await s.execute(select(ScheduledItem))).scalars().all() == []


# -- labels: every category, severity, status and source the code can produce ------------------


def _content_copy(tmp_path, drop: list[str]):  # type: ignore[no-untyped-def]
    """A copy of content/ with the given dotted keys removed from en/messages/flags.yaml."""
    import shutil

    import yaml

    from tests.conftest import CONTENT_DIR

    root = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, root)
    f = root / "en" / "messages" / "flags.yaml"
    data = yaml.safe_load(f.read_text(encoding="utf-8"))
    for key in drop:
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        del node[last]
    f.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return root


def _code_labels() -> list[str]:
    wanted = {"category": list(Category), "severity": FLAG_SEVERITIES, "status": list(FlagStatus), "source": sources()}
    return [f"flags.{kind}.{key}" for kind, keys in wanted.items() for key in keys]


def test_every_label_the_code_can_produce_is_in_every_language():
    from bot.areas import content_checks
    from bot.platform.content import check

    c = get_content()
    assert "assessment_phq9" in sources() and "message" in sources()
    for lang in c.languages:
        missing = [k for k in _code_labels() if not str(c.messages[lang].get(k) or "").strip()]
        assert missing == [], (lang, missing)
    assert check(None, content_checks()) == []


def test_the_content_check_names_each_missing_label(tmp_path):  # type: ignore[no-untyped-def]
    from bot.areas import content_checks
    from bot.platform.content import check

    labels = _code_labels()
    root = _content_copy(tmp_path, labels)
    problems = {p.message.split(":")[0] for p in check(root, content_checks()) if p.file == "en/messages/flags.yaml"}
    assert set(labels) <= problems


def test_the_content_check_refuses_a_rule_category_the_flag_service_does_not_know(tmp_path):  # type: ignore[no-untyped-def]
    from bot.areas import content_checks
    from bot.platform.content import check

    root = _content_copy(tmp_path, [])
    f = root / "rules" / "assessments.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("category: anxiety", "category: worry"), encoding="utf-8")
    assert any(p.file == "rules/assessments.yaml" and "'worry'" in p.message for p in check(root, content_checks()))


async def test_a_missing_label_is_shown_in_plain_words_and_logged_once(env: SimpleNamespace, tmp_path, caplog):  # type: ignore[no-untyped-def]
    import logging

    from bot.platform.content import Content

    root = _content_copy(tmp_path, ["flags.category.depression", "flags.severity.moderate"])
    wf = build_workflow(env.hub.settings, Content(root))
    rules._missing_labels.clear()
    caplog.set_level(logging.ERROR, logger="bot.escalation.rules")
    r = await _raise(
        env, severity="moderate", category="depression", reason="phq9_moderately_severe", source="assessment_phq9",
        evidence=None, wf=wf,
    )
    assert r.created
    (post,) = await _outbox(env.db)
    assert post.chat_id == sup.GROUP
    assert "Patient: <b>P-1234</b>" in post.payload["text"]
    assert "Category: depression" in post.payload["text"] and "MODERATE" in post.payload["text"]
    async with env.db.session() as s:
        listed = await open_flags(s)
        digest = await build_digest(s, wf, env.clock.now())
    assert [f.id for f in listed] == [r.flag_id] and "depression" in digest
    logged = [rec.getMessage() for rec in caplog.records if "no label" in rec.getMessage()]
    assert sorted(logged) == sorted(
        {f"flags: no label flags.{k} for language en; showing the key instead" for k in ("category.depression", "severity.moderate")}
    )
    assert all("Jordan" not in m and "P-1234" not in m for m in logged)


async def test_a_post_that_cannot_be_rendered_is_still_sent_plainly(env: SimpleNamespace, monkeypatch):  # type: ignore[no-untyped-def]
    def broken(*_a: Any, **_k: Any) -> str:
        raise KeyError("flags.post")

    monkeypatch.setattr(rendering, "render_post", broken)
    r = await _raise(env, severity="high", category="medication", source="checkin")
    (post,) = await _outbox(env.db)
    assert post.payload["text"] == f"HIGH · Flag #{r.flag_id} · P-1234 · medication"
    assert [b["callback_data"] for row in post.payload["reply_markup"]["inline_keyboard"] for b in row][0] == f"fl:claim:{r.flag_id}"


async def test_every_member_of_the_group_is_messaged_when_a_crisis_stays_unclaimed(env: SimpleNamespace):
    from bot.core.roles import record_member

    async with env.db.transaction() as s:
        await record_member(s, 41, True, "member", env.clock.now())
        await record_member(s, 42, True, "administrator", env.clock.now())
        await record_member(s, 43, False, "left", env.clock.now())
        s.add(StaffRole(telegram_id=31, role="counselor", granted_at=env.clock.now()))
    async with env.db.session() as s:
        assert await counselor_ids(s, env.hub.settings) == [31, 41, 42, 777]
    await _raise(env)
    env.clock.advance(minutes=10)
    await env.hub.sweeper.tick()
    dms = sorted(x.chat_id for x in await _outbox(env.db) if x.chat_id > 0)
    assert dms == [31, 41, 42, 777]


async def test_a_low_flag_stays_out_of_the_group_until_it_rises(env: SimpleNamespace):
    kw: dict[str, Any] = dict(category="missed_checkins", source="checkin_silence", evidence=None)
    low = await _raise(env, severity="low", reason="checkin_silent: No check-in for 3 days or more", **kw)
    async with env.db.transaction() as s:  # a counselor takes it from /flags
        await claim(s, env.hub.get(Workflow), low.flag_id, actor_id=42, actor_name="Dana", now=env.clock.now())
    assert await _outbox(env.db) == []  # low: no post, nothing to edit, no re-notification
    async with env.db.session() as s:
        assert (await s.execute(select(ScheduledItem))).scalars().all() == []
    async with env.db.transaction() as s:  # a message in Dana's private chat shows it
        await record_sent(s, env.hub.get(Workflow), f"flag:{low.flag_id}:1:t", 42, 77, env.clock.now())
    up = await _raise(env, severity="moderate", reason="checkin_silent_week: No check-in for 7 days or more", **kw)
    assert up.escalated and up.flag_id == low.flag_id
    posts = [r for r in await _outbox(env.db) if r.chat_id == sup.GROUP]
    assert len(posts) == 1 and posts[0].method == "sendMessage"
    assert "MODERATE" in posts[0].payload["text"] and f"#{low.flag_id}" in posts[0].payload["text"]
    assert "no check-in for" in posts[0].payload["text"]


async def test_a_flag_whose_announcement_fails_is_kept_and_posted_plainly(env: SimpleNamespace, monkeypatch):  # type: ignore[no-untyped-def]
    async def broken(*_a: Any, **_k: Any) -> None:
        raise KeyError("flags.something.new")

    monkeypatch.setattr(service, "_after_raise", broken)
    r = await _raise(env, severity="moderate", category="depression", source="assessment_phq9", evidence=None)
    async with env.db.session() as s:
        assert (await get_flag(s, r.flag_id)) is not None
    (post,) = await _outbox(env.db)
    assert post.chat_id == sup.GROUP and post.payload["text"] == f"MODERATE · Flag #{r.flag_id} · P-1234 · depression"


async def test_a_new_trigger_never_pushes_an_unclaimed_flags_alarm_later(env: SimpleNamespace):
    """A patient writing again and again: the unclaimed crisis flag is still re-posted 5 minutes
    and sent to counselors directly 10 minutes after its first trigger, not after the last."""
    first = await _raise(env)
    start = env.clock.now()
    for _ in range(3):
        env.clock.advance(minutes=3)
        async with env.db.transaction() as s:
            flag = await s.get(Flag, first.flag_id)
            assert flag is not None and flag.status == "open"
            event = FlagEvent(flag_id=flag.id, at=env.clock.now(), kind="trigger", severity="crisis")
            s.add(event)
            await s.flush()
            await restart_renotify(s, env.hub.get(Workflow), flag, env.clock.now(), event)
    async with env.db.session() as s:
        items = (await s.execute(select(ScheduledItem).where(ScheduledItem.status == "pending"))).scalars().all()
    due = sorted(i.due_at for i in items if i.kind == "flag_renotify")
    assert due == [start + timedelta(minutes=5), start + timedelta(minutes=10)]
    # The minutes it will say are counted from the first trigger too.
    assert {i.payload["since"] for i in items if i.kind == "flag_renotify"} == {start.isoformat()}
