"""Progress charts: a valid, phone-sized PNG; the data and summary behind /progress."""

from __future__ import annotations

import io
from datetime import date, timedelta

import matplotlib.image as mpimg

from bot.checkins import progress
from bot.checkins.charts import ChartDay, render
from bot.core.models import AuditEntry
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from tests.checkins.test_checkins import full_checkin
from tests.checkins_support import content, make_patient

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _days(n: int = 30) -> list[ChartDay]:
    start = date(2026, 2, 1)
    return [
        ChartDay(start + timedelta(i), mood=(i % 5) + 1, craving=(i * 3) % 11, checked_in=i % 4 != 0, lapse=i == 12)
        if i % 4 != 0
        else ChartDay(start + timedelta(i))
        for i in range(n)
    ]


def test_chart_is_a_valid_png_of_phone_size():
    data = render(_days())
    assert data[:8] == PNG_MAGIC
    img = mpimg.imread(io.BytesIO(data), format="png")
    h, w = img.shape[:2]
    assert w >= 800 and h >= 800


def test_chart_with_no_data_still_renders():
    data = render([ChartDay(date(2026, 2, 1) + timedelta(i)) for i in range(30)])
    assert data[:8] == PNG_MAGIC
    assert render([])[:8] == PNG_MAGIC


async def test_progress_data_summary_and_chart(db: Database, clock: FrozenClock):
    c = content()
    p = await make_patient(db, clock.now(), sobriety_date=date(2026, 2, 1))
    await full_checkin(db, clock, p, mood=4, craving=2)
    clock.advance(days=1)
    await full_checkin(db, clock, p, mood=2, craving=6, use="used")
    async with db.transaction() as s:
        pr = await progress.progress(s, c, p, clock.now())
    assert len(pr.days) == 30 and pr.days[-1].day == date(2026, 3, 3)
    assert [(d.mood, d.craving, d.lapse) for d in pr.days[-2:]] == [(4, 2, False), (2, 6, True)]
    assert sum(d.checked_in for d in pr.days) == 2
    lines = pr.summary.split("\n")
    assert len(lines) == 2 and "2 of 30" in lines[0] and "average mood 3.0" in lines[0]
    assert "total sober days 30" in lines[1]
    assert pr.chart[:8] == PNG_MAGIC


async def test_counselor_view_is_audited(db: Database, clock: FrozenClock):
    c = content()
    p = await make_patient(db, clock.now(), code="P-4821")
    await full_checkin(db, clock, p, mood=3, use="used")
    async with db.transaction() as s:
        view = await progress.counselor_view(s, c, "p-4821", 555, clock.now(), zone="UTC")
        missing = await progress.counselor_view(s, c, "P-0000", 555, clock.now(), zone="UTC")
    assert view is not None and missing is None
    assert "P-4821" in view.text and "mood 3" in view.text and "use disclosed" in view.text
    assert view.chart[:8] == PNG_MAGIC
    from sqlalchemy import select

    async with db.session() as s:
        rows = list((await s.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())
    assert [(r.actor_id, r.action, r.subject) for r in rows] == [
        (555, "patient.view", "P-4821"),
        (555, "patient.view_missing", "P-0000"),
    ]
