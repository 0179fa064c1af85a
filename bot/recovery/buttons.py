"""The /sos toolbox's buttons (`sos:…`) and the plan's (`pl:…`)."""

from __future__ import annotations

from bot.platform.callbacks import Buttons, Int, OneOf, Word
from bot.platform.keyboards import MAX_CALLBACK_NUMBER
from bot.recovery.plans import SECTIONS

EXERCISE_ID = Word(24)
RATING = Int(low=-MAX_CALLBACK_NUMBER)  # a rating on the exercise's own scale

SOS = Buttons("sos")
OPEN = SOS.codec("open")  # the urge tools after a check-in (a new session)
MENU = SOS.codec("menu")  # the toolbox
SHOW_PLAN = SOS.codec("plan")
CALL = SOS.codec("call")
TALK = SOS.codec("talk")
HELPED = SOS.codec("helped")
STEP = SOS.codec("x", EXERCISE_ID, Int())  # an exercise's step, by index
CHOICE = SOS.codec("c", EXERCISE_ID, Int(), Int())  # a choice in a step, by index
RATE = SOS.codec("r", EXERCISE_ID, Int(), RATING)  # a rating asked in a step
FOLLOWUP = SOS.codec("f", Int(), RATING)  # the rating after a session, by its id

PLAN = Buttons("pl")
PLAN_MENU = PLAN.codec("menu")
PLAN_SHOW = PLAN.codec("show")
PLAN_CANCEL = PLAN.codec("cancel")
PLAN_SECTION = PLAN.codec("s", OneOf(SECTIONS))
PLAN_KEEP = PLAN.codec("k", OneOf(SECTIONS))  # "keep" after asking to remove: back to the section
PLAN_ADD = PLAN.codec("add", OneOf(SECTIONS))
PLAN_EDIT = PLAN.codec("e", Int())  # an entry, by id
PLAN_REMOVE = PLAN.codec("d", Int())
PLAN_REMOVE_YES = PLAN.codec("dy", Int())
