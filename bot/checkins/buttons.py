"""The daily check-in's buttons (`ci:…`): answers by item id and option value, as written in content."""

from __future__ import annotations

from bot.platform.callbacks import Buttons, Int, OneOf, Word

YES_NO = OneOf(("y", "n"))
ITEM = Word(28)  # an item's id (content ids are lowercase words)
VALUE = Word(28)  # an option's value (a word or a whole number)

CHECKIN = Buttons("ci")
START = CHECKIN.codec("start")
ANSWER = CHECKIN.codec("a", ITEM, VALUE)
TOGGLE = CHECKIN.codec("t", ITEM, VALUE)  # one option of a multiple choice
DONE = CHECKIN.codec("d", ITEM)  # the multiple choice is complete
SKIP = CHECKIN.codec("skip", ITEM)
BACK = CHECKIN.codec("back")
CANCEL = CHECKIN.codec("cancel")
# The lapse flow's "would you like a counselor to reach out?" (on messages already sent).
TALK = CHECKIN.codec("talk", YES_NO)
# Share a sobriety milestone with the care team, by its number of days.
MILESTONE = CHECKIN.codec("ms", Int(), YES_NO)
