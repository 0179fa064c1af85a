"""Chart rendering speed: milliseconds per 30-day progress chart.

    .venv/bin/python -m bench.charts
"""

from __future__ import annotations

import statistics
import time
from datetime import date, timedelta

from bot.checkins.charts import ChartDay, render


def sample() -> list[ChartDay]:
    start = date(2026, 2, 1)
    return [
        ChartDay(start + timedelta(i), mood=(i % 5) + 1, craving=(i * 3) % 11, checked_in=True, lapse=i == 12)
        if i % 4
        else ChartDay(start + timedelta(i))
        for i in range(30)
    ]


def main(runs: int = 20) -> None:
    days = sample()
    render(days)  # warm up: fonts and caches
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        data = render(days)
        times.append((time.perf_counter() - t) * 1000)
    print(f"chart: {len(data) // 1024} KB PNG; {statistics.median(times):.0f} ms median, "
          f"{max(times):.0f} ms worst over {runs} renders")


if __name__ == "__main__":
    main()
