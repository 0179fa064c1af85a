"""The /sos toolbox: guided exercises, urge ratings, talk to my counselor, urge follow-up.

Exercises are data (`content/<lang>/exercises.yaml`, loaded by `bot.recovery.library`): a clinician adds
one there and it appears in the toolbox. Stepping is carried in short callback data
(`sos:x:<exercise>:<step>`), so a half-done exercise survives a restart. Each /sos opens an
urge session; about 20 minutes later (content/rules/sos.yaml) the sweeper asks how strong the
urge is now (kind `urge_followup`, key `urge:<patient id>`: at most one pending per person).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.checkins import sobriety
from bot.core.models import Patient
from bot.escalation.rules import Workflow
from bot.escalation.service import raise_flag, talk_request
from bot.platform import scheduler
from bot.platform.callbacks import Codec
from bot.platform.clock import local_date
from bot.platform.content import Content
from bot.platform.keyboards import inline_keyboard
from bot.platform.models import ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.recovery import buttons
from bot.recovery.library import Exercise, ExerciseSet, load_library
from bot.recovery.models import UrgeSession
from bot.recovery.rules import SosRules
from bot.safety import crisis

FOLLOWUP_KIND = "urge_followup"
# Ratings and tools within this long after /sos belong to the same hard moment.
SESSION_WINDOW = timedelta(hours=3)
RATING_VALUES = tuple(range(11))

Button = tuple[str, str]
Rows = list[list[Button]]


def followup_key(patient_id: int) -> str:
    return f"urge:{patient_id}"


def exercises(content: Content, lang: str) -> ExerciseSet:
    return load_library(content.root).exercises(lang)


# ---------------------------------------------------------------------------------------
# The toolbox and the exercises (pure rendering to text and button rows)
# ---------------------------------------------------------------------------------------


def crisis_lines(content: Content, lang: str) -> str:
    """The crisis lines every /sos screen ends with: the clinic region's short list from
    content/resources, the same resources the crisis reply uses."""
    from bot.escalation.rules import load_rules

    return crisis.short_lines(lang, load_rules(content.root).default_region, content=content)


def toolbox(content: Content, lang: str) -> tuple[str, Rows]:
    """The /sos message: one tap to each tool, and the crisis lines at the foot."""
    rows: Rows = [[(e.button_label, buttons.STEP.pack(e.id, 0))] for e in exercises(content, lang).exercises]
    rows.append([(content.t("sos.button.plan", lang), buttons.SHOW_PLAN.pack())])
    rows.append([(content.t("sos.button.call", lang), buttons.CALL.pack())])
    rows.append([(content.t("sos.button.talk", lang), buttons.TALK.pack())])
    return content.t("sos.toolbox", lang) + "\n\n" + crisis_lines(content, lang), rows


def not_enrolled(content: Content, lang: str) -> str:
    """/sos from someone who is not a patient: where help answers right now, and how to join."""
    return content.t("sos.not_enrolled", lang) + "\n\n" + crisis_lines(content, lang)


def rating_rows(codec: Codec, *head: object, low: int = 0, high: int = 10) -> Rows:
    """Two rows of ratings `low`..`high`, each the codec's button with `head` and the rating."""
    values = list(range(low, high + 1))
    half = (len(values) + 1) // 2
    return [
        [(str(v), codec.pack(*head, v)) for v in values[:half]],
        [(str(v), codec.pack(*head, v)) for v in values[half:]],
    ]


def _header(ex: Exercise, index: int) -> str:
    return f"<b>{ex.title}</b> · {index + 1}/{len(ex.steps)}"


def exercise_view(
    content: Content,
    lang: str,
    exercise_id: str,
    index: int,
    *,
    choice: int | None = None,
    ratings: dict[str, int] | None = None,
) -> tuple[str, Rows] | None:
    """Step `index` of an exercise (or its closing when index == number of steps).

    With `choice`, the chosen option's text follows the step, then Next. None when the
    exercise or step does not exist (a stale or forged button)."""
    ex_set = exercises(content, lang)
    ex = ex_set.get(exercise_id)
    if ex is None or index < 0 or index > len(ex.steps):
        return None
    if index == len(ex.steps):
        text = f"<b>{ex.title}</b>\n\n{ex.closing}"
        before, after = (ratings or {}).get("before"), (ratings or {}).get("after")
        if before is not None and after is not None:
            key = "sos.exercise.rated_lower" if after < before else "sos.exercise.rated"
            text += "\n\n" + content.t(key, lang, before=before, after=after)
        rows: Rows = [
            [(content.t("sos.button.more_tools", lang), buttons.MENU.pack())],
            [(content.t("sos.button.talk", lang), buttons.TALK.pack())],
        ]
        return text, rows
    step = ex.steps[index]
    last = index == len(ex.steps) - 1
    next_label = ex_set.done_label if last else ex_set.next_label
    nxt = [(next_label, buttons.STEP.pack(ex.id, index + 1))]
    text = f"{_header(ex, index)}\n\n{step.text}"
    if step.choices is not None:
        if choice is not None:
            if not 0 <= choice < len(step.choices):
                return None
            picked = step.choices[choice]
            return f"{text}\n\n<b>{picked.label}</b>\n{picked.text}", [nxt]
        return text, [[(c.label, buttons.CHOICE.pack(ex.id, index, j))] for j, c in enumerate(step.choices)]
    if step.ask is not None:
        return text, rating_rows(buttons.RATE, ex.id, index, low=step.ask.min, high=step.ask.max)
    return text, [nxt]


def rating_key(content: Content, lang: str, exercise_id: str, index: int, value: int) -> str | None:
    """The rating key (`before`, `after`, …) a rating button stands for, if it is valid."""
    ex = exercises(content, lang).get(exercise_id)
    if ex is None or not 0 <= index < len(ex.steps):
        return None
    ask = ex.steps[index].ask
    if ask is None or not ask.min <= value <= ask.max:
        return None
    return ask.key


# ---------------------------------------------------------------------------------------
# Urge sessions
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrgeInfo:
    id: int
    patient_id: int
    started_at: datetime
    ratings: dict[str, int]
    tools: list[str]
    followup_rating: int | None

    @property
    def last_rating(self) -> int | None:
        """The last rating given during the session (after a later key, e.g. after > before)."""
        values = list(self.ratings.values())
        return values[-1] if values else None


def _info(row: UrgeSession) -> UrgeInfo:
    return UrgeInfo(
        row.id,
        row.patient_id,
        row.started_at,
        dict(row.ratings or {}),
        list(row.tools or []),
        row.followup_rating,
    )


async def _current(session: AsyncSession, patient_id: int, now: datetime) -> UrgeSession | None:
    return (
        await session.execute(
            select(UrgeSession)
            .where(UrgeSession.patient_id == patient_id, UrgeSession.started_at >= now - SESSION_WINDOW)
            .order_by(UrgeSession.started_at.desc(), UrgeSession.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def open_session(
    session: AsyncSession, rules: SosRules, patient_id: int, now: datetime, source: str = "sos"
) -> UrgeInfo:
    """/sos opened: start (or continue) the hard moment and (re)schedule the follow-up."""
    row = await _current(session, patient_id, now)
    if row is None or row.followup_rating is not None or row.followup_sent_at is not None:
        row = UrgeSession(patient_id=patient_id, started_at=now, source=source, ratings={}, tools=[])
        session.add(row)
        await session.flush()
    await schedule_followup(session, patient_id, row.id, now + rules.urge_followup.delay)
    return _info(row)


async def schedule_followup(session: AsyncSession, patient_id: int, session_id: int, due: datetime) -> None:
    """One pending follow-up per person: a newer /sos moves it, never adds a second."""
    key = followup_key(patient_id)
    # The key is unique across all rows: free it from a finished or cancelled occurrence.
    await _retire_key(session, key)
    await scheduler.schedule(
        session, FOLLOWUP_KIND, key, due, {"patient_id": patient_id, "session_id": session_id}, replace=True
    )


async def _retire_key(session: AsyncSession, key: str) -> None:
    rows = (
        await session.execute(
            select(ScheduledItem).where(ScheduledItem.key == key, ScheduledItem.status != "pending")
        )
    ).scalars()
    for item in rows:
        item.key = f"{key}:{item.id}"
    await session.flush()


async def cancel_followup(session: AsyncSession, patient_id: int) -> int:
    return await scheduler.cancel(session, key=followup_key(patient_id))


async def note_tool(session: AsyncSession, patient_id: int, tool: str, now: datetime) -> None:
    """Remember which tool was used in this hard moment (for the counselor's picture)."""
    row = await _current(session, patient_id, now)
    if row is None:
        return
    tools = list(row.tools or [])
    if tool not in tools:
        row.tools = [*tools, tool]


async def record_rating(session: AsyncSession, patient_id: int, key: str, value: int, now: datetime) -> UrgeInfo:
    """A 0-10 urge rating given in an exercise (before/after, …)."""
    if not 0 <= value <= 10:
        raise ValueError("a rating is 0-10")
    row = await _current(session, patient_id, now)
    if row is None:
        row = UrgeSession(patient_id=patient_id, started_at=now, source="sos", ratings={}, tools=[])
        session.add(row)
    ratings = {k: v for k, v in (row.ratings or {}).items() if k != key}
    ratings[key] = value
    row.ratings = ratings
    await session.flush()
    return _info(row)


async def current_session(session: AsyncSession, patient_id: int, now: datetime) -> UrgeInfo | None:
    row = await _current(session, patient_id, now)
    return None if row is None else _info(row)


# ---------------------------------------------------------------------------------------
# Talk to my counselor
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TalkResult:
    flag_id: int
    created: bool


async def request_talk(
    session: AsyncSession, wf: Workflow, rules: SosRules, patient_id: int, now: datetime, source: str = "sos"
) -> TalkResult:
    """The patient's own "talk to my counselor" from /sos: the talk request (with the reason
    /sos gives it), noted on the urge session."""
    rule = rules.talk_request
    res = await talk_request(session, wf, patient_id, now, source=source, severity=rule.severity, reason=rule.reason)
    row = await _current(session, patient_id, now)
    if row is not None and row.talk_requested_at is None:
        row.talk_requested_at = now
    return TalkResult(res.flag_id, res.created)


# ---------------------------------------------------------------------------------------
# The follow-up
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowupResult:
    status: str  # recorded | already | unknown
    rating: int | None = None
    previous: int | None = None
    lower: bool = False
    offer_counselor: bool = False
    flag_severity: str | None = None
    streak_days: int | None = None


def streak_days(sobriety_date: date | None, today: date) -> int | None:
    if sobriety_date is None or sobriety_date > today:
        return None
    return (today - sobriety_date).days


async def send_followup(session: AsyncSession, content: Content, patient_id: int, session_id: int, now: datetime) -> bool:
    """Ask how strong the urge is now (once per urge session)."""
    p = await session.get(Patient, patient_id)
    row = await session.get(UrgeSession, session_id)
    if p is None or p.status != "active" or row is None or row.patient_id != patient_id:
        return False
    if row.followup_sent_at is not None or row.followup_rating is not None:
        return False
    row.followup_sent_at = now
    text = content.t("sos.followup.ask", p.language)
    await enqueue(
        session,
        Outgoing(p.telegram_id, text, reply_markup=_markup(rating_rows(buttons.FOLLOWUP, session_id))),
        now=now,
        dedup_key=f"urge_followup:{session_id}",
        ref=f"urge:{patient_id}",
    )
    return True


def _markup(rows: Rows) -> dict[str, object]:
    return inline_keyboard(rows)


def followup_handler(content: Content) -> Callable[[AsyncSession, ScheduledItem, datetime], Awaitable[None]]:
    """The `urge_followup` sweeper service."""

    async def handle(session: AsyncSession, item: ScheduledItem, now: datetime) -> None:
        payload = item.payload or {}
        await send_followup(session, content, int(payload["patient_id"]), int(payload["session_id"]), now)

    return handle


async def answer_followup(
    session: AsyncSession, wf: Workflow, rules: SosRules, patient_id: int, session_id: int, rating: int, now: datetime
) -> FollowupResult:
    """The patient's answer: lower → encouragement; same/higher or high → counselor, flag."""
    if not 0 <= rating <= 10:
        return FollowupResult("unknown")
    row = (
        await session.execute(
            select(UrgeSession).where(UrgeSession.id == session_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.patient_id != patient_id:
        return FollowupResult("unknown")
    if row.followup_rating is not None:
        return FollowupResult("already", rating=row.followup_rating)
    followup = rules.urge_followup
    info = _info(row)
    previous = info.last_rating
    row.followup_rating = rating
    row.followup_at = now
    high = rating >= followup.high_rating
    lower = not high and (previous is None or rating < previous)
    flag_rule = followup.flag_for(rating, previous)
    severity = None
    if flag_rule is not None:
        res = await raise_flag(
            session,
            wf,
            patient_id=patient_id,
            category="urge_followup",
            severity=flag_rule.severity,
            reason=flag_rule.reason,
            source="urge_followup",
            now=now,
        )
        severity = res.severity
    streak = await _streak(session, patient_id, now)
    return FollowupResult(
        "recorded",
        rating=rating,
        previous=previous,
        lower=lower,
        offer_counselor=not lower,
        flag_severity=severity,
        streak_days=streak,
    )


async def _streak(session: AsyncSession, patient_id: int, now: datetime) -> int | None:
    """The current streak, from the sobriety counter (a lapse restarts it)."""
    p = await session.get(Patient, patient_id)
    if p is None:
        return None
    numbers = await sobriety.numbers(session, patient_id, local_date(now, p.timezone), now)
    return None if numbers is None else numbers.current_days


def setup(sweeper: Any, content: Content) -> None:
    """Register the `urge_followup` sweeper kind (once per process)."""
    if FOLLOWUP_KIND not in sweeper.kinds:
        sweeper.register(FOLLOWUP_KIND, followup_handler(content))


def followup_reply(content: Content, lang: str, result: FollowupResult) -> tuple[str, Rows]:
    """What the patient reads after answering the follow-up."""
    if result.status == "already":
        return content.t("sos.followup.already", lang), []
    if result.status != "recorded" or result.rating is None:
        return content.t("common.button_expired", lang), []
    if result.lower:
        key = "sos.followup.lower" if result.previous is not None else "sos.followup.settled"
        text = content.t(key, lang, rating=result.rating, previous=result.previous if result.previous is not None else "")
        if result.streak_days is not None and result.streak_days > 0:
            text += "\n\n" + content.t("sos.followup.streak", lang, days=result.streak_days)
        return text, [[(content.t("sos.button.more_tools", lang), buttons.MENU.pack())]]
    text = content.t("sos.followup.still", lang, rating=result.rating)
    if result.flag_severity is not None:
        text += "\n" + content.t("sos.followup.flagged", lang)
    rows: Rows = [
        [(content.t("sos.button.talk", lang), buttons.TALK.pack())],
        [(content.t("sos.button.call", lang), buttons.CALL.pack())],
        [(content.t("sos.button.more_tools", lang), buttons.MENU.pack())],
    ]
    return text, rows


__all__ = [
    "FOLLOWUP_KIND",
    "FollowupResult",
    "TalkResult",
    "UrgeInfo",
    "answer_followup",
    "cancel_followup",
    "current_session",
    "exercise_view",
    "followup_handler",
    "followup_key",
    "followup_reply",
    "not_enrolled",
    "note_tool",
    "open_session",
    "rating_key",
    "rating_rows",
    "record_rating",
    "request_talk",
    "schedule_followup",
    "setup",
    "send_followup",
    "streak_days",
    "toolbox",
]
