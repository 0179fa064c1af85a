"""Crisis latency: from a crisis message arriving at the fake Bot API to both the patient's
resources and the counselors' group post. Prints p50/p95.

    .venv/bin/python bench/crisis_latency.py [--trials 50] [--burst 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from escalation_common import pick_detector, quiet_logs, summary

import bot.schema  # noqa: F401  (every table, for create_all)
from bot.platform.clock import Clock
from bot.platform.db import Database
from fakeapi import FakeTelegram
from tests.escalation_support import add_patient
from tests.harness import BotHarness

CRISIS_TEXT = "I can't do this anymore, I'm going to end it all tonight"


async def main(trials: int, burst: int) -> None:
    quiet_logs()
    detector, stand_in = pick_detector()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await db.create_all()
        async with FakeTelegram() as fake:
            h = BotHarness(fake, db, Clock(), detector=stand_in)
            await h.start()
            users = []
            for i in range(trials + burst):
                u = fake.add_user(first_name=f"Bench{i}", started=True)
                await add_patient(db, datetime.now(UTC), telegram_id=u.id, code=f"P-{5000 + i}", first_name=f"Bench{i}")
                users.append(u)
            await asyncio.sleep(1.5)  # let start-up jobs finish

            async def measure(uid: int) -> tuple[float, float, float]:
                t0 = time.perf_counter()
                before = len(fake.sent(h.group.id))
                fake.send_text(uid, CRISIS_TEXT)
                t_reply = t_post = 0.0
                while time.perf_counter() - t0 < 30 and not (t_reply and t_post):
                    now = time.perf_counter() - t0
                    if not t_reply and fake.sent(uid):
                        t_reply = now
                    if not t_post and len(fake.sent(h.group.id)) > before:
                        t_post = now
                    await asyncio.sleep(0.002)
                return t_reply, t_post, max(t_reply, t_post)

            seq = [await measure(u.id) for u in users[:trials]]
            # A burst: several patients in crisis at the same moment (group posts counted per flag).
            t0 = time.perf_counter()
            group_before = len(fake.sent(h.group.id))
            for u in users[trials:]:
                fake.send_text(u.id, CRISIS_TEXT)
            reply_at: dict[int, float] = {}
            post_done = 0.0
            while time.perf_counter() - t0 < 60:
                now = time.perf_counter() - t0
                for u in users[trials:]:
                    if u.id not in reply_at and fake.sent(u.id):
                        reply_at[u.id] = now
                if not post_done and len(fake.sent(h.group.id)) - group_before >= burst:
                    post_done = now
                if len(reply_at) == burst and post_done:
                    break
                await asyncio.sleep(0.002)
            await h.stop()
            errors = len(fake.errors)
        await db.dispose()
    print(f"crisis latency (detector: {detector}; SQLite; fake Bot API over HTTP)")
    print(summary("sequential: patient resources", [r for r, _, _ in seq]))
    print(summary("sequential: group post", [p for _, p, _ in seq]))
    print(summary("sequential: both delivered", [b for _, _, b in seq]))
    if burst:
        print(summary(f"burst of {burst}: patient resources", list(reply_at.values())))
        print(f"burst of {burst}: all {burst} group posts after {post_done * 1000:.0f} ms")
    print(f"Bot API error answers: {errors}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--burst", type=int, default=20)
    a = ap.parse_args()
    asyncio.run(main(a.trials, a.burst))
