"""What counselors see of a flag, and keeping it current in the counselors' group.

The group post and the patient's card of the day carry severity, patient code, category, why,
time and flag id — never a name and never the patient's words — and are edited through the
outbox whenever a flag changes; `record_sent` learns where each one landed. A post or card that
cannot be rendered goes out plain. Details (for one counselor's DM) holds the name and the words.
"""

from __future__ import annotations

import html
import logging
import re
import string
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.rules_loader import instruments_for
from bot.core.vocabulary import FlagStatus, Severity
from bot.escalation import buttons
from bot.escalation.models import Flag, FlagCard, FlagEvent
from bot.escalation.rules import ASSESSMENT_SOURCE, Workflow, label
from bot.escalation.values import FlagDetails, FlagInfo, flag_info, locked, patient_code
from bot.platform.callbacks import Codec
from bot.platform.clock import ensure_utc, local_date, local_text, zone_name
from bot.platform.content import Content, Html
from bot.platform.keyboards import Button, inline_keyboard
from bot.platform.models import OutboxMessage
from bot.platform.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)


# -- the group post ------------------------------------------------------------------------------


async def view(session: AsyncSession, wf: Workflow, flag: Flag) -> tuple[FlagInfo, str, dict[str, Any]]:
    """The flag as the group sees it: its info, and its post's text and buttons."""
    info = flag_info(flag, await patient_code(session, flag.patient_id))
    text, kb = _render(info, wf)
    return info, text, kb


async def _reply_in_group(
    session: AsyncSession,
    wf: Workflow,
    reply_to: int | None,
    text: str,
    kb: dict[str, Any],
    now: datetime,
    *,
    dedup_key: str,
    ref: str,
) -> None:
    """A flag's message to the group, as a reply to `reply_to` (the flag's or its card's post)
    when Telegram has told where that landed."""
    params = None
    if reply_to is not None:
        params = {"reply_parameters": {"message_id": reply_to, "allow_sending_without_reply": True}}
    await enqueue(session, Outgoing(wf.group, text, params=params, reply_markup=kb), now=now, dedup_key=dedup_key, ref=ref)


async def _edit_message(
    session: AsyncSession, chat_id: int, message_id: int, text: str, kb: dict[str, Any], now: datetime, ref: str
) -> None:
    """Show `text` and `kb` on a message already delivered (an edit through the outbox)."""
    await enqueue(
        session,
        Outgoing(chat_id, text, method="editMessageText", params={"message_id": message_id}, reply_markup=kb),
        now=now,
        ref=ref,
    )


async def notify_new_trigger(
    session: AsyncSession, wf: Workflow, flag: Flag, event: FlagEvent, escalated: bool, now: datetime
) -> bool:
    """Tell the group about a new high or crisis trigger on an open or claimed flag.

    Triggers that follow the flag's last notice within `new_trigger.quiet_minutes` (a patient
    writing several messages in a row) are not posted again unless the severity rose. True when
    the group was told.
    """
    if wf.group is None:
        return False
    if not escalated:
        last = (
            await session.execute(
                select(func.max(FlagEvent.at)).where(FlagEvent.flag_id == flag.id, FlagEvent.kind == "notify")
            )
        ).scalar_one_or_none()
        opened = ensure_utc(flag.opened_at)
        last = max(ensure_utc(last), opened) if last is not None else opened
        if now - last < timedelta(minutes=wf.rules.new_trigger.quiet_minutes):
            return False
    c, lang = wf.content, wf.lang
    info, text, kb = await view(session, wf, flag)
    head = c.t(
        "flags.new_trigger_group",
        lang,
        id=flag.id,
        code=info.patient_code,
        source=label(c, lang, "source", event.source or "?"),
        severity=Html(label(c, lang, "severity", event.severity or flag.severity)),
        time=now.astimezone(ZoneInfo(wf.zone)).strftime("%H:%M %Z"),
    )
    await _reply_in_group(
        session,
        wf,
        flag.group_message_id,
        head + "\n\n" + text,
        kb,
        now,
        dedup_key=f"flagtrigger:{flag.id}:{event.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:n{event.id}",
    )
    session.add(FlagEvent(flag_id=flag.id, at=now, kind="notify", source=event.source, severity=event.severity))
    return True


def _plain_post(info: FlagInfo) -> str:
    """A last-resort post that needs no content at all (a broken template must not lose a flag)."""
    return html.escape(
        f"{info.severity.upper()} · Flag #{info.id} · {info.patient_code} · {info.category.replace('_', ' ')}",
        quote=False,
    )


def _plain_keyboard(info: FlagInfo) -> dict[str, Any]:
    actions = (buttons.CLAIM, buttons.DETAILS, buttons.RESOLVE)
    return inline_keyboard([[(f"{a.tag.title()} #{info.id}", a.pack(info.id))] for a in actions])


async def plain_alert(session: AsyncSession, wf: Workflow, flag: Flag, event: FlagEvent, now: datetime) -> None:
    """The last resort when announcing a flag failed: its plain post to the group."""
    if wf.group is None or flag.severity == Severity.LOW:
        return
    info = flag_info(flag, await patient_code(session, flag.patient_id))
    await enqueue(
        session,
        Outgoing(wf.group, _plain_post(info), reply_markup=_plain_keyboard(info)),
        now=now,
        dedup_key=f"flagplain:{flag.id}:{event.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:p{event.id}",
    )


def _render(info: FlagInfo, wf: Workflow) -> tuple[str, dict[str, Any]]:
    """The post's text and buttons, never raising: the flag reaches the group whatever the words."""
    try:
        text = render_post(info, wf)
    except Exception as exc:
        log.error("flags: the post of flag %s could not be rendered (%s); sending a plain one", info.id, type(exc).__name__)
        text = _plain_post(info)
    try:
        kb = post_keyboard(info, wf.content, wf.lang)
    except Exception as exc:
        log.error("flags: the buttons of flag %s could not be rendered (%s)", info.id, type(exc).__name__)
        kb = _plain_keyboard(info)
    return text, kb


def render_post(info: FlagInfo, wf: Workflow) -> str:
    """The group post for a flag. Holds no name and no patient text, by construction."""
    c, lang, z = wf.content, wf.lang, wf.zone
    return c.t(
        "flags.post",
        lang,
        severity=Html(label(c, lang, "severity", info.severity)),
        id=info.id,
        code=info.patient_code,
        category=label(c, lang, "category", info.category),
        why=Html(why_text(info.why, source=info.source, content=c, lang=lang)),
        time=local_text(info.opened_at, z, POST_TIME),
        state=Html(_state(info, c, lang, z)),
    )


def post_keyboard(info: FlagInfo, c: Content, lang: str) -> dict[str, Any]:

    def b(key: str, action: Codec) -> Button:
        return (c.t(f"flags.button.{key}", lang), action.pack(info.id))

    claim, details, message, resolve = (
        b("claim", buttons.CLAIM), b("details", buttons.DETAILS), b("message", buttons.MESSAGE), b("resolve", buttons.RESOLVE)
    )
    if info.status == FlagStatus.RESOLVED:
        rows = [[details]]
    elif info.status == FlagStatus.CLAIMED:
        rows = [[details, message], [resolve]]
    else:
        rows = [[claim, details], [message, resolve]]
    return inline_keyboard(rows)


async def edit_posts(session: AsyncSession, wf: Workflow, flag: Flag, now: datetime) -> None:
    """Show the flag's new state on every message that carries it."""
    _, text, kb = await view(session, wf, flag)
    for chat_id, message_id in flag.posts or []:
        await _edit_message(session, chat_id, message_id, text, kb, now, f"flagedit:{flag.id}:{flag.rev or 0}")
    if flag.card_id is not None:
        card = (await session.execute(select(FlagCard).where(FlagCard.id == flag.card_id).with_for_update())).scalar_one_or_none()
        if card is not None:
            await _edit_card(session, wf, card, now)


async def record_sent(session: AsyncSession, wf: Workflow, ref: str, chat_id: int, message_id: int, now: datetime) -> None:
    """A message showing a flag was delivered: remember where, and catch it up if the flag moved on."""
    parts = ref.split(":")
    if parts[0] == "card":
        await _card_sent(session, wf, parts, chat_id, message_id, now)
        return
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return
    flag = await locked(session, int(parts[1]))
    if flag is None:
        return
    posts = [list(p) for p in (flag.posts or [])]
    if [chat_id, message_id] in posts:
        return  # already recorded (and caught up)
    posts.append([chat_id, message_id])
    flag.posts = posts
    if len(parts) > 3 and parts[3] == "main" and flag.group_message_id is None:
        flag.group_message_id = message_id
    if int(parts[2]) != (flag.rev or 0):
        _, text, kb = await view(session, wf, flag)
        await _edit_message(session, chat_id, message_id, text, kb, now, f"flagedit:{flag.id}:{flag.rev or 0}")


# -- why a flag stands: the source, the rule and the answers behind it (never patient words) -----


_RULE_REASON = re.compile(r"^([a-z][a-z0-9_]*): (.+)$", re.S)


_RISK_REASON = re.compile(r"^risk:([a-z_]+)")


def split_reason(reason: str | None) -> tuple[str | None, str]:
    """(rule, text) of a stored reason: "<rule id>: <text>" from a content rule; "risk:<category>:…"
    from the risk detector (rule "risk", text the category); otherwise a plain reason (no rule)."""
    reason = (reason or "").strip()
    m = _RISK_REASON.match(reason)
    if m:
        return "risk", m.group(1)
    m = _RULE_REASON.match(reason)
    if m:
        return m.group(1), m.group(2).strip()
    return None, reason


def trigger_why(source: str | None, reason: str | None, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trigger's source and stored reason as `why_text` reads them."""
    rule, text = split_reason(reason)
    return {"source": source, "rule": rule, "reason": text, "facts": facts or {}}


def why_fields(c: Content, lang: str, rule: str | None) -> set[str] | None:
    """The placeholders of `flags.why.<rule>`; None when there is no such wording."""
    key = f"flags.why.{rule}"
    if not rule or not c.has(key, lang):
        return None
    try:
        return {f for _, f, _, _ in string.Formatter().parse(str(c.raw(key, lang))) if f}
    except ValueError:
        return None


def _names_source(source: str, reason: str) -> bool:
    """The reason already says where it came from ("Urge stronger 20 minutes after /sos")."""
    words = [w for w in source.lower().split() if len(w) >= 4]
    return bool(words) and words[0] in reason.lower()


def _sentence(text: str) -> str:
    """A rule's reason inside a line: "Use disclosed" → "use disclosed" (not "PHQ-9")."""
    return text[:1].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def why_text(
    why: dict[str, Any] | None,
    *,
    source: str | None = None,
    content: Content,
    lang: str,
) -> str:
    """The reason counselors read, in plain language and without the patient's words:
    "PHQ-9 item 9 = 1", "typed message · suicide or self-harm", "daily check-in · craving 9/10 …".

    `why` is a flag's `why` (or a trigger's: source, rule, reason, facts). A rule with wording in
    `flags.why.<rule>` reads that way when its answers are known; otherwise the source's label and
    the rule's own reason. `source` is used when there is no `why` (flags from before it existed).
    """
    c = content
    why = why or {}
    src_id = str(why.get("source") or source or "")
    src = label(c, lang, "source", src_id) if src_id else ""
    rule = why.get("rule")
    text = str(why.get("reason") or "")
    facts = why.get("facts") or {}
    if rule == "risk":
        reason = label(c, lang, "category", text) if text else ""
    else:
        fields = why_fields(c, lang, rule)
        if fields is not None and fields <= set(facts):
            try:
                shown = {k: _fact(c, lang, src_id, k, facts[k]) for k in fields}
                return c.t(f"flags.why.{rule}", lang, **shown) if fields else c.t(f"flags.why.{rule}", lang)
            except (KeyError, IndexError, ValueError):
                pass
        reason = html.escape(_sentence(text), quote=False)
    if not src or not reason or _names_source(html.unescape(src), html.unescape(reason)):
        return reason or src or "–"
    return c.t("flags.why_line", lang, source=Html(src), reason=Html(reason))


def _fact(c: Content, lang: str, source: str, key: str, value: Any) -> Any:
    """A fact behind a rule as counselors read it: an answer to an item of the instrument the
    trigger came from is its label ("Several days (1)"), a total or a count stays a number."""
    if source.startswith(ASSESSMENT_SOURCE):
        instrument = source[len(ASSESSMENT_SOURCE):]
    elif source == "checkin":
        instrument = "checkin"
    else:
        return value
    try:
        item = instruments_for(c).instrument(instrument, lang).item(key)
    except KeyError:
        return value
    return item.answer_label(value)


def _state(info: FlagInfo, c: Content, lang: str, zone: str) -> str:
    """Not claimed yet / claimed by … / resolved by …, with the time in the clinic's zone."""
    if info.status == FlagStatus.RESOLVED and info.resolved_at is not None:
        return c.t("flags.state.resolved", lang, name=info.resolved_by_name or "?", time=local_text(info.resolved_at, zone, POST_TIME))
    if info.status == FlagStatus.CLAIMED and info.claimed_at is not None:
        return c.t("flags.state.claimed", lang, name=info.claimed_by_name or "?", time=local_text(info.claimed_at, zone, POST_TIME))
    return c.t("flags.state.open", lang)


# -- the patient's card of the day ----------------------------------------------------------------
#
# A patient on a hard day can raise several flags: a PHQ-9 in the morning, a check-in, a message
# at night. Rather than a post each, the group gets ONE card per patient and clinic day, edited as
# flags are added or change: the day's flags, most severe first, each with its own line (severity,
# category, why, state) and its own buttons (Claim, Details, Message patient, Resolve, each with
# the flag's number), so every flag keeps its own lifecycle. A card with one flag is the ordinary
# flag post. Editing a message notifies nobody, so a high or crisis flag added to a card that is
# already in the group is also posted as a reply to the card (with its buttons). Low flags are not
# posted at all: they wait for the daily digest.


POST_TIME = "%a %d %b %H:%M %Z"


def render_card(infos: list[FlagInfo], wf: Workflow) -> tuple[str, dict[str, Any]]:
    """The card's text and buttons. One flag: its ordinary post."""
    if len(infos) == 1:
        return _render(infos[0], wf)
    c, lang, z = wf.content, wf.lang, wf.zone
    ordered = sorted(infos, key=lambda i: (-Severity(i.severity).rank(), i.id))
    live = [i for i in ordered if i.status != FlagStatus.RESOLVED] or ordered
    try:
        blocks = [
            c.t(
                "flags.card.head",
                lang,
                severity=Html(label(c, lang, "severity", live[0].severity)),
                code=ordered[0].patient_code,
                n=len(ordered),
                open=len([i for i in ordered if i.status != FlagStatus.RESOLVED]),
            )
        ]
        rows: list[list[dict[str, str]]] = []
        for i in ordered:
            blocks.append(
                c.t(
                    "flags.card.flag",
                    lang,
                    severity=Html(label(c, lang, "severity", i.severity)),
                    id=i.id,
                    category=label(c, lang, "category", i.category),
                    time=local_text(i.opened_at, z, POST_TIME),
                    why=Html(why_text(i.why, source=i.source, content=c, lang=lang)),
                    state=Html(_state(i, c, lang, z)),
                )
            )
            for row in post_keyboard(i, c, lang)["inline_keyboard"]:
                rows.append([{**b, "text": c.t("flags.card.button", lang, id=i.id, label=Html(b["text"]))} for b in row])
        return "\n\n".join(blocks), {"inline_keyboard": rows}
    except Exception as exc:
        log.error("flags: the card of %s could not be rendered (%s); sending a plain one", ordered[0].patient_code, type(exc).__name__)
        text = "\n".join(_plain_post(i) for i in ordered)
        return text, {"inline_keyboard": [row for i in ordered for row in _render(i, wf)[1]["inline_keyboard"]]}


async def _card_view(session: AsyncSession, wf: Workflow, card: FlagCard) -> tuple[str, dict[str, Any]]:
    members = list((await session.execute(select(Flag).where(Flag.card_id == card.id).order_by(Flag.id))).scalars())
    code = await patient_code(session, card.patient_id)
    return render_card([flag_info(f, code) for f in members], wf)


async def _usable_card(session: AsyncSession, wf: Workflow, patient_id: int, day: Any) -> FlagCard | None:
    """Today's card of this patient in the group, unless its post never reached Telegram."""
    card = (
        await session.execute(
            select(FlagCard)
            .where(FlagCard.patient_id == patient_id, FlagCard.day == day, FlagCard.chat_id == wf.group)
            .order_by(FlagCard.id.desc())
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if card is None or card.message_id is not None:
        return card
    status = (
        await session.execute(select(OutboxMessage.status).where(OutboxMessage.dedup_key == f"flagcard:{card.id}"))
    ).scalar_one_or_none()
    return card if status in ("pending", "sending", "sent") else None


async def _edit_card(session: AsyncSession, wf: Workflow, card: FlagCard, now: datetime) -> bool:
    """Show the card's flags as they are now. True when the card's first post had not left yet
    and now carries the change itself (so it notifies as it arrives)."""
    card.rev = (card.rev or 0) + 1
    text, kb = await _card_view(session, wf, card)
    if card.message_id is None:
        row = (
            await session.execute(
                select(OutboxMessage).where(OutboxMessage.dedup_key == f"flagcard:{card.id}").with_for_update()
            )
        ).scalar_one_or_none()
        if row is not None and row.status == "pending":
            row.payload = {**dict(row.payload or {}), "text": text, "reply_markup": kb}
            row.ref = f"card:{card.id}:{card.rev}"
            return True
        return False  # on its way: edited as soon as Telegram says where it landed
    await _edit_message(session, card.chat_id, card.message_id, text, kb, now, f"cardedit:{card.id}:{card.rev}")
    return False


async def publish(session: AsyncSession, wf: Workflow, flag: Flag, created: bool, escalated: bool, now: datetime) -> bool:
    """The posting decision for a raise. Low: nothing (the digest lists it). A flag not yet in the
    group goes on the patient's card of the day; one already there has its messages edited when
    its severity rose. True when this raise produced a message that notifies the group."""
    if flag.severity == Severity.LOW or flag.status == FlagStatus.RESOLVED:
        return False
    if flag.card_id is not None or (not created and flag.group_message_id is not None):  # (or posted before cards)
        if escalated:
            await edit_posts(session, wf, flag, now)
        return False
    if wf.group is None:
        log.warning("flags: COUNSELOR_CHAT_ID is not set; flag %s is not posted", flag.id)
        return False
    day = local_date(now, wf.zone)
    card = await _usable_card(session, wf, flag.patient_id, day)
    if card is None:
        card = FlagCard(patient_id=flag.patient_id, day=day, chat_id=wf.group, rev=0, created_at=now)
        session.add(card)
        await session.flush()
        flag.card_id = card.id
        text, kb = await _card_view(session, wf, card)
        await enqueue(
            session, Outgoing(wf.group, text, reply_markup=kb), now=now, dedup_key=f"flagcard:{card.id}", ref=f"card:{card.id}:0"
        )
        return True
    flag.card_id = card.id
    if card.message_id is not None and flag.group_message_id is None:
        flag.group_message_id = card.message_id
    if await _edit_card(session, wf, card, now):
        return True
    if not wf.rules.card.alerts(flag.severity, flag.category):
        return False
    c, lang = wf.content, wf.lang
    info, text, kb = await view(session, wf, flag)
    head = c.t("flags.card.alert", lang, severity=Html(label(c, lang, "severity", flag.severity)), code=info.patient_code)
    await _reply_in_group(
        session,
        wf,
        card.message_id,
        head + "\n\n" + text,
        kb,
        now,
        dedup_key=f"flagpost:{flag.id}",
        ref=f"flag:{flag.id}:{flag.rev or 0}:main",
    )
    return True


async def _card_sent(session: AsyncSession, wf: Workflow, parts: list[str], chat_id: int, message_id: int, now: datetime) -> None:
    """The card's post was delivered: remember where (for its flags too), catch it up if needed."""
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return
    card = (await session.execute(select(FlagCard).where(FlagCard.id == int(parts[1])).with_for_update())).scalar_one_or_none()
    if card is None or card.message_id == message_id:
        return  # gone (erased) or already recorded
    card.message_id = message_id
    for f in (await session.execute(select(Flag).where(Flag.card_id == card.id))).scalars():
        if f.group_message_id is None:
            f.group_message_id = message_id
    if int(parts[2]) != (card.rev or 0):
        text, kb = await _card_view(session, wf, card)
        await _edit_message(session, chat_id, message_id, text, kb, now, f"cardedit:{card.id}:{card.rev}")


# -- Details: one counselor's DM (the name, the triggers with their words, scores, plan) ----------


DETAILS_TRIGGERS = 10  # the latest triggers shown in Details (the whole list is in /flag <id>)


PLAN_SHOWN = 3  # entries per plan section in Details


PLAN_ENTRY_SHOWN = 120  # characters of each


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rstrip() + " …"


EVIDENCE_SHOWN = 600  # characters; even fully escaped (×5) a trigger stays one message part


def _clip(text: str) -> str:
    """A trigger's words, short enough to fit, with no blank lines (messages split at those)."""
    text = re.sub(r"\n\s*\n+", "\n", text.strip())
    return text if len(text) <= EVIDENCE_SHOWN else text[:EVIDENCE_SHOWN].rstrip() + " …"


def answer_text(c: Content, lang: str, instrument: str, item: str, value: Any) -> str:
    """A stored answer as counselors read it: the option's label in content (never the stored
    value, such as "no_use"), escaped for HTML."""
    try:
        shown = instruments_for(c).instrument(instrument, lang).answer_label(item, value)
    except Exception as exc:  # a view never fails for want of a label
        log.warning("flags: answer label unavailable (%s)", type(exc).__name__)
        shown = "–" if value is None else str(value).replace("_", " ")
    return html.escape(shown, quote=False)


def render_details(d: FlagDetails, wf: Workflow) -> str:
    """The Details DM: for one counselor only (it holds the name and the patient's words).
    Every time is in the clinic's zone, named once at the top."""
    c, lang, z = wf.content, wf.lang, wf.zone

    def when(at: datetime) -> str:
        return local_text(at, z)

    parts = [
        c.t(
            "flags.details_head",
            lang,
            id=d.flag.id,
            code=d.flag.patient_code,
            name=d.first_name or "–",
            severity=Html(label(c, lang, "severity", d.flag.severity)),
            category=label(c, lang, "category", d.flag.category),
            why=Html(why_text(d.flag.why, source=d.flag.source, content=c, lang=lang)),
            state=Html(_state(d.flag, c, lang, z)),
            zone=zone_name(z, d.at or d.flag.opened_at),
        )
    ]
    shown = d.triggers[-DETAILS_TRIGGERS:]
    if shown:
        parts.append(c.t("flags.details_triggers", lang))
    for tr in shown:
        why = trigger_why(tr.source, tr.reason, tr.facts)
        parts.append(
            c.t(
                "flags.details_trigger",
                lang,
                time=when(tr.at),
                severity=Html(label(c, lang, "severity", tr.severity)) if tr.severity else "–",
                why=Html(why_text(why, content=c, lang=lang)),
                text=_clip(tr.evidence) if tr.evidence else c.t("flags.details_no_text", lang),
            )
        )
    if d.scores:
        lines = [c.t("flags.details_scores", lang)]
        for sc in d.scores:
            if sc.done:
                line = c.t("flags.details_score", lang, title=Html(sc.title), total=sc.total if sc.total is not None else "–", band=sc.band or "–", time=when(sc.at))
            else:
                line = c.t("flags.details_score_open", lang, title=Html(sc.title), time=when(sc.at))
            if sc.item9 is not None:
                line += " · " + c.t("flags.details_item9", lang, value=Html(answer_text(c, lang, "phq9", "q9", sc.item9)))
            lines.append(line)
        parts.append("\n".join(lines))
    if d.other_flags:
        lines = [c.t("flags.details_other_flags", lang)]
        for f in d.other_flags:
            lines.append(
                c.t(
                    "flags.details_other_flag",
                    lang,
                    id=f.id,
                    severity=Html(label(c, lang, "severity", f.severity)),
                    category=label(c, lang, "category", f.category),
                    state=label(c, lang, "status", f.status),
                    why=Html(why_text(f.why, source=f.source, content=c, lang=lang)),
                )
            )
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("flags.details_other_none", lang))
    if d.plan:
        lines = [c.t("flags.details_plan", lang)]
        for section, entries in d.plan.items():
            title = c.t(f"plan.sections.{section}.title", lang) if c.has(f"plan.sections.{section}.title", lang) else html.escape(section)
            text = "; ".join(_short(e, PLAN_ENTRY_SHOWN) for e in entries[:PLAN_SHOWN])
            if len(entries) > PLAN_SHOWN:
                text += " " + c.t("flags.details_plan_more", lang, n=len(entries) - PLAN_SHOWN)
            lines.append(c.t("flags.details_plan_section", lang, title=Html(title), entries=Html(html.escape(text, quote=False))))
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("flags.details_plan_empty", lang))
    schedule_key = f"flags.mat.{d.medication_schedule or 'daily'}" if d.mat else "flags.mat.no"
    mat = c.t(schedule_key, lang) if c.has(schedule_key, lang) else c.t("flags.mat.daily", lang)
    parts.append(c.t("flags.details_mat", lang, mat=mat))
    if d.recent:
        head = "flags.details_checkins_mat" if d.mat else "flags.details_checkins"
        line = "flags.details_checkin_mat" if d.mat else "flags.details_checkin"
        lines = [c.t(head, lang, n=len(d.recent))]
        for ci in d.recent:
            lines.append(
                c.t(
                    line,
                    lang,
                    time=when(ci.at),
                    mood="–" if ci.mood is None else ci.mood,
                    craving="–" if ci.craving is None else ci.craving,
                    use=Html(answer_text(c, lang, "checkin", "use", ci.use)),
                    medication=Html(answer_text(c, lang, "checkin", "medication", ci.medication)),
                )
            )
        parts.append("\n".join(lines))
    else:
        parts.append(c.t("flags.details_no_checkins", lang))
    return "\n\n".join(parts)


def flag_fields(c: Content, lang: str, f: FlagInfo) -> dict[str, Any]:
    """What every one-line mention of a flag (/flags, the digest) says: its number, severity,
    patient code, category and state, as labels from content."""
    return {
        "id": f.id,
        "severity": Html(label(c, lang, "severity", f.severity)),
        "code": f.patient_code,
        "category": label(c, lang, "category", f.category),
        "state": label(c, lang, "status", f.status),
    }


def age_text(c: Content, lang: str, delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return c.t("flags.age_minutes", lang, n=minutes)
    if minutes < 48 * 60:
        return c.t("flags.age_hours", lang, n=minutes // 60)
    return c.t("flags.age_days", lang, n=minutes // (24 * 60))
