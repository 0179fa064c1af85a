"""Shared helpers for the escalation tests: patients in the database and a predictable detector."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from telegram import Bot

from bot.core.hub import Hub
from bot.core.models import Patient
from bot.core.roles import Roles
from bot.core.vocabulary import Severity
from bot.escalation.rules import Workflow, build_workflow
from bot.platform.clock import Clock
from bot.platform.config import Settings, load_settings
from bot.platform.content import get_content
from bot.platform.db import Database
from bot.platform.http import AiohttpRequest
from bot.platform.inbox import Inbox
from bot.platform.outbox import Sender
from bot.platform.scheduler import Sweeper

if TYPE_CHECKING:
    from fakeapi import FakeTelegram
    from tests.harness import BotHarness

GROUP = -1009999000001


@dataclass(frozen=True)
class StubMatch:
    rule_id: str


@dataclass(frozen=True)
class StubResult:
    severity: str
    category: str | None
    matches: tuple[StubMatch, ...]
    uncertain: bool


# Phrases the stub detector knows (lower case): severity, category, uncertain.
PHRASES: dict[str, tuple[str, str, bool]] = {
    "end it all tonight": ("crisis", "suicide_self_harm", False),
    "took all my pills": ("crisis", "overdose_medical", False),
    "don't want to wake up": ("high", "suicide_self_harm", True),
    "maybe i'd be better off gone": ("moderate", "suicide_self_harm", True),
    "i used last night": ("high", "use_disclosure", False),
    "craving is bad": ("moderate", "severe_craving", False),
}


class StubDetector:
    def __init__(self) -> None:
        self.calls = 0

    def detect(self, text: str, lang: str | None = None) -> StubResult:
        self.calls += 1
        low = text.lower()
        best: StubResult = StubResult("none", None, (), False)
        for phrase, (sev, cat, unsure) in PHRASES.items():
            if phrase in low and Severity(sev) > best.severity:
                best = StubResult(sev, cat, (StubMatch(f"stub_{cat}"),), unsure)
        return best


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        counselor_chat_id=GROUP,
        admin_user_ids=[777],
        office_hours="Mon-Fri 09:00-17:00",
        default_timezone="America/New_York",
    )
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def hub(db: Database, clock: Clock, settings: Settings) -> Hub:
    """A real hub on `db` and `clock` with no area installed and nothing running: the tests of
    one area install it (and what it needs) and call its services directly. Its sender is never
    started, so nothing reaches Telegram."""
    return Hub(
        settings=settings,
        db=db,
        clock=clock,
        content=get_content(settings.content_dir),
        inbox=Inbox(db, clock),
        sender=Sender(db, Bot("123456:TEST", base_url="http://127.0.0.1:9/bot"), clock),
        sweeper=Sweeper(db, clock),
        roles=Roles(db, settings, clock),
        updates_request=AiohttpRequest(pool_size=1),
    )


def workflow(**overrides: Any) -> Workflow:
    """An escalation workflow on `settings(**overrides)` and the repository's content, for tests
    that call an area's services without a hub."""
    return build_workflow(settings(**overrides))


async def add_patient(
    db: Database, now: datetime, *, telegram_id: int = 5001, code: str = "P-1234", first_name: str = "Jordan"
) -> int:
    async with db.transaction() as s:
        p = Patient(
            telegram_id=telegram_id,
            code=code,
            first_name=first_name,
            status="active",
            language="en",
            timezone="America/New_York",
            created_at=now,
        )
        s.add(p)
        await s.flush()
        return p.id


async def add_counselor(h: BotHarness, fake: FakeTelegram, name: str = "Dana") -> Any:
    """A counselor who has opened a chat with the bot and joins the counselors' group."""
    c = fake.add_user(first_name=name, started=True)
    await h.push(fake.join(h.group, c))
    return c


def group_texts(h: BotHarness, fake: FakeTelegram) -> list[str]:
    """Every text the counselors' group has seen (each version of an edited message) and every
    button label."""
    out: list[str] = []
    for m in fake.sent(h.group.id):
        out += [t or "" for t in m.texts]
        out += m.button_texts
    return out
