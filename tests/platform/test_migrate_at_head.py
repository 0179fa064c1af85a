"""`iop-bot run` migrates first: a database already at the newest revision is told by reading
it, without loading Alembic (a good part of a second at every start); anything else is Alembic's."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from bot.platform import migrate
from bot.platform.config import REPO_ROOT


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


def test_the_head_read_from_the_files_is_alembics() -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config("sqlite+aiosqlite:///x.db")).get_heads()
    assert [migrate._head()] == heads


def test_a_database_at_the_head_is_not_given_to_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _url(tmp_path)
    migrate.upgrade(url)
    calls: list[str] = []
    monkeypatch.setattr(command, "upgrade", lambda cfg, rev: calls.append(rev))
    migrate.upgrade(url)
    assert calls == []


@pytest.mark.parametrize("state", ["missing", "empty", "behind", "no version table"])
def test_anything_else_is_given_to_alembic(state: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _url(tmp_path)
    db = tmp_path / "bot.db"
    if state != "missing":
        migrate.upgrade(url)
        with sqlite3.connect(db) as c:
            if state == "empty":
                c.execute("DELETE FROM alembic_version")
            elif state == "behind":
                c.execute("UPDATE alembic_version SET version_num = '0001_initial_schema'")
            else:
                c.execute("DROP TABLE alembic_version")
    calls: list[str] = []
    monkeypatch.setattr(command, "upgrade", lambda cfg, rev: calls.append(rev))
    migrate.upgrade(url)
    assert calls == ["head"]


def test_a_start_at_the_head_does_not_load_alembic(tmp_path: Path) -> None:
    url = _url(tmp_path)
    migrate.upgrade(url)
    code = f"import sys; from bot.platform import migrate; migrate.upgrade({url!r}); print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
