"""Re-notification and the follow-up, run by the sweeper (kinds registered in area.py).

An unclaimed high or crisis flag is re-posted to the group (naming who is on call), and a crisis
then goes to every counselor directly; a new high or crisis trigger starts the round over. Some
hours after a crisis or high flag is resolved, the patient is asked how they are.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Patient
from bot.core.vocabulary import FlagStatus, Severity
from bot.escalation.models import Flag, FlagEvent
from bot.escalation.oncall import counselor_ids, get_oncall
from bot.escalation.rendering import view
from bot.escalation.rules import Workflow
from bot.escalation.values import locked
from bot.platform.clock import ensure_utc, local_date
from bot.platform.content import Html
from bot.platform.keyboards import inline_keyboard
from bot.platform.models import RuntimeSetting, ScheduledItem
from bot.platform.outbox import Outgoing, enqueue
from bot.platform.scheduler import cancel, schedule
from bot.safety import buttons as safety_buttons

KIND_RENOTIFY = "flag_renotify"


KIND_FOLLOWUP = "flag_followup"


def _renotify_plan(wf: Workflow, severity: str) -> list[tuple[int, int]]:
    """(stage, minutes after the trigger) for a severity; moderate and low go to the digest."""
    s = wf.settings
    if severity == Severity.CRISIS:
        return [(1, s.crisis_repost_minutes), (2, s.crisis_dm_minutes)]
    if severity == Severity.HIGH:
        return [(1, s.high_repost_minutes)]
    return []


async def schedule_renotify(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    for stage, minutes in _renotify_plan(wf, flag.severity):
        if stage <= (flag.renotify_stage or 0):
            continue
        await schedule(
            session,
            KIND_RENOTIFY,
            f"flagrenotify:f{flag.id}:s{stage}",
            now + timedelta(minutes=minutes),
            {"flag_id": flag.id, "stage": stage, "patient_id": flag.patient_id},
            replace=True,
        )


async def restart_renotify(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime, event: FlagEvent) -> None:
    """Start the re-notification steps over from a new trigger (a round of its own: the steps
    already run for earlier triggers run again, and pending ones are replaced). On an unclaimed
    flag a step still pending keeps its time when that is sooner: a new trigger never pushes the
    alarm later (a patient writing every few minutes would otherwise never reach the counselors'
    direct messages)."""
    sooner: dict[int, tuple[datetime, str]] = {}
    if flag.status == FlagStatus.OPEN:
        for item in await _pending_renotify(session, flag.id):
            payload = item.payload or {}
            stage, due = int(payload.get("stage", 1)), ensure_utc(item.due_at)
            since = str(payload.get("since") or ensure_utc(flag.opened_at).isoformat())
            if stage not in sooner or due < sooner[stage][0]:
                sooner[stage] = (due, since)
    await stop_renotify(session, flag.id)
    flag.renotify_stage = 0
    for stage, minutes in _renotify_plan(wf, flag.severity):
        due, since = now + timedelta(minutes=minutes), now.isoformat()
        if stage in sooner and sooner[stage][0] < due:
            due, since = sooner[stage]
        await schedule(
            session,
            KIND_RENOTIFY,
            f"flagrenotify:f{flag.id}:t{event.id}:s{stage}",
            due,
            {"flag_id": flag.id, "stage": stage, "patient_id": flag.patient_id, "round": event.id, "since": since},
        )


async def _pending_renotify(session: AsyncSession, flag_id: int) -> list[ScheduledItem]:
    return list(
        (
            await session.execute(
                select(ScheduledItem).where(
                    ScheduledItem.kind == KIND_RENOTIFY,
                    ScheduledItem.status == "pending",
                    ScheduledItem.key.startswith(f"flagrenotify:f{flag_id}:", autoescape=True),
                )
            )
        ).scalars()
    )


async def stop_renotify(session: AsyncSession, flag_id: int) -> None:
    """Cancel the flag's pending re-notification steps (it was claimed or resolved)."""
    await cancel(session, key_prefix=f"flagrenotify:f{flag_id}:")


async def renotify_item(session: AsyncSession, wf: Workflow, item: ScheduledItem, now: datetime) -> None:
    payload = item.payload or {}
    flag = await locked(session, int(payload.get("flag_id", 0)))
    if flag is None or flag.status not in (FlagStatus.OPEN, FlagStatus.CLAIMED):
        return
    stage = int(payload.get("stage", 1))
    if stage <= (flag.renotify_stage or 0):
        return
    # A round started by a later trigger counts its minutes from that trigger.
    round_id = payload.get("round")
    suffix = f":t{round_id}" if round_id else ""
    try:
        since = ensure_utc(datetime.fromisoformat(str(payload["since"])))
    except (KeyError, ValueError):
        since = ensure_utc(flag.opened_at)
    holder = flag.claimed_by_name or str(flag.claimed_by)
    if flag.status == FlagStatus.CLAIMED and (not round_id or await _holder_acted(session, flag, since)):
        return  # claimed before this round, or its holder has opened it since the new trigger
    _, text, kb = await view(session, wf, flag)
    c, lang = wf.content, wf.lang
    claimed = flag.status == FlagStatus.CLAIMED
    minutes = int((now - since).total_seconds() // 60)
    oncall = await get_oncall(session)
    ref = f"flag:{flag.id}:{flag.rev or 0}:r{stage}{suffix}"
    if stage == 1:
        if wf.group is not None:
            if oncall is not None:
                mention = c.t("flags.mention", lang, id=oncall.telegram_id, name=oncall.name or str(oncall.telegram_id))
            elif await _say_no_oncall(session, wf, now):
                mention = c.t("flags.no_oncall", lang)
            else:
                mention = ""
            key = "flags.repost_claimed" if claimed else "flags.repost"
            head = c.t(key, lang, minutes=minutes, name=holder, mention=Html(mention)).rstrip()
            await enqueue(
                session, Outgoing(wf.group, head + "\n\n" + text, reply_markup=kb), now=now,
                dedup_key=f"flagrenotify:{flag.id}:1{suffix}", ref=ref,
            )
    else:
        head = c.t("flags.dm_alert_claimed" if claimed else "flags.dm_alert", lang, minutes=minutes, name=holder)
        for uid in await counselor_ids(session, wf.settings):
            await enqueue(
                session, Outgoing(uid, head + "\n\n" + text, reply_markup=kb), now=now,
                dedup_key=f"flagrenotify:{flag.id}:2{suffix}:{uid}", ref=ref,
            )
    flag.renotify_stage = stage
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="renotify", detail={"stage": stage}))


async def _holder_acted(session: AsyncSession, flag: Flag, since: datetime) -> bool:
    """The counselor holding the flag opened its details, wrote to the patient or took it again
    since `since`."""
    q = select(FlagEvent.id).where(
        FlagEvent.flag_id == flag.id,
        FlagEvent.actor_id == flag.claimed_by,
        FlagEvent.kind.in_(("details", "message", "claim", "resolve")),
        FlagEvent.at >= since,
    )
    return (await session.execute(q.limit(1))).first() is not None


NO_ONCALL_SAID = "flags:no_oncall_said"


async def _say_no_oncall(session: AsyncSession, wf: Workflow, now: datetime) -> bool:
    """True at most once a clinic day: "nobody is on call" is a reminder, not a refrain."""
    today = local_date(now, wf.zone).isoformat()
    row = await session.get(RuntimeSetting, NO_ONCALL_SAID, with_for_update=True)
    if row is not None and row.value == today:
        return False
    if row is None:
        session.add(RuntimeSetting(key=NO_ONCALL_SAID, value=today, updated_at=now))
    else:
        row.value, row.updated_at = today, now
    return True


async def schedule_followup(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    """Ask the patient how they are, some hours after their crisis or high flag was resolved."""
    await schedule(
        session,
        KIND_FOLLOWUP,
        f"flagfollowup:f{flag.id}",
        now + timedelta(hours=wf.rules.followup.after_hours),
        {"flag_id": flag.id, "patient_id": flag.patient_id},
    )


async def followup_item(session: AsyncSession, wf: Workflow, item: ScheduledItem, now: datetime) -> None:
    payload = item.payload or {}
    patient = await session.get(Patient, int(payload.get("patient_id", 0)))
    if patient is None or patient.status != "active":
        return
    flag_id = int(payload.get("flag_id", 0))
    c, lang = wf.content, patient.language or wf.lang
    kb = inline_keyboard([[(c.t(f"safety.followup_{a}", lang), safety_buttons.FOLLOWUP.pack(flag_id, a))] for a in safety_buttons.FOLLOWUP_ANSWERS])
    await enqueue(
        session, Outgoing(patient.telegram_id, c.t("safety.followup", lang), reply_markup=kb), now=now,
        dedup_key=f"flagfollowup:{flag_id}",
    )
    session.add(FlagEvent(flag_id=flag_id, at=now, kind="followup"))
