"""The content check at start-up runs once per version of content and code (bot/platform/content.py
`pending_check`, `record_check`); `iop-bot content check` always runs every check."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from bot import cli
from bot.areas import content_checks
from bot.platform import content
from bot.platform.content import Problem

CHECKS = content_checks()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of content/ that the test may change."""
    root = tmp_path / "content"
    shutil.copytree(content.DEFAULT_CONTENT_DIR, root)
    return root


def _start(tree: Path, data: Path) -> list[Problem]:
    """What a start does with the record (bot/cli.py): check when pending, record once passed."""
    key = content.pending_check(tree, data)
    if key is None:
        return []
    problems = content.check(tree, CHECKS)
    if not problems:
        content.record_check(tree, data, key)
    return problems


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each full check run (stubbed: the real one takes seconds), by content folder."""
    seen: list[Path] = []

    def fake_check(root: Path | None, checkers: object) -> list[Problem]:
        assert checkers == CHECKS
        seen.append(Path(root or content.DEFAULT_CONTENT_DIR))
        return [Problem("risk/en.yaml", 3, "bad")] if (Path(root or ".") / "BROKEN").exists() else []

    monkeypatch.setattr(content, "check", fake_check)
    return seen


def test_a_start_checks_once_then_trusts_the_record(tree: Path, code: Path, calls: list[Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _start(tree, data) == []
    assert _start(tree, data) == []
    assert len(calls) == 1
    record = data / content.CHECKED_FILE
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


@pytest.mark.parametrize("change", ["edit", "add", "remove", "code"])
def test_any_change_to_content_or_code_checks_again(
    change: str, tree: Path, code: Path, calls: list[Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _start(tree, data)
    some_yaml = sorted(tree.rglob("*.yaml"))[0]
    if change == "edit":
        some_yaml.write_text(some_yaml.read_text() + "\n# changed\n")
    elif change == "add":
        (tree / "risk" / "labelled" / "more.jsonl").write_text('{"text": "hi", "label": "none"}\n')
    elif change == "remove":
        some_yaml.unlink()
    else:
        (code / "rules.py").write_text("RULES = 2\n")
    _start(tree, data)
    assert len(calls) == 2


def test_content_with_problems_is_never_recorded(tree: Path, code: Path, calls: list[Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tree / "BROKEN").write_text("x")
    for _ in range(2):
        assert [str(p) for p in _start(tree, data)] == ["risk/en.yaml:3: bad"]
    assert len(calls) == 2
    assert not (data / content.CHECKED_FILE).exists()


@pytest.mark.parametrize("record", ["", "not json", "[]", '{"fingerprint": "0"}'])
def test_an_unreadable_or_stale_record_checks_again(
    record: str, tree: Path, code: Path, calls: list[Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / content.CHECKED_FILE).write_text(record)
    assert _start(tree, data) == []
    assert len(calls) == 1
    assert _start(tree, data) == []
    assert len(calls) == 1  # recorded now


def test_a_data_folder_that_cannot_be_written_still_starts(
    tree: Path, code: Path, calls: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.write_text("a file, not a folder")
    assert _start(tree, data) == []
    assert "could not record the check" in caplog.text


def test_the_content_check_command_always_runs_every_check(
    tree: Path, code: Path, calls: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _start(tree, tmp_path / "data")
    for _ in range(2):
        assert cli.main(["content", "check", "--dir", str(tree)]) == 0
    assert len(calls) == 3
    assert "content is valid" in capsys.readouterr().out
