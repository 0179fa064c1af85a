"""The `iop-bot` command: run, migrate, content check, risk check, version.

Exit status: 0 after a clean stop (SIGTERM, SIGINT), 1 when the bot stopped on an error, 2 for a
configuration problem, 3 when Telegram rejected the bot token. Each failure ends with one
sentence on stderr, never the token.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot import __version__
from bot.platform.config import ConfigError, TokenRejected, load_settings
from bot.platform.logs import redact

if TYPE_CHECKING:
    from bot.safety.risk import prepared as risk_prepared

# Exit status when Telegram refuses the token: restarting will not help, a person must act
# (a supervisor can be told not to restart on it, e.g. systemd's RestartPreventExitStatus=3).
EXIT_TOKEN_REJECTED = 3
# The bot's own files (the SQLite database by default, the record of the content check).
DATA_DIR = Path("data")
# The content check of the risk rules (bot/areas.py), done at a first start by building the detector.
RISK_RULES_CHECK = "bot.safety.risk"


def _run(_: argparse.Namespace) -> int:
    # Start-up creates many objects and frees few: the garbage collector's passes meanwhile are a
    # good part of the time to the first answer. Paused until the bot receives (bot/app.py Runner,
    # which then sets what start-up built aside and resumes it).
    gc.disable()
    try:
        return _start_and_run()
    finally:
        gc.enable()


def _start_and_run() -> int:
    settings = load_settings()
    from bot.platform.logs import setup_logging

    token = settings.require_token()
    settings.require_webhook_secret()
    setup_logging(settings.log_level, token)
    prepared = _prepare_risk_detector(DATA_DIR, settings.content_dir)
    from bot.app import Runner, build_application, run_event_loop
    from bot.areas import content_checks
    from bot.platform import content, migrate

    # The full check once per version of content and code (recorded under data/). Its longest
    # part, the risk rules, is checked by building the risk detector, which start-up does anyway
    # while the bot already receives (bot/safety/screening.py: a crisis is answered by the crisis
    # rules meanwhile, and a problem in the rules stops the bot with its file and line); the
    # check is recorded once that build has passed too.
    checked: Callable[[], None] | None = None
    key = content.pending_check(settings.content_dir, DATA_DIR)
    if key is not None:
        checks = {name: c for name, c in content_checks().items() if name != RISK_RULES_CHECK}
        problems = content.check(settings.content_dir, checks)
        if problems:
            print(f"content/ has {len(problems)} problem(s); run `iop-bot content check` to see them.", file=sys.stderr)
            return 1
        checked = functools.partial(content.record_check, settings.content_dir, DATA_DIR, key)
    migrate.upgrade(settings.database_url)
    app = build_application(settings)
    # Reading the prepared detector takes a fraction of a second: once it is there, every text is
    # screened by the full detector from the first update on.
    prepared.tried.wait()
    run_event_loop(Runner(app, prepared=prepared, content_checked=checked).run())
    return 0


def _prepare_risk_detector(data_dir: Path, content_dir: Path) -> risk_prepared.Prepared:
    """First thing, in a worker thread: the full risk detector from the file prepared by an
    earlier start (bot/safety/risk/prepared.py) when it is valid for this content and code; otherwise
    the crisis rules are built, and the bot answers a crisis with them while the full detector
    builds (bot/safety/screening.py), which is then written for the next start. A problem in the
    rules is reported by the content check that follows."""
    import threading

    from bot.safety.risk import prepared as risk_prepared
    from bot.safety.risk import registry

    prepared = risk_prepared.Prepared(data_dir, content_dir)

    def work() -> None:
        if not prepared.load():
            with contextlib.suppress(Exception):
                registry.crisis_detector(content_dir)

    threading.Thread(target=work, name="risk-detector", daemon=True).start()
    return prepared


def _migrate(_: argparse.Namespace) -> int:
    from bot.platform import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url)
    print("database is up to date")
    return 0


def _content_problems(root: Path) -> list[object]:
    from bot.areas import content_checks
    from bot.platform import content

    return list(content.check(root, content_checks()))


def _content_check(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else load_settings().content_dir
    problems = _content_problems(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print("content is valid")
    return 0


def _risk_check(args: argparse.Namespace) -> int:
    from bot.safety.risk.cli import main_check

    argv: list[str] = []
    if args.jsonl:
        argv += ["--jsonl", args.jsonl]
    argv += args.text
    return int(main_check(argv))


def _version(_: argparse.Namespace) -> int:
    print(f"iop-bot {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iop-bot", description="A Telegram companion for Intensive Outpatient Programs.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot (applies pending migrations first)").set_defaults(fn=_run)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=_migrate)
    c = sub.add_parser("content", help="content/ tools")
    csub = c.add_subparsers(dest="content_command", required=True)
    cc = csub.add_parser("check", help="validate every file in content/")
    cc.add_argument("--dir", help="content directory (default: CONTENT_DIR)")
    cc.set_defaults(fn=_content_check)
    r = sub.add_parser("risk", help="risk detector tools")
    rsub = r.add_subparsers(dest="risk_command", required=True)
    rc = rsub.add_parser("check", help='check wording: risk check "text" or --jsonl FILE')
    rc.add_argument("text", nargs="*", help="text to check")
    rc.add_argument("--jsonl", help="file of JSON lines with a 'text' key ('-' for stdin)")
    rc.set_defaults(fn=_risk_check)
    sub.add_parser("version", help="print the version").set_defaults(fn=_version)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except TokenRejected as exc:
        print(f"iop-bot stopped: {exc}", file=sys.stderr)
        return EXIT_TOKEN_REJECTED
    except ConfigError as exc:
        print(f"Configuration problem: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one sentence, not a traceback, for the person starting the bot
        logging.getLogger(__name__).debug("fatal", exc_info=True)
        print(redact(f"iop-bot stopped: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
