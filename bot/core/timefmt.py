"""Clock times and dates as a patient reads them: one format everywhere in a patient's view.

The format is per language, in content (`formats.*`, content/<lang>/messages/common.yaml): in
English a 12-hour clock ("7:00 am", "1:16 pm") and "Jan 15, 2026". Callers convert an instant
to the person's zone first; these functions only write what they are given.
"""

from __future__ import annotations

from datetime import date, datetime, time

from bot.platform.content import Content


def clock(content: Content, lang: str, t: time | datetime) -> str:
    """A time of day: `formats.clock` with {h12}, {h24}, {hh}, {mm} and {ampm}."""
    h, m = t.hour, t.minute
    ampm = content.raw("formats.am" if h < 12 else "formats.pm", lang)
    return str(content.raw("formats.clock", lang)).format(
        h12=(h % 12) or 12, h24=h, hh=f"{h:02d}", mm=f"{m:02d}", ampm=ampm
    )


def day(content: Content, lang: str, d: date) -> str:
    """A date: `formats.date` with {month} (a name from `formats.months`), {day} and {year}."""
    months = content.raw("formats.months", lang)
    return str(content.raw("formats.date", lang)).format(month=months[d.month - 1], day=d.day, year=d.year)
