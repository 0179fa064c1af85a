"""Safety signals the database could not store: kept until they are (DESIGN §2.6, §3 Durability).

Recording a risk signal (a flag, a safety question, the plan after a crisis reply) is one write,
and so is recording the patient's answer to the safety question. When that write fails (a full
disk, a database that is down), the signal must still reach the counselors, so the handler hands
it to the process's `SignalKeeper`, which:

- keeps it in memory and retries the write in the background (backoff up to `RETRY_CAP`);
- at once, for a signal that calls for a counselor, posts a minimal alert straight to the
  counselors' group through the Bot API (not the outbox, which is in the database): the patient
  code, category, severity and time — nothing encrypted, never the patient's words;
- tells the admins once per outage, also straight through the Bot API;
- when the write succeeds, records the signal as a normal flag (its usual card, with buttons),
  edits the minimal alert to say it is recorded now and under which flag, and tells the admins
  that the database works again.

Signals held when the process stops are lost from memory; their alerts have gone out already.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import people
from bot.core.vocabulary import Severity
from bot.escalation.rules import Workflow, load_rules
from bot.platform.content import Content, Html
from bot.platform.outbox import NotSent, Outgoing, enqueue
from bot.safety import service as safety
from bot.safety.models import SafetyCheck
from bot.safety.service import Detection, SafetyOutcome, Signal

if TYPE_CHECKING:
    from bot.core.hub import Hub

log = logging.getLogger(__name__)

RETRY_BASE = 1.0  # seconds before the first retry of the write; doubles up to the cap
RETRY_CAP = 30.0


def needs_counselor(sig: Signal) -> bool:
    """A signal the counselors hear of at once: one that raises a flag straight away, or an
    uncertain one strong enough to be flagged even if the patient never answers the question."""
    if not sig.any:
        return False
    if not sig.uncertain:
        return True
    return Severity(sig.severity) >= load_rules().confirm.flag_without_answer_from


def alert_text(
    content: Content, lang: str, *, code: str | None, category: str | None, severity: str, at: datetime, zone: str
) -> str:
    """The minimal alert for the group: code, category, severity, time. Nothing else, by design.
    `code` or `category` None: not known (the database cannot be read)."""
    unknown = content.t("signals.unknown", lang)
    return content.t(
        "signals.alert",
        lang,
        severity=Html(content.t(f"flags.severity.{severity}", lang)),
        code=code or unknown,
        category=content.t(f"flags.category.{category}", lang) if category else unknown,
        time=at.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z"),
    )


async def record(
    session: AsyncSession,
    wf: Workflow,
    detection: Detection,
    patient: people.PatientInfo,
    text: str,
    sig: Signal,
    *,
    replied: bool,
    source: str,
    now: datetime,
) -> SafetyOutcome:
    """Record one risk signal of a patient: the flag or the question, and after a crisis reply
    that went out without the database, the line about the care team and the patient's plan."""
    outcome = await safety.check_text(
        session, wf, detection, patient.id, text,
        source=source, now=now, signal=sig, lang=patient.language, send_crisis=not replied,
    )
    if outcome.crisis and replied and not outcome.duplicate:
        # When a counselor will reach them, in their own zone (or the one talking with them now).
        lead = await safety.counselor_lead(session, wf, patient, now)
        await safety.enqueue_plan(session, wf, patient.id, now, lead=lead)
    return outcome


@dataclass
class Held:
    """A signal waiting to be stored (in memory only: it holds the patient's words)."""

    user_id: int
    text: str
    signal: Signal
    source: str
    replied: bool  # the crisis reply reached the patient already
    at: datetime
    alert_due: bool  # a minimal alert is to go to the group
    alert_message_id: int | None = None
    alert_text: str | None = None
    alert_not_before: float = 0.0  # loop time (a 429 from the group)
    # An answer to the safety question (yes | no | talk) rather than typed words.
    check_id: int | None = None
    answer: str | None = None


class SignalKeeper:
    """Holds the process's unstored safety signals and retries them (one per process)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.retry_base = RETRY_BASE
        self.retry_cap = RETRY_CAP
        self._held: list[Held] = []
        self._admins_told = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self, user_id: int, text: str, sig: Signal, *, source: str, replied: bool) -> None:
        """Keep a signal whose write failed; the background task alerts and retries. Never raises."""
        self._held.append(
            Held(user_id, text, sig, source, replied, self.hub.clock.now(), alert_due=needs_counselor(sig))
        )
        log.error("safety: a risk signal is kept in memory until the database can store it (%d held)", len(self._held))
        self._wake.set()

    def hold_answer(self, user_id: int, check_id: int, answer: str, *, category: str | None) -> None:
        """Keep an answer to the safety question whose write failed (every answer reaches the care
        team). `category`: the question's, when the button carried it. Never raises."""
        rules = load_rules().confirm
        severity = rules.yes_severity if answer == "yes" else rules.flag_without_answer_from
        sig = Signal(severity, category, (), False)
        self._held.append(
            # "No" is recorded too, but calls no counselor at once.
            Held(user_id, "", sig, "safety_confirm", answer == "yes", self.hub.clock.now(), alert_due=answer != "no",
                 check_id=check_id, answer=answer)
        )
        log.error("safety: an answer to the safety question is kept in memory until the database can store it")
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="safety-signals")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._held:
            await self.retry()  # one last try to store them
        if self._held:
            log.error("safety: stopping with %d risk signal(s) not stored; their alerts went to the group", len(self._held))

    async def _run(self) -> None:
        delay = self.retry_base
        while not self._stopping:
            if self._held:
                try:
                    await self._alerts()
                    await self._tell_admins()
                    await self.retry()
                except Exception:
                    log.exception("safety: keeping risk signals failed")
            if not self._held:
                delay = self.retry_base
                timeout: float | None = None
            else:
                timeout = delay
                delay = min(delay * 2, self.retry_cap)
            self._wake.clear()
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    # -- storing ---------------------------------------------------------------------------
    async def retry(self) -> int:
        """Try to store every held signal, oldest first; returns how many are still held."""
        hub = self.hub
        while self._held:
            held = self._held[0]
            try:
                recorded = await self._store(held)
            except Exception as exc:
                log.warning("safety: the database still cannot store %d risk signal(s) (%s)", len(self._held), type(exc).__name__)
                return len(self._held)
            self._held.pop(0)
            hub.sender.wake()
            if recorded:
                log.info("safety: a held risk signal is recorded now")
            else:
                log.info("safety: a held signal was not a patient's (or its question is gone); nothing to record")
        if self._admins_told:
            await self._recovered()
        return 0

    async def _store(self, held: Held) -> bool:
        """Record one held signal in one transaction; False when there was nothing to record."""
        hub = self.hub
        now = hub.clock.now()
        wf, detection = hub.get(Workflow), hub.get(Detection)
        async with hub.db.transaction() as s:
            flag_id: int | None = None
            if held.check_id is not None and held.answer is not None:
                res = await safety.confirm_answer(
                    s, wf, detection, held.check_id, telegram_id=held.user_id, answer=held.answer, now=now
                )
                if res.status != "ok":
                    return False
                if res.crisis and res.patient_id is not None:
                    await safety.enqueue_plan(s, wf, res.patient_id, now)
                flag_id = res.flag.flag_id if res.flag is not None else None
            else:
                patient = await people.active_patient_info(s, held.user_id)
                if patient is None:
                    return False
                outcome = await record(
                    s, wf, detection, patient, held.text, held.signal, replied=held.replied, source=held.source, now=now
                )
                flag_id = outcome.flag.flag_id if outcome.flag is not None else None
            if held.alert_message_id is not None and held.alert_text is not None and hub.settings.counselor_chat_id:
                c, lang = hub.content, hub.settings.default_language
                done = c.t("signals.recorded_flag", lang, id=flag_id) if flag_id is not None else c.t("signals.recorded", lang)
                await enqueue(
                    s,
                    Outgoing(
                        hub.settings.counselor_chat_id,
                        held.alert_text + "\n\n" + done,
                        method="editMessageText",
                        params={"message_id": held.alert_message_id},
                    ),
                    now=now,
                    dedup_key=f"signalrecorded:{hub.settings.counselor_chat_id}:{held.alert_message_id}",
                )
            return True

    # -- straight to Telegram while the database cannot store ---------------------------------
    async def _alerts(self) -> None:
        hub = self.hub
        group = hub.settings.counselor_chat_id
        loop = asyncio.get_running_loop()
        for held in list(self._held):
            if not held.alert_due or held.alert_message_id is not None or group is None:
                continue
            if loop.time() < held.alert_not_before:
                continue
            code = await self._code(held.user_id)
            if code is False:
                held.alert_due = False  # not a patient: nothing for the counselors
                continue
            category = held.signal.category or await self._question_category(held.check_id)
            text = alert_text(
                hub.content, hub.settings.default_language, code=code or None,
                category=category, severity=held.signal.severity,
                at=held.at, zone=hub.settings.default_timezone,
            )
            try:
                held.alert_message_id = await hub.sender.send_now(group, text)
            except NotSent as exc:
                if exc.retry_after is not None:
                    held.alert_not_before = loop.time() + exc.retry_after
                    log.warning("safety: the minimal alert waits for the group's limit")
                else:
                    log.error("safety: the minimal alert could not be posted (%s); retrying", exc)
                continue
            held.alert_text = text
            log.warning("safety: a minimal alert went to the counselors' group (the signal is not stored yet)")

    async def _code(self, user_id: int) -> str | bool:
        """The patient's code; "" when the database cannot even be read; False: not a patient."""
        try:
            async with self.hub.db.session() as s:
                patient = await people.active_patient_info(s, user_id)
        except Exception as exc:
            log.warning("safety: cannot read the patient's code either (%s)", type(exc).__name__)
            return ""
        return False if patient is None else patient.code

    async def _question_category(self, check_id: int | None) -> str | None:
        """The category the safety question was about, if the database can still be read."""
        if check_id is None:
            return None
        try:
            async with self.hub.db.session() as s:
                q = select(SafetyCheck.category).where(SafetyCheck.id == check_id)
                return (await s.execute(q)).scalar_one_or_none()
        except Exception:
            return None

    async def _tell_admins(self) -> None:
        if self._admins_told or not self._held:
            return
        hub = self.hub
        c, lang = hub.content, hub.settings.default_language
        text = c.t("signals.admin_down", lang, n=len(self._held))
        told = False
        for admin in hub.settings.admin_user_ids:
            try:
                await hub.sender.send_now(admin, text)
                told = True
            except NotSent as exc:
                log.warning("safety: could not tell an admin that the database cannot store data (%s)", exc)
        self._admins_told = told or not hub.settings.admin_user_ids

    async def _recovered(self) -> None:
        """Everything held is stored: the admins hear that the database works again."""
        hub = self.hub
        c, lang = hub.content, hub.settings.default_language
        try:
            async with hub.db.transaction() as s:
                for admin in hub.settings.admin_user_ids:
                    await enqueue(s, Outgoing(admin, c.t("signals.admin_up", lang)), now=hub.clock.now())
        except Exception as exc:
            log.warning("safety: could not tell the admins the database works again (%s)", type(exc).__name__)
            return
        self._admins_told = False
        hub.sender.wake()
