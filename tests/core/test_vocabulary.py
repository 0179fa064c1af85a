"""The kernel's one vocabulary (bot/core/vocabulary.py): every severity, category and flag status,
as the detector, the clinical rules, the content checks and the flags use them."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from bot.core.vocabulary import (
    FLAG_SEVERITIES,
    Category,
    FlagSeverity,
    FlagStatus,
    Severity,
    flag_severity,
)
from bot.escalation import rules as escalation_rules
from bot.escalation.models import Flag
from bot.platform.clock import FrozenClock
from bot.platform.db import Database
from bot.safety.risk.loader import build
from bot.safety.risk.result import DETECTED_CATEGORIES, DETECTED_SEVERITIES, priority
from tests import escalation_support as sup
from tests.conftest import CONTENT_DIR

ORDER = ["none", "low", "moderate", "high", "crisis"]


# -- Severity: one scale, one rank ----------------------------------------------------------------


def test_the_severities_in_their_order():
    assert [s.value for s in Severity] == ORDER
    assert [s.rank() for s in Severity] == list(range(len(ORDER)))


@pytest.mark.parametrize(("a", "b"), list(itertools.product(Severity, repeat=2)))
def test_every_pair_of_severities_compares_by_rank(a: Severity, b: Severity):
    i, j = ORDER.index(a), ORDER.index(b)
    assert (a < b, a <= b, a > b, a >= b, a == b) == (i < j, i <= j, i > j, i >= j, i == j)
    # As stored (a plain string) on either side.
    assert (a < b.value, a.value < b, a >= b.value, a.value >= b) == (i < j, i < j, i >= j, i >= j)


@pytest.mark.parametrize("severity", list(Severity))
def test_a_severity_is_its_stored_string(severity: Severity):
    assert severity == severity.value and str(severity) == severity.value and f"{severity}" == severity.value
    assert Severity(severity.value) is severity and Severity.known(severity.value)
    assert {severity.value: 1}[severity] == 1  # the same key as the string
    assert severity.lower() == Severity(ORDER[max(ORDER.index(severity) - 1, 0)])


def test_sorting_and_extremes_follow_the_rank():
    assert sorted(reversed(list(Severity))) == list(Severity)
    assert max(["moderate", Severity.CRISIS, "low"], key=Severity) == Severity.CRISIS
    assert not Severity.known("severe") and not Severity.known(None)
    with pytest.raises(ValueError):
        _ = Severity.HIGH < "severe"
    with pytest.raises(TypeError):
        _ = Severity.HIGH < 3


def test_a_flag_is_low_to_crisis():
    assert FLAG_SEVERITIES == tuple(s for s in Severity if s is not Severity.NONE)


class _Rule(BaseModel):
    severity: FlagSeverity


@pytest.mark.parametrize("value", [*ORDER, "severe", "", 3, None])
def test_a_flag_severity_in_content_is_one_of_the_flag_severities(value: object):
    if value in FLAG_SEVERITIES:
        assert flag_severity(value) is Severity(value)
        assert _Rule.model_validate({"severity": value}).severity is Severity(value)
    else:
        with pytest.raises(ValueError, match="low, moderate, high, crisis"):
            flag_severity(value)
        with pytest.raises(ValidationError):
            _Rule.model_validate({"severity": value})


# -- Category: every flag category, and the detector's subset ------------------------------------


@pytest.mark.parametrize("category", list(Category))
def test_every_category_is_its_stored_string_and_has_its_place(category: Category):
    assert category == category.value and Category.known(category.value)
    assert list(Category)[category.order()] is category


def test_unknown_categories_are_not_known():
    assert not Category.known("sadness") and not Category.known(None) and not Category.known("")


def test_the_detector_answers_a_subset_in_its_tie_break_order():
    assert set(DETECTED_CATEGORIES) <= set(Category)
    assert [priority(c) for c in DETECTED_CATEGORIES] == list(range(len(DETECTED_CATEGORIES)))
    # Its order is the kernel's (most serious first): one order, not two.
    assert sorted(DETECTED_CATEGORIES, key=Category.order) == list(DETECTED_CATEGORIES)
    assert set(DETECTED_SEVERITIES) <= set(Severity) and Severity.LOW not in DETECTED_SEVERITIES
    assert sorted(DETECTED_SEVERITIES) == list(DETECTED_SEVERITIES)


# -- FlagStatus ----------------------------------------------------------------------------------


def test_the_flag_statuses():
    assert [s.value for s in FlagStatus] == ["open", "claimed", "resolved"]
    assert all(FlagStatus.known(s.value) for s in FlagStatus) and not FlagStatus.known("closed")


# -- one definition: the old scales are gone -------------------------------------------------------


@pytest.mark.parametrize("name", ["SEVERITIES", "CATEGORIES", "STATUSES", "rank"])
def test_escalation_keeps_no_second_scale(name: str):
    assert not hasattr(escalation_rules, name)


# -- content checks read the enums ---------------------------------------------------------------

# Where content names a flag's severity, one per rules file (file, path to the value).
SEVERITY_SETTINGS = [
    ("rules/escalation.yaml", ("talk", "severity")),
    ("rules/safety.yaml", ("denied", "severity")),
    ("rules/checkin.yaml", ("silent", 0, "severity")),
    ("rules/sos.yaml", ("talk_request", "severity")),
]


def _content_copy(tmp_path: Path, changes: list[tuple[str, tuple[str | int, ...], object]]) -> Path:
    root = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, root)
    for rel, path, value in changes:
        f = root / rel
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        f.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def _problems(root: Path) -> list[tuple[str, int, str]]:
    """Every area's content check but the risk detector's (its own test covers its words)."""
    from bot.areas import content_checks

    return [p for name, check in content_checks().items() if not name.startswith("bot.safety.risk") for p in check(root)]


@pytest.mark.parametrize("value", [*ORDER, "severe"])
def test_every_severity_in_content_is_a_flag_severity(tmp_path: Path, value: str):
    problems = _problems(_content_copy(tmp_path, [(rel, path, value) for rel, path in SEVERITY_SETTINGS]))
    for rel, _ in SEVERITY_SETTINGS:
        found = [p for p in problems if p[0] == rel and "severity" in p[2]]
        assert bool(found) is (value not in FLAG_SEVERITIES), (rel, problems)


@pytest.mark.parametrize("value", ["suicide_self_harm", "missed_sessions", "sadness"])
def test_every_category_in_content_is_a_flag_category(tmp_path: Path, value: str):
    root = _content_copy(
        tmp_path,
        [
            ("rules/escalation.yaml", ("card", "alert_moderate_categories"), [value]),
            ("rules/checkin.yaml", ("silent", 0, "category"), value),
        ],
    )
    problems = _problems(root)
    for rel in ("rules/escalation.yaml", "rules/checkin.yaml"):
        found = [p for p in problems if p[0] == rel and repr(value) in p[2]]
        assert bool(found) is (not Category.known(value)), (rel, problems)


def _risk_content(root: Path, category: str, severity: str) -> Path:
    risk = root / "risk"
    risk.mkdir(parents=True)
    (risk / "common.yaml").write_text("normalize:\n  leet: {'4': a}\n", encoding="utf-8")
    (risk / "en.yaml").write_text(
        f"rules:\n  - id: r\n    category: {category}\n    severity: {severity}\n    tags: [t]\n    patterns: ['want to die']\n",
        encoding="utf-8",
    )
    return root


@pytest.mark.parametrize("severity", list(Severity))
def test_a_risk_rule_takes_the_detectors_severities(tmp_path: Path, severity: Severity):
    _, problems = build(_risk_content(tmp_path, "suicide_self_harm", severity))
    assert bool([p for p in problems if "severity" in p[2]]) is (severity not in DETECTED_SEVERITIES), problems


@pytest.mark.parametrize("category", list(Category))
def test_a_risk_rule_takes_the_detectors_categories(tmp_path: Path, category: Category):
    _, problems = build(_risk_content(tmp_path, category, "high"))
    assert bool([p for p in problems if "category" in p[2]]) is (category not in DETECTED_CATEGORIES), problems


# -- the database keeps the same strings -----------------------------------------------------------


@pytest.mark.parametrize("severity", FLAG_SEVERITIES)
async def test_a_flag_stores_its_words_as_plain_strings(db: Database, clock: FrozenClock, severity: Severity):
    pid = await sup.add_patient(db, clock.now())
    async with db.transaction() as s:
        for category in Category:
            s.add(Flag(patient_id=pid, category=category, severity=severity, status=FlagStatus.OPEN, source="checkin", opened_at=clock.now()))
    async with db.session() as s:
        rows = (await s.execute(select(Flag.category, Flag.severity, Flag.status).order_by(Flag.id))).all()
        found = (await s.execute(select(Flag.id).where(Flag.severity == severity, Flag.status == FlagStatus.OPEN))).all()
    assert [tuple(map(type, r)) for r in rows] == [(str, str, str)] * len(Category)
    assert [tuple(r) for r in rows] == [(c.value, severity.value, "open") for c in Category]
    assert len(found) == len(Category)
