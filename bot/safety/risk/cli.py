"""`iop-bot risk check`: the detector run on a text, or on a file of JSON lines, printing what it
finds as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bot.safety.risk.detector import RiskDetector
from bot.safety.risk.loader import RiskContentError
from bot.safety.risk.registry import get_detector


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iop-bot risk check", description="Run the risk detector on text.")
    p.add_argument("text", nargs="*", help="the text to check (words are joined with spaces)")
    p.add_argument("--jsonl", help="file of JSON lines with a 'text' key; '-' reads stdin")
    p.add_argument("--lang", help="language hint, e.g. en or es (default: all languages)")
    p.add_argument("--content-dir", help="content directory (default: the repository's content/)")
    return p


def _iter_jsonl(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            yield n, line


def main_check(argv: list[str], stdout: IO[str] | None = None, stdin: IO[str] | None = None) -> int:
    """`iop-bot risk check "text"` prints one JSON line; `--jsonl FILE` (or '-') prints one
    result per input line, in order, echoing the input's other keys (id, label, ...). A bad
    input line gives an {"error": ...} line. Returns 0, or 2 for a usage or file problem."""
    out = stdout or sys.stdout
    args_in = list(argv)
    if args_in and args_in[0] == "check" and (len(args_in) > 1):
        args_in = args_in[1:]
    parser = _check_parser()
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    try:
        detector = get_detector(Path(args.content_dir) if args.content_dir else None)
    except RiskContentError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.jsonl:
        if args.text:
            print("give either text or --jsonl, not both", file=sys.stderr)
            return 2
        if args.jsonl == "-":
            _run_jsonl(detector, stdin or sys.stdin, out, args.lang)
            return 0
        try:
            with open(args.jsonl, encoding="utf-8") as fh:
                _run_jsonl(detector, fh, out, args.lang)
        except OSError as exc:
            print(f"cannot read {args.jsonl}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:
            print(f"cannot read {args.jsonl}: not UTF-8 text", file=sys.stderr)
            return 2
        return 0
    if not args.text:
        parser.print_usage(sys.stderr)
        print('give the text to check, or --jsonl FILE', file=sys.stderr)
        return 2
    result = detector.detect(" ".join(args.text), args.lang)
    out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    out.flush()
    return 0


def _run_jsonl(detector: RiskDetector, stream: IO[str], out: IO[str], lang: str | None) -> None:
    for n, line in _iter_jsonl(stream):
        record: dict[str, Any]
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, ValueError) as exc:
            record = {"line": n, "error": f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}"}
        else:
            if not isinstance(obj, dict):
                record = {"line": n, "error": "each line must be a JSON object with a 'text' key"}
            elif not isinstance(obj.get("text"), str):
                record = {k: v for k, v in obj.items() if k != "text"}
                record.update({"line": n, "error": "missing 'text' string"})
            else:
                record = {k: v for k, v in obj.items() if k != "text"}
                try:
                    record.update(detector.detect(obj["text"], lang).to_dict())
                except Exception as exc:  # one bad line must not stop a batch
                    record = {"line": n, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
