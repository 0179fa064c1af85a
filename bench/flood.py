"""A flood against other patients' crisis replies.

Starts a real `iop-bot run` process against the fake Bot API (`python -m fakeapi` in its own
process, on a loopback port). Once the bot answers, one person sends --flood texts as fast as
the control API takes them (an enrolled patient, or with --stranger someone not enrolled), and
--crises other patients each send a crisis message spread evenly through the flood. Prints the
crisis reply latency (from the crisis message reaching the fake server to the first message the
bot sends that patient: p50/p95/max) and what the flooder received.

Run:  .venv/bin/python bench/flood.py [--flood 2000] [--crises 20] [--stranger] [--poll]
      (BENCH_PROFILE=flood.prof to profile the bot with cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from startup import SETUP  # noqa: E402
from updates import FakeProcess  # noqa: E402

CRISIS = "I can't do this anymore, I'm going to kill myself tonight"
ORDINARY = "hello, how are you"
TIMEOUT = 120.0
# BENCH_PROFILE=file.prof: the bot runs under cProfile, its statistics written there at exit.
PROFILE = os.path.abspath(os.environ["BENCH_PROFILE"]) if os.environ.get("BENCH_PROFILE") else None


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def _wait_reply(fake: FakeProcess, chat_id: int, proc: asyncio.subprocess.Process) -> None:
    t0 = time.perf_counter()
    while not await fake.ctl("sent", chat_id=chat_id):
        if proc.returncode is not None:
            raise RuntimeError(f"the bot exited ({proc.returncode})")
        if time.perf_counter() - t0 > TIMEOUT:
            raise TimeoutError("the bot did not answer")
        await asyncio.sleep(0.02)


async def main(n_flood: int, n_crises: int, stranger: bool, poll: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        async with FakeProcess() as fake:
            group = await fake.ctl("add_group", title="Counselors", supergroup=True)
            flooder = await fake.ctl("add_user", first_name="Flood", started=True)
            warm = await fake.ctl("add_user", first_name="Warm", started=True)
            crisis_users = [await fake.ctl("add_user", first_name=f"Crisis{i}", started=True) for i in range(n_crises)]
            enrolled = [warm, *crisis_users] + ([] if stranger else [flooder])
            setup = await asyncio.create_subprocess_exec(
                sys.executable, "-c", SETUP, db_url, *(str(u["id"]) for u in enrolled),
                cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            if await setup.wait() != 0:
                raise RuntimeError("could not prepare the database")
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "TELEGRAM_BOT_TOKEN": fake.token,
                "TELEGRAM_API_BASE_URL": fake.base_url,
                "DATABASE_URL": db_url,
                "COUNSELOR_CHAT_ID": str(group["id"]),
                "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            }
            prof_args = ["-m", "cProfile", "-o", PROFILE] if PROFILE else []
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *prof_args, "-m", "bot.cli", "run", cwd=workdir, env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=None if os.environ.get("BENCH_LOG_LEVEL") else asyncio.subprocess.DEVNULL,
            )
            try:
                # Ready: the full detector answers an ordinary text.
                await fake.ctl("send_text", user_id=warm["id"], text=ORDINARY)
                await _wait_reply(fake, warm["id"], proc)
                await asyncio.sleep(3.0)  # let start-up jobs finish (the charts library loads after the detector)
                sent_at: dict[int, float] = {}
                reply_at: dict[int, float] = {}
                watching = {u["id"] for u in crisis_users}
                done = asyncio.Event()

                async def watch() -> None:
                    # --poll: every few ms, during the flood too, the first message to each crisis
                    # patient (the bot's time to answer, plus up to the interval, plus the load the
                    # polling itself puts on the fake server).
                    while len(reply_at) < len(watching) and not done.is_set():
                        for m in await fake.ctl("sent"):
                            cid = m["chat_id"]
                            if cid in watching and cid not in reply_at:
                                reply_at[cid] = time.time()
                        await asyncio.sleep(0.005)

                async def answered() -> None:
                    # Without --poll: asked after the flood, the time each crisis patient's first
                    # message reached the fake server (its own record of the call, wall clock).
                    while True:
                        for c in await fake.ctl("calls", method="sendMessage", limit=1_000_000):
                            try:
                                cid = int(c["params"].get("chat_id"))
                            except (TypeError, ValueError):
                                continue
                            if c["status"] == 200 and cid in watching and cid not in reply_at:
                                reply_at[cid] = c["time"]
                        if len(reply_at) == len(watching):
                            return
                        await asyncio.sleep(0.1)

                watcher = asyncio.create_task(watch() if poll else asyncio.sleep(0))
                every = max(1, n_flood // max(1, n_crises))
                t_start = time.perf_counter()
                queue = list(crisis_users)
                for i in range(n_flood):
                    await fake.ctl("send_text", user_id=flooder["id"], text=f"message {i}")
                    if queue and (i + 1) % every == every // 2:
                        u = queue.pop(0)
                        await fake.ctl("send_text", user_id=u["id"], text=CRISIS)
                        sent_at[u["id"]] = time.time()
                for u in queue:
                    await fake.ctl("send_text", user_id=u["id"], text=CRISIS)
                    sent_at[u["id"]] = time.time()
                t_flood = time.perf_counter() - t_start
                if not poll:
                    watcher = asyncio.create_task(answered())
                try:
                    await asyncio.wait_for(asyncio.shield(watcher), TIMEOUT)
                except TimeoutError:
                    pass
                done.set()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                # Everything the flood caused has been handled once the updates are all taken.
                await fake.ctl("wait_idle", timeout=TIMEOUT)
                await asyncio.sleep(1.0)
                to_flooder = [m.get("plain_text") or m.get("text") or "" for m in await fake.ctl("sent", chat_id=flooder["id"])]
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                await proc.wait()
    # Latency: from when the crisis left the control API (its `send_text` returned) to when the
    # bot's first message to that patient reached the fake server (--poll: when the poll first saw
    # it, an upper bound by the polling interval).
    lat = [reply_at[uid] - sent_at[uid] for uid in sent_at if uid in reply_at]
    who = "a stranger" if stranger else "an enrolled patient"
    print(f"flood: {n_flood} texts from {who} in {t_flood:.1f}s, {n_crises} crisis messages from other patients spread through it")
    print("replies timed by " + ("polling the fake server every 5 ms" if poll else "the fake server's record of each call"))
    if lat:
        print(
            f"crisis reply latency: p50 {statistics.median(lat) * 1000:.0f} ms, p95 {_pct(lat, 0.95) * 1000:.0f} ms, "
            f"max {max(lat) * 1000:.0f} ms ({len(lat)}/{n_crises} answered)"
        )
    else:
        print(f"crisis reply latency: none of {n_crises} answered")
    print(f"the flooder received {len(to_flooder)} messages:")
    for text, n in Counter(t.splitlines()[0][:90] if t else "" for t in to_flooder).most_common():
        print(f"  {n} x {text!r}")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count()))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flood", type=int, default=2000, help="texts from the flooder")
    p.add_argument("--crises", type=int, default=20, help="crisis messages from other patients")
    p.add_argument("--stranger", action="store_true", help="the flooder is not enrolled")
    p.add_argument("--poll", action="store_true", help="time replies by polling the fake server during the flood")
    a = p.parse_args()
    asyncio.run(main(a.flood, max(1, a.crises), a.stranger, a.poll))
