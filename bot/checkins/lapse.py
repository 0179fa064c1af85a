"""The lapse flow: what a patient reads after saying they used (DESIGN §2.2, §2.4, §2.5).

Non-shaming and practical: a lapse is not a relapse; what happened, what helped before, and the
next right step (a meeting today, calling someone, the counselor). Both ways a patient can tell
us (the check-in's "did you use?" and their own typed words) go through `record`, which restarts
the sober-day counter with `bot.checkins.sobriety.record_lapse` and builds the same reply:

- what the patient said about themselves ("I'm such a failure", "I ruined everything": the
  abstinence-violation effect) is reflected in one warm line;
- an opioid named in their words adds the tolerance and naloxone safety lines (and Never Use
  Alone from the region's resources);
- a patient in medication-assisted treatment who took extra or missed doses is asked to keep
  taking it as prescribed and to talk to their prescriber;
- the counter's restart is said gently, with the total sober days that still count.

Word lists are in `content/<lang>/lapse.yaml`, sentences in `content/<lang>/messages/lapse.yaml`.
`rows` are (label, callback_data) buttons handled by the /sos area (`sos:*`, `pl:*`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from bot.checkins import sobriety
from bot.checkins.sobriety import SobrietyNumbers
from bot.core.people import active_patient_info
from bot.platform.clock import local_date
from bot.platform.content import FALLBACK_LANGUAGE, Content, get_content
from bot.recovery import buttons as recovery

log = logging.getLogger(__name__)

Button = tuple[str, str]

WORDS_FILE = "lapse.yaml"
WORD_LISTS = ("self_blame", "opioids", "mat_extra_dose", "mat_missed_dose")
QUOTE_MAX = 60  # characters of the patient's words quoted back


# ---------------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LapseWords:
    """The compiled word lists of one language."""

    self_blame: tuple[re.Pattern[str], ...]
    opioids: tuple[re.Pattern[str], ...]
    mat_extra_dose: tuple[re.Pattern[str], ...]
    mat_missed_dose: tuple[re.Pattern[str], ...]


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=16)
def _words_at(path: str, mtime: float) -> LapseWords:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    lists = {name: tuple(_compile(str(p)) for p in data.get(name) or ()) for name in WORD_LISTS}
    return LapseWords(**lists)


def words_for(content: Content, lang: str) -> LapseWords:
    """The word lists in `lang` (English when the language has none)."""
    p = content.root / lang / WORDS_FILE
    if not p.is_file():
        p = content.root / FALLBACK_LANGUAGE / WORDS_FILE
    return _words_at(str(p), p.stat().st_mtime)


def _normal(text: str) -> str:
    # Curly apostrophes (phone keyboards) read as straight ones; runs of spaces as one.
    return re.sub(r"\s+", " ", text.replace("’", "'").replace("‘", "'"))


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> re.Match[str] | None:
    found = [m for m in (p.search(text) for p in patterns) if m is not None]
    return min(found, key=lambda m: m.start()) if found else None


@dataclass(frozen=True)
class Reading:
    """What the lapse reply takes from the patient's own words."""

    self_blame: str | None = None  # their words about themselves, as typed (trimmed)
    opioid: bool = False
    extra_dose: bool = False
    missed_dose: bool = False


def read(words: LapseWords, text: str | None) -> Reading:
    """Read a patient's words (a typed message or a check-in note)."""
    if not text or not text.strip():
        return Reading()
    t = _normal(text)
    blame = _first(words.self_blame, t)
    quote = None
    if blame is not None:
        quote = blame.group(0).strip(" .,!?;:")[:QUOTE_MAX] or None
    return Reading(
        self_blame=quote,
        opioid=_first(words.opioids, t) is not None,
        extra_dose=_first(words.mat_extra_dose, t) is not None,
        missed_dose=_first(words.mat_missed_dose, t) is not None,
    )


# ---------------------------------------------------------------------------------------------
# The reply
# ---------------------------------------------------------------------------------------------


def _never_use_alone(c: Content, lang: str) -> str | None:
    """The Never Use Alone line from the clinic region's resources, if the region has one."""
    try:
        from bot.escalation.rules import load_rules
        from bot.safety.crisis import resources

        region = load_rules(c.root).default_region
        # The resources the region lists for use and overdose.
        listed = resources(region, lang, c.root, category="use_disclosure")
        found = next((r for r in listed if r.id == "never_use_alone"), None)
    except Exception as exc:  # the lapse reply never fails for want of a resource line
        log.warning("lapse: resources unavailable (%s)", type(exc).__name__)
        return None
    if found is None:
        return None
    from bot.platform.content import Html

    # Resource texts are trusted HTML from content, validated by the clinical checker.
    return c.t("lapse.opioid_never_use_alone", lang, name=Html(found.name), how=Html(found.how))


def day_count_line(c: Content, lang: str, numbers: SobrietyNumbers | None) -> str | None:
    """The counter's restart, said gently (None for a patient without a sobriety date)."""
    if numbers is None:
        return None
    if numbers.total_days <= 0:
        return c.t("lapse.day_count_none", lang)
    if numbers.total_days == 1:
        return c.t("lapse.day_count_one", lang)
    return c.t("lapse.day_count", lang, total=numbers.total_days)


def lapse_message(
    lang: str = "en",
    patient: Any | None = None,
    *,
    content: Content | None = None,
    words: str | None = None,
    missed_dose: bool = False,
    numbers: SobrietyNumbers | None = None,
) -> tuple[str, list[list[Button]]]:
    """The lapse message and its buttons. `patient` (a PatientInfo) personalises the greeting
    and says whether they are in medication-assisted treatment; `words` are what they wrote;
    `missed_dose` comes from the check-in's medication answer; `numbers` is the counter after
    the lapse was recorded."""
    c = content or get_content()
    name = getattr(patient, "first_name", None) or ""
    mat = bool(getattr(patient, "mat", False))
    reading = read(words_for(c, lang), words)
    greeting = c.t("lapse.greeting_named", lang, name=name) if name else c.t("lapse.greeting", lang)
    parts: list[str | None] = [greeting]
    if reading.self_blame:
        parts.append(c.t("lapse.self_blame", lang, words=reading.self_blame))
    if reading.opioid:
        safety = [c.t("lapse.opioid_tolerance", lang), c.t("lapse.opioid_naloxone", lang), _never_use_alone(c, lang)]
        parts.append("\n".join(s for s in safety if s))
    if mat and reading.extra_dose:
        parts.append(c.t("lapse.mat_extra_dose", lang))
    elif mat and (reading.missed_dose or missed_dose):
        parts.append(c.t("lapse.mat_missed_dose", lang))
    parts += [
        c.t("lapse.not_a_relapse", lang),
        day_count_line(c, lang, numbers),
        c.t("lapse.what_happened", lang),
        c.t("lapse.next_step", lang),
    ]
    text = "\n\n".join(p for p in parts if p)
    rows: list[list[Button]] = [
        [(c.t("lapse.button.note", lang), recovery.PLAN_ADD.pack("triggers"))],
        [(c.t("lapse.button.helped", lang), recovery.HELPED.pack())],
        [(c.t("lapse.button.call", lang), recovery.CALL.pack())],
    ]
    rows.append([(c.t("lapse.button.talk", lang), recovery.TALK.pack())])
    rows.append([(c.t("lapse.button.tools", lang), recovery.MENU.pack())])
    return text, rows


@dataclass(frozen=True)
class LapseReply:
    text: str
    rows: list[list[Button]]
    numbers: SobrietyNumbers | None  # the counter after the lapse; None without a sobriety date


async def record(
    session: AsyncSession,
    content: Content,
    patient: Any,
    now: datetime,
    *,
    day: date | None = None,
    words: str | None = None,
    missed_dose: bool = False,
) -> LapseReply:
    """A lapse the patient told us about (check-in or typed words): the sober-day counter
    restarts on `day` (the patient's local today by default; once per day) and the reply is
    built. `patient` is a PatientInfo."""
    lang = getattr(patient, "language", None) or FALLBACK_LANGUAGE
    when = day or local_date(now, patient.timezone)
    numbers = await sobriety.record_lapse(session, patient.id, when, now)
    text, rows = lapse_message(
        lang, patient, content=content, words=words, missed_dose=missed_dose, numbers=numbers
    )
    return LapseReply(text, rows, numbers)


async def typed(session: AsyncSession, content: Content, telegram_id: int, words: str, now: datetime) -> LapseReply | None:
    """A lapse in the patient's own words ("I drank last night"), once the risk detector
    flagged it: `record` for the enrolled patient behind `telegram_id` (None if there is none)."""
    patient = await active_patient_info(session, telegram_id)
    if patient is None:
        return None
    return await record(session, content, patient, now, words=words)


# ---------------------------------------------------------------------------------------------
# Content check
# ---------------------------------------------------------------------------------------------


def check_content(root: Path) -> list[tuple[str, int, str]]:
    """Each language's lapse word lists: every list present (in English), patterns that compile
    and match no empty text."""
    problems: list[tuple[str, int, str]] = []
    files = sorted(root.glob(f"*/{WORDS_FILE}"))
    if (root / FALLBACK_LANGUAGE).is_dir() and not (root / FALLBACK_LANGUAGE / WORDS_FILE).is_file():
        problems.append((f"{FALLBACK_LANGUAGE}/{WORDS_FILE}", 0, "the English lapse word lists are missing"))
    for f in files:
        rel = str(f.relative_to(root))
        try:
            node = yaml.compose(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append((rel, 0, f"YAML syntax error: {exc}"))
            continue
        if not isinstance(node, yaml.MappingNode):
            problems.append((rel, 1, f"expected a mapping with {', '.join(WORD_LISTS)}"))
            continue
        seen = set()
        for key, value in node.value:
            line = key.start_mark.line + 1
            name = str(key.value)
            if name not in WORD_LISTS:
                problems.append((rel, line, f"unknown list {name!r} (known: {', '.join(WORD_LISTS)})"))
                continue
            seen.add(name)
            if not isinstance(value, yaml.SequenceNode) or not value.value:
                problems.append((rel, line, f"{name} must be a non-empty list of patterns"))
                continue
            for item in value.value:
                where = item.start_mark.line + 1
                if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
                    problems.append((rel, where, f"{name}: a pattern must be a non-empty text"))
                    continue
                try:
                    compiled = _compile(str(item.value))
                except re.error as exc:
                    problems.append((rel, where, f"{name}: bad pattern: {exc}"))
                    continue
                if compiled.search("") or compiled.search(" "):
                    problems.append((rel, where, f"{name}: the pattern matches empty text"))
        if f.parent.name == FALLBACK_LANGUAGE:
            for name in WORD_LISTS:
                if name not in seen:
                    problems.append((rel, 1, f"missing list {name!r}"))
    return problems
