"""What a conversation step shows: plain values the areas return and the handlers render.

Check-ins and assessments (which run inside the check-in conversation) answer each button or
typed answer with a `Result`; each `Screen` is HTML text and rows of (label, callback_data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Row = list[tuple[str, str]]


@dataclass(frozen=True)
class Screen:
    """A message to show: HTML text and button rows of (label, callback_data)."""

    text: str
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """What to show after an action: `screens[0]` replaces the current message, the rest follow."""

    screens: list[Screen]
    finished: bool = False
    flags: tuple[str, ...] = ()
    # The screens carry the crisis reply: they go first, before anything ordinary.
    crisis: bool = False

    @property
    def must_arrive(self) -> bool:
        """What the step recorded ends a flow or reaches the care team (a closing, a flag, a
        crisis reply): its screens must arrive even if the process dies right after the commit."""
        return self.finished or self.crisis or bool(self.flags)
