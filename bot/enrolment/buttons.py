"""The buttons of onboarding (`ob:…`), /settings (`st:…`) and /invites (`inv:…`).

Onboarding and settings ask the same questions, so their answers have the same codecs under two
prefixes: `<prefix>:<question>:<answer>`. Age and consent are asked only while onboarding.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.platform.callbacks import Buttons, Codec, Int, OneOf, Word

YES_NO = OneOf(("y", "n"))


@dataclass(frozen=True)
class Answers:
    """The answer buttons of one prefix, one codec per question."""

    family: Buttons
    timezone: Codec  # an index into the common zones, or "other"
    time: Codec  # HHMM
    sobriety: Codec  # "skip", "change", "clear" or a date to confirm, "d20260115"
    mat: Codec
    schedule: Codec  # how often the MAT medication is taken: d, w, m


def _answers(prefix: str) -> Answers:
    family = Buttons(prefix)
    return Answers(
        family,
        timezone=family.codec("tz", Word(5)),
        time=family.codec("tm", Word(4)),
        sobriety=family.codec("sob", Word(9)),
        mat=family.codec("mat", YES_NO),
        schedule=family.codec("med", OneOf(("d", "w", "m"))),
    )


ONBOARDING = _answers("ob")
AGE = ONBOARDING.family.codec("age", YES_NO)
CONSENT = ONBOARDING.family.codec("con", YES_NO)

SETTINGS = _answers("st")
# A setting's own button opens its question (st:tz, st:tm, st:sob, st:mat) or the languages.
OPEN_TIMEZONE = SETTINGS.family.codec("tz")
OPEN_TIME = SETTINGS.family.codec("tm")
OPEN_SOBRIETY = SETTINGS.family.codec("sob")
OPEN_MAT = SETTINGS.family.codec("mat")
OPEN_LANGUAGE = SETTINGS.family.codec("lang")
LANGUAGE = SETTINGS.family.codec("lang", Word(16))
TIPS = SETTINGS.family.codec("tips", OneOf(("0", "1")))

INVITES = Buttons("inv")
REVOKE = INVITES.codec("rev", Int(high=999_999_999))  # an invite's id
