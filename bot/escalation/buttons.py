"""The counselors' buttons on flags and relays (`fl:<action>:<flag or conversation id>`)."""

from __future__ import annotations

from bot.platform.callbacks import Buttons, Int

FLAG = Buttons("fl")
CLAIM = FLAG.codec("claim", Int())
DETAILS = FLAG.codec("details", Int())
MESSAGE = FLAG.codec("msg", Int())
RESOLVE = FLAG.codec("resolve", Int())
NO_NOTE = FLAG.codec("nonote", Int())
END = FLAG.codec("end", Int())  # a relay conversation's id
