"""Progress charts (DESIGN §2.4): a phone-readable PNG of the last 30 days.

Two stacked panels sharing the date axis: mood (1-5) above, craving (0-10) below, and a thin
strip under them where days with a check-in are marked (never on the craving scale). Lapses are
shaded bands across the panels. The legend names only what the chart shows. Large fonts,
Okabe-Ito colours (safe for colour-blind readers), labelled axes, nothing else.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Okabe-Ito palette.
BLUE = "#0072B2"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
GREEN = "#009E73"
GREY = "#555555"


@dataclass(frozen=True)
class ChartDay:
    day: date
    mood: int | None = None
    craving: int | None = None
    checked_in: bool = False
    lapse: bool = False


@dataclass(frozen=True)
class ChartLabels:
    """Every word on the chart (from content/, so it can be translated)."""

    title: str = "Your last 30 days"
    mood: str = "Mood (1-5)"
    craving: str = "Craving (0-10)"
    date: str = "Date"
    checkin: str = "Check-in"
    lapse: str = "Lapse"


def _series(days: list[ChartDay], attr: str) -> tuple[list[date], list[float]]:
    xs, ys = [], []
    for d in days:
        v = getattr(d, attr)
        if v is not None:
            xs.append(d.day)
            ys.append(float(v))
    return xs, ys


def render(days: list[ChartDay], labels: ChartLabels | None = None, *, dpi: int = 100) -> bytes:
    """The chart as PNG bytes (about 900x1000 pixels)."""
    fig = figure(days, labels, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def preload() -> None:
    """Import matplotlib (most of a second): on first use, or ahead of it in a worker thread,
    never at start-up, when the bot should be answering."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.figure  # noqa: F401


def figure(days: list[ChartDay], labels: ChartLabels | None = None, *, dpi: int = 100) -> Figure:
    """The chart as a matplotlib figure: axes mood, craving, check-ins (top to bottom)."""
    preload()
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    labels = labels or ChartLabels()
    fig = Figure(figsize=(9, 10), dpi=dpi)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.93, bottom=0.13, hspace=0.12)
    ax_mood, ax_crav, ax_days = fig.subplots(3, 1, height_ratios=[1, 1.3, 0.18])
    size = 18
    start = days[0].day if days else date.today()
    end = days[-1].day if days else start

    for ax in (ax_mood, ax_crav, ax_days):
        for d in days:
            if d.lapse:
                ax.axvspan(mdates.date2num(d.day) - 0.5, mdates.date2num(d.day) + 0.5, color=VERMILLION, alpha=0.25, lw=0)
        ax.grid(axis="y", color="#dddddd", lw=1)
        ax.tick_params(labelsize=size - 2)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    xs, ys = _series(days, "mood")
    ax_mood.plot(xs, ys, color=BLUE, lw=3.5, marker="o", ms=9)
    ax_mood.set_ylim(0.5, 5.5)
    ax_mood.set_yticks([1, 2, 3, 4, 5])
    ax_mood.set_ylabel(labels.mood, fontsize=size, color=BLUE)
    ax_mood.set_title(labels.title, fontsize=size + 6, pad=12)

    xs, ys = _series(days, "craving")
    ax_crav.plot(xs, ys, color=ORANGE, lw=3.5, marker="s", ms=9)
    ax_crav.set_ylim(-0.5, 10.5)
    ax_crav.set_yticks([0, 2, 4, 6, 8, 10])
    ax_crav.set_ylabel(labels.craving, fontsize=size, color="#9a6a00")

    # Check-ins on a strip of their own, with no scale: a marker per day with a check-in.
    checked = [d.day for d in days if d.checked_in]
    ax_days.plot(checked, [0.0] * len(checked), linestyle="none", marker="^", ms=11, color=GREEN, label=labels.checkin)
    ax_days.set_ylim(-1, 1)
    ax_days.set_yticks([])
    ax_days.grid(False)
    ax_days.spines["left"].set_visible(False)
    ax_days.set_xlabel(labels.date, fontsize=size)
    xlim = (mdates.date2num(start) - 0.7, mdates.date2num(end) + 0.7)
    for ax in (ax_mood, ax_crav, ax_days):
        ax.set_xlim(*xlim)
    ax_mood.set_xticks([])
    ax_crav.set_xticks([])
    ax_days.xaxis.set_major_locator(mdates.DayLocator(interval=7))
    ax_days.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))

    from matplotlib.patches import Patch

    handles: list[Any] = []
    if checked:
        handles.append(ax_days.lines[-1])
    if any(d.lapse for d in days):
        handles.append(Patch(color=VERMILLION, alpha=0.25, label=labels.lapse))
    if handles:
        fig.legend(handles=handles, fontsize=size - 2, loc="lower center", frameon=False, ncol=len(handles))
    return fig
