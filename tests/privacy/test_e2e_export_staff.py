"""A patient's data export leaves staff out (issue 12, item 11), end to end: the real Application
over HTTP against the fake Bot API.

The clinic's model: the outcome note a counselor writes when resolving a flag is part of the
patient's record (42 CFR Part 2 and HIPAA give patients access to their record; it is not a
psychotherapy note kept apart by a clinician), so /mydata includes it, but never who on the staff
claimed, resolved, viewed or wrote ("a counselor" instead). The counselor is told so at the prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot.platform.content import get_content
from bot.privacy import service as privacy
from fakeapi import FakeTelegram
from tests import escalation_support as sup
from tests.harness import BotHarness

pytestmark = pytest.mark.usefixtures("stub_detector")

C = get_content()
NOTE = "INTERNAL NOTE: called her, safe with her sister tonight, review Thursday"


def text(msg: Any) -> str:
    return msg.plain_text or ""


def _values(doc: Any) -> list[Any]:
    """Every key and value in the document, at any depth."""
    if isinstance(doc, dict):
        return [v for k, x in doc.items() for v in (k, *_values(x))]
    if isinstance(doc, list):
        return [v for x in doc for v in _values(x)]
    return [doc]


def _staff_columns() -> set[tuple[str, str]]:
    """Every (table, column) the models mark as naming a staff member, in a patient's tables."""
    tables = {t.name: t for t in privacy._tables()}
    return {(name, c.name) for name in privacy._conditions(1) for c in tables[name].c if c.info.get("staff")}


async def test_the_export_has_the_outcome_note_and_no_staff_identity(h: BotHarness, fake: FakeTelegram) -> None:
    u = fake.add_user(first_name="Jordan", started=True)
    await sup.add_patient(h.db, h.clock.now(), telegram_id=u.id, code="P-4712", first_name="Jordan")
    dana = fake.add_user(first_name="Dana", last_name="Whitfield", username="dana_w", started=True)
    kim = fake.add_user(first_name="Kimberly", username="kim_r", started=True)
    for who in (dana, kim):
        await h.push(fake.join(h.group, who))
    await h.send(h.admin, f"/grant {dana.id} counselor")
    staff = (dana, kim, h.admin)

    await h.send(u, "I'm going to end it all tonight")
    post = next(m for m in reversed(fake.sent(h.group.id)) if any(d.startswith("fl:claim:") for d in m.callback_data))
    flag_id = int(next(d for d in post.callback_data if d.startswith("fl:claim:")).split(":")[2])

    # Kim and the admin open Details; Dana claims, writes to the patient, and resolves.
    for who in (kim, h.admin):
        await h.press(who, post, f"fl:details:{flag_id}")
        assert "Jordan" in text(fake.last(who.id))
    await h.press(dana, post, f"fl:claim:{flag_id}")
    await h.press(dana, post, f"fl:msg:{flag_id}")
    await h.send(dana, "We are here for you. Can you call the clinic line now?")
    assert "We are here for you" in text(fake.last(u.id))
    await h.send(u, "ok, calling now")
    assert "calling now" in text(fake.last(dana.id))
    await h.press(dana, post, f"fl:resolve:{flag_id}")
    prompt = text(fake.last(dana.id))
    assert prompt == C.t("flags.resolve_prompt", "en", id=flag_id, code="P-4712").replace("<b>", "").replace("</b>", "")
    assert "the patient can read it in their data export" in prompt and "without your name" in prompt
    await h.send(dana, NOTE)
    assert f"Flag #{flag_id} is resolved" in text(fake.last(dana.id))

    await h.send(u, "/mydata")
    sent = fake.last(u.id)
    assert sent.kind == "document" and sent.file_bytes is not None
    raw = sent.file_bytes.decode()
    doc = json.loads(raw)

    # The note is part of the patient's record; the patient's own data is all there.
    (flag,) = doc["data"]["flags"]
    assert flag["outcome"] == NOTE and flag["status"] == "resolved"
    assert doc["data"]["patient"]["telegram_id"] == u.id and doc["data"]["patient"]["first_name"] == "Jordan"
    assert any("end it all" in (e.get("evidence") or "") for e in doc["data"]["flag_events"])

    # No staff id, name or username anywhere in the document.
    values = _values(doc)
    for who in staff:
        assert who.id not in values, who.id
        assert not re.search(rf"(?<!\d){who.id}(?!\d)", raw), who.id
        for word in (who.first_name, who.last_name, who.username):
            if word:
                assert word.lower() not in raw.lower(), word

    # Every column the models mark as naming staff was filled in this flow, and says "a counselor".
    label = C.t("privacy.export_staff", "en")
    seen: dict[tuple[str, str], set[Any]] = {}
    for table, column in _staff_columns():
        for row in doc["data"].get(table, []):
            if row[column] is not None:
                seen.setdefault((table, column), set()).add(row[column])
    assert seen == {key: {label} for key in _staff_columns()}, seen
    assert {("flags", "claimed_by"), ("flags", "resolved_by_name"), ("flag_events", "actor_id"), ("relay_conversations", "counselor_id")} <= set(seen)
    fake.assert_no_errors()
