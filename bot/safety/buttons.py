"""The patient's answers to the safety question and to the follow-up after a flag (`sf:…`)."""

from __future__ import annotations

from bot.platform.callbacks import Buttons, Int, OneOf, Word

SAFETY = Buttons("sf")
# The safety question, by its row id: "yes" carries the category, so the crisis reply it brings
# at once (before the database) has the right resources; a category no longer known gets the
# default resources, never an expired button.
YES = SAFETY.codec("y", Int(), Word(32))
YES_BARE = SAFETY.codec("y", Int())
NO = SAFETY.codec("n", Int())
TALK = SAFETY.codec("t", Int())
# The follow-up a day after a flag (bot/escalation/renotify.py), by the flag's id.
FOLLOWUP_ANSWERS = ("ok", "bad", "talk")
FOLLOWUP = SAFETY.codec("fu", Int(), OneOf(FOLLOWUP_ANSWERS))
