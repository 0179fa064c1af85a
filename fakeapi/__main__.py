"""Run the fake Telegram Bot API server on its own: ``python -m fakeapi --port 8081``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .server import FakeTelegram


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost", "::1"])
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--token", default="123456:TEST-TOKEN")
    parser.add_argument("--bot-username", default="iop_test_bot")
    parser.add_argument("--bot-name", default="IOP Test Bot")
    parser.add_argument("--flood-limit", type=float, default=None, help="messages per second")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="answer each Bot API call this much later, as a round trip to Telegram's servers takes",
    )
    parser.add_argument(
        "--no-privacy-mode",
        action="store_true",
        help="the bot reads every group message, not only commands and replies",
    )
    return parser


async def _run(args: argparse.Namespace) -> None:
    fake = FakeTelegram(
        token=args.token,
        bot_username=args.bot_username,
        bot_first_name=args.bot_name,
        host=args.host,
        port=args.port,
        privacy_mode=not args.no_privacy_mode,
    )
    fake.flood_limit = args.flood_limit
    fake.latency = max(args.latency_ms, 0.0) / 1000
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"base_url={fake.base_url}", flush=True)
    print(f"base_file_url={fake.base_file_url}", flush=True)
    print(f"control_url={fake.control_url}", flush=True)
    print(f"token={fake.token}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
