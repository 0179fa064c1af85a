"""The two-step /delete confirmation (`pv:del:1`, `pv:del:2`, `pv:keep`)."""

from __future__ import annotations

from bot.platform.callbacks import Buttons, OneOf

PRIVACY = Buttons("pv")
DELETE = PRIVACY.codec("del", OneOf(("1", "2")))  # the step confirmed
KEEP = PRIVACY.codec("keep")
