"""Risk detector (DESIGN §2.6): table-driven cases, normalisation, context rules, content
validation, the `iop-bot risk check` command, and property tests."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.vocabulary import Category, Severity
from bot.safety.risk.cli import main_check
from bot.safety.risk.detector import RiskDetector
from bot.safety.risk.loader import RiskContentError, load_detector
from bot.safety.risk.registry import check_content, get_detector
from bot.safety.risk.result import (
    DETECTED_CATEGORIES,
    DETECTED_SEVERITIES,
    Match,
    RiskResult,
    priority,
)

DATA = Path(__file__).resolve().parents[2] / "content" / "risk" / "labelled"
CONTENT = Path(__file__).resolve().parents[2] / "content"

# What a labelled message may come out as. Crisis and high are both "flagged": a crisis
# message must never come out lower than high; ordinary talk may at most be moderate.
ACCEPT = {
    "crisis": {"crisis", "high"},
    "high": {"high", "crisis"},
    "moderate": {"moderate", "high"},
    "none": {"none", "moderate"},
}


def _load(name: str) -> list[dict[str, str]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


CASES = _load("cases.jsonl")
# Sets written independently of the rules (each first measured unseen, then added).
SETS = [row for path in sorted(DATA.glob("set*.jsonl")) for row in _load(path.name)]


@pytest.fixture(scope="module")
def det() -> RiskDetector:
    return get_detector()


# ------------------------------------------------------------------ the labelled table


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_labelled_case(det: RiskDetector, case: dict[str, str]) -> None:
    # The table is the rules' specification, case by case. The learned model on top is
    # statistical: it is held to rates (test_acceptance_targets_on_the_table).
    result, _ = det._detect_by_rules(case["text"], None)
    assert result.severity.value in ACCEPT[case["label"]], (case["text"], result.to_dict())
    if case.get("category") and result.severity != Severity.NONE:
        assert result.category is not None and result.category.value == case["category"], (
            case["text"],
            result.to_dict(),
        )


def test_labelled_table_is_broad() -> None:
    labels = Counter(c["label"] for c in CASES)
    langs = Counter(c["lang"] for c in CASES)
    cats = Counter(c.get("category") for c in CASES if c.get("category"))
    assert len(CASES) >= 150
    assert all(labels[k] >= 20 for k in ACCEPT)
    assert langs["es"] >= 40
    assert set(cats) == {c.value for c in DETECTED_CATEGORIES}


def _confusion(det: RiskDetector, rows: list[dict[str, str]]) -> Counter[tuple[str, str]]:
    return Counter((r["label"], det.detect(r["text"]).severity.value) for r in rows)


def test_acceptance_targets_on_the_table(det: RiskDetector) -> None:
    conf = _confusion(det, CASES)
    crisis_total = sum(v for (lab, _), v in conf.items() if lab == "crisis")
    crisis_flagged = conf[("crisis", "crisis")] + conf[("crisis", "high")]
    assert crisis_flagged == crisis_total
    risky = [lab for lab in ("crisis", "high")]
    total = sum(v for (lab, _), v in conf.items() if lab in risky)
    flagged = sum(v for (lab, got), v in conf.items() if lab in risky and got in ("crisis", "high"))
    assert flagged / total >= 0.95
    none_total = sum(v for (lab, _), v in conf.items() if lab == "none")
    false_alerts = conf[("none", "crisis")] + conf[("none", "high")]
    # The whole detector, rules and learned model: the model may not turn more than a few of
    # the table's traps into alerts.
    assert false_alerts / none_total <= 0.02


def test_written_sets_are_well_formed_and_run(det: RiskDetector) -> None:
    assert len(SETS) >= 1000
    for row in SETS:
        assert row["label"] in ACCEPT
        det.detect(row["text"])


# ------------------------------------------------------------------ result shape


def test_result_shape_and_json(det: RiskDetector) -> None:
    r = det.detect("I'm going to kill myself tonight")
    assert r.severity == Severity.CRISIS
    assert r.category == Category.SUICIDE_SELF_HARM
    assert r.uncertain is False
    assert r.flagged
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["severity"] == "crisis" and d["category"] == "suicide_self_harm"
    assert {"category", "severity", "rule", "evidence"} <= set(d["matches"][0])
    assert isinstance(r.matches[0], Match)


def test_no_risk_result(det: RiskDetector) -> None:
    for text in ("", "   ", "Had a good day at group.", "🙂"):
        r = det.detect(text)
        assert r == RiskResult(Severity.NONE, None, (), False)
        assert r.to_dict() == {"severity": "none", "category": None, "uncertain": False, "matches": []}


def test_severity_is_ordered() -> None:
    assert Severity.NONE < Severity.MODERATE < Severity.HIGH < Severity.CRISIS
    assert max([Severity.HIGH, Severity.CRISIS, Severity.MODERATE]) == Severity.CRISIS
    assert [s.rank() for s in Severity] == [0, 1, 2, 3, 4]
    assert sorted(DETECTED_SEVERITIES) == list(DETECTED_SEVERITIES) and Severity.LOW not in DETECTED_SEVERITIES
    assert Severity.HIGH >= Severity.HIGH and not Severity.HIGH > Severity.HIGH
    assert priority(Category.SUICIDE_SELF_HARM) < priority(Category.SEVERE_CRAVING)


def test_category_tie_break_prefers_suicide(det: RiskDetector) -> None:
    r = det.detect("I took too many pills, I want to die")
    assert r.severity == Severity.CRISIS
    assert r.category == Category.SUICIDE_SELF_HARM
    assert {m.category for m in r.matches} >= {Category.SUICIDE_SELF_HARM, Category.OVERDOSE_MEDICAL}


@pytest.mark.parametrize(
    ("text", "uncertain"),
    [
        ("I want to die", False),
        ("I have the pills lined up", False),
        ("I wish I could sleep and not wake up", True),
        ("what's the point anymore", True),
        ("I can't do this anymore", True),
        ("⚰️", True),
        ("me quiero morir", False),
        ("ya no puedo más", True),
    ],
)
def test_uncertain_marks_passive_wording(det: RiskDetector, text: str, uncertain: bool) -> None:
    r = det.detect(text)
    assert r.severity >= Severity.MODERATE
    assert r.uncertain is uncertain


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Killlll MYSELFFF", "kil myself"),
        ("k i l l  m y s e l f", "kil myself"),
        ("k.i.l.l myself", "kil myself"),
        ("I don’t want to", "i dont want to"),
        ("Tomé demasiadas PASTILLAS", "tome demasiadas pastilas"),
        ("mañana", "manana"),
        ("5uicide k1ll d13", "suicide kil die"),
        ("i'm 3 days sober, 2nd try", "im 3 days sober, 2nd try"),
        ("💊⚰️", ":pil: :cofin:"),
        ("  lots   of\tspace \n here ", "lots of space\nhere"),
        ("𝗜 𝘄𝗮𝗻𝘁", "i want"),
        ("I'm literally about to use", "im about to use"),
        ("I honestly just really want to die", "i want to die"),
        ("voy @ matarme", "voy a matarme"),
    ],
)
def test_normalisation(det: RiskDetector, text: str, expected: str) -> None:
    assert det.normalize(text) == expected


def test_evidence_is_the_original_span(det: RiskDetector) -> None:
    r = det.detect("Honestly I want to KILLLL MYSELF tonight")
    assert any("KILLLL MYSELF" in m.evidence for m in r.matches)
    r = det.detect("me quiero morir 😭")
    assert any(m.evidence.startswith("me quiero morir") for m in r.matches)
    long = "I want to die " + "and " * 60
    assert all(len(m.evidence) <= 80 for m in det.detect(long).matches)


# ------------------------------------------------------------------ context rules


@pytest.mark.parametrize(
    ("text", "at_most"),
    [
        ("I'm not suicidal", Severity.NONE),
        ("I don't want to die", Severity.NONE),
        ("I would never hurt myself", Severity.NONE),
        ("I'm not going to drink tonight", Severity.NONE),
        ("no me quiero morir", Severity.NONE),
        ("two years ago I overdosed", Severity.NONE),
        ("back in 2019 I relapsed", Severity.NONE),
        ("I used to cut", Severity.NONE),
        ("we talked about suicide prevention in group", Severity.NONE),
        ("my sponsor shared about her overdose years ago", Severity.NONE),
        ("I could kill for a coffee", Severity.NONE),
        ("I'm dying to see my kids", Severity.NONE),
        ("My mom is going to kill me when she finds out", Severity.NONE),
    ],
)
def test_traps_do_not_alarm(det: RiskDetector, text: str, at_most: Severity) -> None:
    assert det.detect(text).severity <= at_most


@pytest.mark.parametrize(
    "text",
    [
        "I'm not suicidal, but I have the pills ready and I'm going to take them tonight",
        "I don't want to die. Actually I do, I want to die.",
        "No, I want to die",
        "I'm not ok I want to die",
        "Two years ago I overdosed and I overdosed again last night",
        "I used to cut but I cut myself again yesterday",
        "hace dos años recaí, pero hoy me quiero morir",
    ],
)
def test_negation_and_past_scope_is_local(det: RiskDetector, text: str) -> None:
    assert det.detect(text).severity >= Severity.HIGH


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm going to kill myself once everyone is asleep", Severity.CRISIS),
        ("once I get home I am going to take all my pills", Severity.CRISIS),
        ("I will overdose twice as hard this time", Severity.CRISIS),
        ("I want to die like I did back in 2019", Severity.CRISIS),
        ("When I was drinking I wanted to die, I am going to kill myself tonight", Severity.CRISIS),
        ("I used to want to die", Severity.NONE),
        ("when I was using I tried to kill myself", Severity.NONE),
        ("me tomé todas mis pastillas de una vez", Severity.CRISIS),
        ("cuando consumía me quería morir", Severity.NONE),
    ],
)
def test_intentions_are_never_history(det: RiskDetector, text: str, expected: Severity) -> None:
    assert det.detect(text).severity == expected


def test_present_marker_outweighs_nearby_past_only_in_its_clause(det: RiskDetector) -> None:
    assert det.detect("Five years ago I overdosed, today I'm grateful").severity == Severity.NONE
    assert det.detect("I overdosed last night").severity == Severity.CRISIS


def test_joke_cue_softens_but_keeps_explicit_flagged(det: RiskDetector) -> None:
    r = det.detect("I want to die lol")
    assert r.severity == Severity.HIGH and r.uncertain
    assert det.detect("my sponsor is gonna kill me lol").severity == Severity.NONE


def test_resolution_lowers_craving_only(det: RiskDetector) -> None:
    assert det.detect("my dealer texted me").severity == Severity.HIGH
    assert det.detect("my dealer texted me but I blocked his number").severity == Severity.MODERATE
    assert det.detect("I want to die but I called my sponsor").severity == Severity.CRISIS


def test_emoji(det: RiskDetector) -> None:
    assert det.detect("💊").severity == Severity.NONE
    alone = det.detect("⚰️")
    assert alone.severity == Severity.MODERATE and alone.uncertain
    pair = det.detect("💊⚰️")
    assert pair.severity == Severity.HIGH and pair.uncertain
    assert det.detect("💊💊💊 goodbye everyone").severity == Severity.CRISIS
    assert det.detect("goodbye 🔫").severity == Severity.CRISIS


def test_use_plus_medical_sign_is_overdose_crisis(det: RiskDetector) -> None:
    assert det.detect("I relapsed last night").severity == Severity.HIGH
    r = det.detect("I relapsed last night and my heart is racing and I can't stay awake")
    assert r.severity == Severity.CRISIS and r.category == Category.OVERDOSE_MEDICAL


@pytest.mark.parametrize(
    "text",
    [
        "I used last night",
        "relapsed on meth tuesday and haven't slept since",
        "picked up friday. been high all weekend",
        "hit the pipe twice tonight",
        "Went to a wedding and drank the whole night",
        "took 2 of my moms xanax this morning to get through the day",
        "me tomé unos chochos que me dio mi prima",
        "recaí anoche",
    ],
)
def test_current_use_disclosure_is_high(det: RiskDetector, text: str) -> None:
    # after a period of abstinence tolerance is low: the care team reaches out the same day
    r = det.detect(text)
    assert r.severity == Severity.HIGH and r.category == Category.USE_DISCLOSURE, r.to_dict()


@pytest.mark.parametrize(
    "text",
    [
        "I used to drink every day",
        "back in 2019 I relapsed",
        "two years ago I relapsed on meth",
        "my brother came over and got drunk",
        "my roommate smoked weed all night and I stayed in my room",
        "I dreamt I relapsed",
        "I almost relapsed last night",
        "what if I drank at the wedding",
        "If I relapsed I'd lose my kids",
        "I didn't drink at the wedding",
        "I haven't used in 90 days",
        "I took a shot at the job interview",
        "hace dos años recaí",
    ],
)
def test_past_other_people_dreams_and_near_misses_are_not_use(det: RiskDetector, text: str) -> None:
    assert det.detect(text).severity <= Severity.MODERATE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("back in january I wanted to die, I don't feel like that anymore", Severity.NONE),
        ("en enero quería morirme, hoy ya no me siento así", Severity.NONE),
        ("I was suicidal in the hospital. those thoughts are gone now", Severity.NONE),
        ("someone said she wanted to end it all her first week, she's 2 years now", Severity.NONE),
        ("someone in group talked about finding her son after he OD'd", Severity.NONE),
        ("I wanted to die last night and I still do", Severity.CRISIS),
        ("I tried to kill myself last week. I don't feel like that anymore", Severity.CRISIS),
    ],
)
def test_feelings_that_are_over_and_other_peoples_stories(det: RiskDetector, text: str, expected: Severity) -> None:
    assert det.detect(text).severity == expected


def test_goodbyes_when_finishing_the_program_are_not_farewells(det: RiskDetector) -> None:
    assert det.detect("graduated IOP today! thank you for everything, I love you all").severity == Severity.NONE
    assert det.detect("this is goodbye. i mean it. tell group i'm sorry").severity == Severity.CRISIS


def test_language_hint(det: RiskDetector) -> None:
    assert det.detect("tengo ganas de tomar").severity == Severity.MODERATE
    assert det.detect("tengo ganas de tomar", "es").severity == Severity.MODERATE
    # another language still counts when it is high or crisis (people switch languages)
    assert det.detect("me quiero morir", "en").severity == Severity.CRISIS
    assert det.detect("recaí", "en-US").severity == Severity.HIGH
    assert det.detect("tengo ganas de tomar", "en-US").severity == Severity.NONE
    assert det.detect("tengo ganas de tomar", "xx").severity == Severity.MODERATE


# ------------------------------------------------------------------ property tests

NEUTRAL = [
    "Group was good today.",
    "I made pasta for dinner.",
    "My sister called me this afternoon.",
    "The bus was late again this morning.",
    "Hoy fui al parque con mis hijos.",
    "I have a doctor's appointment on Friday.",
    "Work was busy.",
    "It rained all day.",
    "My sponsor says hi.",
    "I read a book about gardening.",
]
EXPLICIT = [
    "I'm going to kill myself tonight.",
    "I have the pills lined up.",
    "I took too many pills.",
    "My friend isn't breathing.",
    "me voy a suicidar.",
    "He's outside with a gun.",
    "I want to die.",
    "tomé demasiadas pastillas.",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_detect_never_raises(text: str) -> None:
    result = get_detector().detect(text)
    assert isinstance(result.severity, Severity)
    json.dumps(result.to_dict())


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60),
    st.sampled_from(["en", "es", None, "fr"]),
)
def test_detect_never_raises_with_lang(text: str, lang: str | None) -> None:
    get_detector().detect(text + " kill myself " + text, lang)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(NEUTRAL), max_size=6), st.sampled_from(EXPLICIT))
def test_neutral_sentences_before_never_lower_severity(prefix: list[str], statement: str) -> None:
    det = get_detector()
    alone = det.detect(statement).severity
    assert alone == Severity.CRISIS
    assert det.detect(" ".join([*prefix, statement])).severity >= alone


# ------------------------------------------------------------------ content validation


def test_repository_content_is_valid() -> None:
    assert check_content(CONTENT) == []


def _write_min_content(root: Path, rules: str) -> Path:
    risk = root / "risk"
    risk.mkdir(parents=True)
    (risk / "common.yaml").write_text("normalize:\n  leet: {'4': a}\n  emoji: {'💊': pill}\n", encoding="utf-8")
    (risk / "en.yaml").write_text(
        "context:\n  negation: [not]\n  negation_fillers: [to, want]\n  past: ['years ago']\nrules:\n" + rules,
        encoding="utf-8",
    )
    return root


def test_small_content_dir_works(tmp_path: Path) -> None:
    root = _write_min_content(
        tmp_path,
        "  - id: die\n    category: suicide_self_harm\n    severity: crisis\n    patterns: ['want to die']\n",
    )
    d = load_detector(root)
    assert d.detect("I w4nt to die").severity == Severity.CRISIS
    assert d.detect("I do not want to die").severity == Severity.NONE
    assert d.detect("years ago I want to die").severity == Severity.NONE
    assert check_content(root) == []


def test_bad_pattern_names_file_and_line(tmp_path: Path) -> None:
    root = _write_min_content(
        tmp_path,
        "  - id: ok\n    category: suicide_self_harm\n    severity: high\n    patterns: ['fine']\n"
        "  - id: broken\n    category: suicide_self_harm\n    severity: high\n    patterns:\n      - 'kill (myself'\n",
    )
    problems = check_content(root)
    assert len(problems) == 1
    file, line, message = problems[0]
    assert file == "risk/en.yaml" and line == 14 and "broken" in message
    with pytest.raises(RiskContentError, match=r"risk/en\.yaml:14"):
        load_detector(root)


@pytest.mark.parametrize(
    ("rules", "needle"),
    [
        ("  - id: x\n    category: nope\n    severity: high\n    patterns: [a]\n", "category"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: extreme\n    patterns: [a]\n", "severity"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: ['{missing}']\n", "vocab"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: []\n", "pattern"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [a]\n    colour: red\n", "unknown key"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [a]\n    own: maybe\n", "own"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [a]\n    unless_message: ['(b']\n", "unless_message"),
        ("  - id: x\n    category: suicide_self_harm\n    severity: none\n    patterns: [a]\n", "tags"),
        (
            "  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [a]\n"
            "  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [b]\n",
            "duplicate",
        ),
        ("  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [a]\n  - [oops\n", "YAML"),
    ],
)
def test_content_problems_are_reported(tmp_path: Path, rules: str, needle: str) -> None:
    root = _write_min_content(tmp_path, rules)
    problems = check_content(root)
    assert problems, rules
    assert any(needle.lower() in msg.lower() for _, _, msg in problems), problems
    assert all(isinstance(line, int) for _, line, _ in problems)


def test_combo_must_reference_known_tags(tmp_path: Path) -> None:
    root = _write_min_content(
        tmp_path,
        "  - id: x\n    category: suicide_self_harm\n    severity: high\n    patterns: [a]\n    tags: [t]\n"
        "combos:\n  - id: c\n    category: suicide_self_harm\n    severity: crisis\n    all: [t, ghost]\n",
    )
    assert any("ghost" in msg for _, _, msg in check_content(root))


def test_missing_risk_dir(tmp_path: Path) -> None:
    assert check_content(tmp_path)
    with pytest.raises(RiskContentError):
        load_detector(tmp_path)


# ------------------------------------------------------------------ iop-bot risk check


def test_main_check_single_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check(["I", "want", "to", "die"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["severity"] == "crisis" and out["category"] == "suicide_self_harm"
    assert main_check(["check", "hola, buen día"]) == 0
    assert json.loads(capsys.readouterr().out)["severity"] == "none"


def test_main_check_jsonl_file(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"id": 1, "label": "crisis", "text": "I took too many pills"}),
                "{not json",
                json.dumps(["a", "list"]),
                json.dumps({"id": 4, "no_text": True}),
                "",
                json.dumps({"id": 5, "text": "fui a mi junta hoy"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    assert main_check(["--jsonl", str(src)], stdout=out) == 0
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 5
    assert lines[0]["id"] == 1 and lines[0]["label"] == "crisis" and lines[0]["severity"] == "crisis"
    assert "text" not in lines[0]
    assert "error" in lines[1] and lines[1]["line"] == 2
    assert "error" in lines[2]
    assert "error" in lines[3] and lines[3]["id"] == 4
    assert lines[4]["id"] == 5 and lines[4]["severity"] == "none"


def test_main_check_stdin_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    stdin = io.StringIO(json.dumps({"text": "he hits me"}) + "\n")
    assert main_check(["--jsonl", "-"], stdout=out, stdin=stdin) == 0
    assert json.loads(out.getvalue())["category"] == "abuse_violence"
    assert main_check(["--jsonl", str(tmp_path / "missing.jsonl")]) == 2
    assert main_check([]) == 2
    assert main_check(["--jsonl", "-", "also text"]) == 2
    capsys.readouterr()


# ------------------------------------------------------------------ the learned second opinion


def _labelled(root: Path, rows: list[dict[str, str]], model: str = "model: {threshold: 0.5, min_words: 4}\n") -> None:
    folder = root / "risk" / "labelled"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    common = root / "risk" / "common.yaml"
    common.write_text(common.read_text(encoding="utf-8") + model, encoding="utf-8")


_RISKY = [
    "tonight i am going to walk into the river and not come back",
    "i want to walk into the river tonight and never come back",
    "walking to the river now, not coming back this time",
    "i keep picturing the river and not coming back from it",
]
_ORDINARY = [
    "we walked by the river after group and got ice cream",
    "coming back from the meeting now, it was a good one",
    "the river walk with my sponsor helped a lot today",
    "my kids are coming back from their dad's place tonight",
]


def _learned_dir(tmp_path: Path) -> Path:
    root = _write_min_content(
        tmp_path,
        "  - id: die\n    category: suicide_self_harm\n    severity: crisis\n    patterns: ['want to die']\n",
    )
    rows = [{"text": t, "label": "high", "category": "suicide_self_harm"} for t in _RISKY]
    rows += [{"text": t, "label": "none"} for t in _ORDINARY]
    rows += [{"text": "picked up again last night, used the whole bag", "label": "high", "category": "use_disclosure"}]
    _labelled(root, rows)
    return root


def test_learned_model_raises_what_no_rule_names(tmp_path: Path) -> None:
    d = load_detector(_learned_dir(tmp_path))
    r = d.detect("thinking about the river tonight and not coming back")
    assert (r.severity, r.category, r.uncertain) == (Severity.HIGH, Category.SUICIDE_SELF_HARM, True)
    learned = r.matches[0]
    assert learned.rule_id == "learned" and learned.evidence
    assert all(w in "thinking about the river tonight and not coming back" for w in learned.evidence.split(", "))
    # Ordinary talk with the same everyday words stays as the rules left it.
    assert d.detect("we went to the river after group and had ice cream").severity == Severity.NONE


def test_learned_model_never_overrules_the_rules(tmp_path: Path) -> None:
    d = load_detector(_learned_dir(tmp_path))
    # The rules held a phrase back (negated): the model does not raise it.
    assert d.detect("I do not want to die, the river and not coming back is behind me").severity == Severity.NONE
    # The rules' crisis stays crisis (the model never lowers, never sets crisis itself).
    assert d.detect("I want to die by the river tonight").severity == Severity.CRISIS
    # Short messages are left to the rules.
    assert d.detect("not coming back").severity == Severity.NONE


def test_learned_use_disclosure_is_flagged_without_a_question(tmp_path: Path) -> None:
    d = load_detector(_learned_dir(tmp_path))
    r = d.detect("picked up again last night and used the whole bag alone")
    assert (r.severity, r.category, r.uncertain) == (Severity.HIGH, Category.USE_DISCLOSURE, False)


@pytest.mark.parametrize(
    ("line", "model", "needle"),
    [
        ("{not json", "", "mine.jsonl:1"),
        ('{"text": "x", "label": "urgent"}', "", "label must be one of"),
        ('{"text": "x", "label": "high", "category": "sadness"}', "", "unknown category"),
        ('{"text": "ok", "label": "none"}', "model: {threshold: high}\n", "model.threshold must be a number"),
        ('{"text": "ok", "label": "none"}', "model: {min_words: -1}\n", "model.min_words"),
    ],
)
def test_labelled_problems_name_file_and_line(tmp_path: Path, line: str, model: str, needle: str) -> None:
    root = _write_min_content(tmp_path, "  - id: die\n    category: suicide_self_harm\n    severity: crisis\n    patterns: ['want to die']\n")
    folder = root / "risk" / "labelled"
    folder.mkdir()
    (folder / "mine.jsonl").write_text(line + "\n", encoding="utf-8")
    if model:
        common = root / "risk" / "common.yaml"
        common.write_text(common.read_text(encoding="utf-8") + model, encoding="utf-8")
    problems = check_content(root)
    assert any(needle in f"{f}:{n}: {msg}" for f, n, msg in problems), problems


def test_repository_model_is_trained(det: RiskDetector) -> None:
    assert det.model is not None and det.model.threshold > 0 and det.model.min_words > 0
