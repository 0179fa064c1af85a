"""Start-up: from `iop-bot run` starting to the first answers.

Starts a real `iop-bot run` process against the fake Bot API (`python -m fakeapi` in its own
process, on a loopback port). Before each start, an enrolled patient's crisis message and
another patient's ordinary message are already waiting at the fake server (sent "at once"),
and the clock runs from the moment the process is started to:

- crisis: the first message the bot sends to the patient in crisis (the crisis reply);
- ordinary: the first answer to the ordinary message.

The first run starts with an empty data folder (a first start: content is checked, the risk
detector is built while the bot receives, and once built it is written to the data folder with the
record of the content check; the run goes on until both are there, as a bot that keeps running
does); the others are restarts (the detector is read back from the data folder). Median and max
per kind, and the load average before and after.

The bot's process writes Python's bytecode cache as Python does by default (the first start
writes it, restarts read it), as a deployed bot does, even where the environment says not to
(PYTHONDONTWRITEBYTECODE): every start would otherwise compile the bot's own modules from source.

With --latency-ms, every Bot API call is answered that much later, as a round trip to Telegram's
servers takes (a server on this machine otherwise answers at once): what start-up asks Telegram
before it receives then shows.

Run:  .venv/bin/python bench/startup.py [--runs 5] [--code DIR] [--latency-ms 60]
      (--code: run the bot from another checkout of the code, e.g. to compare with a release)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from updates import FakeProcess  # noqa: E402

from bot.platform.content import CHECKED_FILE  # noqa: E402
from bot.safety.risk.prepared import FILE as PREPARED_FILE  # noqa: E402

# The database is prepared by the code under test (its migrations, its models).
SETUP = """
import asyncio, sys
from datetime import UTC, datetime
from bot.platform import migrate
from bot.platform.db import Database
from tests.escalation_support import add_patient
url, ids = sys.argv[1], [int(x) for x in sys.argv[2:]]
migrate.upgrade(url)
async def enrol():
    db = Database(url)
    for i, uid in enumerate(ids):
        await add_patient(db, datetime.now(UTC), telegram_id=uid, code=f"P-{7000 + i}", first_name="Bench")
    await db.dispose()
asyncio.run(enrol())
"""

CRISIS = "I can't do this anymore, I'm going to kill myself tonight"
ORDINARY = "hello, how are you"
TIMEOUT = 120.0


async def _first_reply(
    fake: FakeProcess, chat_id: int, t0: float, proc: asyncio.subprocess.Process, contains: str = ""
) -> float:
    while True:
        sent = await fake.ctl("sent", chat_id=chat_id)
        if sent:
            elapsed = time.perf_counter() - t0
            if contains not in str(sent[0]):
                raise RuntimeError(f"the first answer does not contain {contains!r}")
            return elapsed
        if proc.returncode is not None:
            raise RuntimeError(f"the bot exited ({proc.returncode}) before answering")
        if time.perf_counter() - t0 > TIMEOUT:
            raise TimeoutError("no answer")
        await asyncio.sleep(0.005)


async def one_run(
    fake: FakeProcess, workdir: Path, db_url: str, code: Path, crisis_user: dict[str, int], plain_user: dict[str, int]
) -> tuple[float, float]:
    await fake.ctl("send_text", user_id=crisis_user["id"], text=CRISIS)
    await fake.ctl("send_text", user_id=plain_user["id"], text=ORDINARY)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {
        **base,
        "PYTHONPATH": str(code),
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_BASE_URL": fake.base_url,
        "DATABASE_URL": db_url,
        "COUNSELOR_CHAT_ID": str(fake.group_id),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", cwd=workdir, env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None if os.environ.get("BENCH_LOG_LEVEL") else asyncio.subprocess.DEVNULL,
    )
    try:
        crisis, ordinary = await asyncio.gather(
            _first_reply(fake, crisis_user["id"], t0, proc, "988"), _first_reply(fake, plain_user["id"], t0, proc)
        )
        # A first start writes the detector and the content check's record once the detector is
        # built: a bot that keeps running gets there; the benchmark waits for it before stopping.
        written = [workdir / "data" / PREPARED_FILE, workdir / "data" / CHECKED_FILE]
        while not all(f.exists() for f in written):
            if proc.returncode is not None or time.perf_counter() - t0 > TIMEOUT:
                raise RuntimeError("the first start did not write the detector and the content check's record")
            await asyncio.sleep(0.05)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()
    return crisis, ordinary


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count())


async def main(runs: int, code: Path, latency_ms: float) -> None:
    print(f"load average (1, 5, 15 min) before: {_load()}", flush=True)
    if latency_ms:
        print(f"each Bot API call answered {latency_ms:g} ms later", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        async with FakeProcess("--latency-ms", str(latency_ms)) as fake:
            group = await fake.ctl("add_group", title="Counselors", supergroup=True)
            fake.group_id = group["id"]  # type: ignore[attr-defined]
            users = [
                (await fake.ctl("add_user", first_name=f"Crisis{n}", started=True),
                 await fake.ctl("add_user", first_name=f"Plain{n}", started=True))
                for n in range(runs)
            ]
            setup = await asyncio.create_subprocess_exec(
                sys.executable, "-c", SETUP, db_url, *(str(u["id"]) for pair in users for u in pair),
                cwd=workdir, env={**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT}"},
            )
            if await setup.wait() != 0:
                raise RuntimeError("could not prepare the database")
            results: list[tuple[float, float]] = []
            for n, (crisis_user, plain_user) in enumerate(users):
                crisis, ordinary = await one_run(fake, workdir, db_url, code, crisis_user, plain_user)
                kind = "first start" if n == 0 else "restart"
                print(f"run {n + 1} ({kind}): crisis reply {crisis:.2f}s, ordinary answer {ordinary:.2f}s", flush=True)
                results.append((crisis, ordinary))
    restarts = results[1:] or results
    for label, i in (("crisis reply", 0), ("ordinary answer", 1)):
        xs = [r[i] for r in restarts]
        print(f"restart, {label}: median {statistics.median(xs):.2f}s, max {max(xs):.2f}s (n={len(xs)})")
    print(f"first start: crisis reply {results[0][0]:.2f}s, ordinary answer {results[0][1]:.2f}s")
    print(f"load average (1, 5, 15 min) after: {_load()}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="starts (the first with an empty data folder)")
    p.add_argument("--code", type=Path, default=ROOT, help="checkout to run the bot from (default: this one)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="each Bot API call answered this much later")
    a = p.parse_args()
    asyncio.run(main(max(a.runs, 1), a.code.resolve(), a.latency_ms))
