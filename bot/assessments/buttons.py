"""The questionnaires' buttons (`as:…`), by instrument, item or follow-up question, and value."""

from __future__ import annotations

from bot.platform.callbacks import Buttons, OneOf, Word

INSTRUMENT = Word(12)  # weekly, phq9, gad7
ITEM = Word(24)
VALUE = Word(20)

ASSESSMENT = Buttons("as")
START = ASSESSMENT.codec("start", INSTRUMENT)
ANSWER = ASSESSMENT.codec("a", INSTRUMENT, ITEM, VALUE)
RESUME = ASSESSMENT.codec("resume", INSTRUMENT)
# The suicide follow-up's yes/no questions, by question id.
FOLLOWUP = ASSESSMENT.codec("f", INSTRUMENT, ITEM, OneOf(("y", "n")))
BACK = ASSESSMENT.codec("back", INSTRUMENT)
CANCEL = ASSESSMENT.codec("cancel", INSTRUMENT)
