"""The risk content, `content/risk/*.yaml` (`common.yaml` for normalisation data and
cross-language rules, one file per language for the rest; the labelled messages of the learned
model in `risk/labelled/*.jsonl`): read, validated with the file and line of each problem, and
compiled into a `RiskDetector`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from bot.core.vocabulary import Category, Severity
from bot.safety.risk.compiled import compile_regex
from bot.safety.risk.detector import COMMON, Combo, Context, RiskDetector, Rule
from bot.safety.risk.model import LearnedModel, read_labelled
from bot.safety.risk.normalize import INVISIBLE, Normalizer, fold_text
from bot.safety.risk.patterns import BOUNDARY_L, BOUNDARY_R, PatternError, compile_pattern
from bot.safety.risk.result import DETECTED_CATEGORIES, DETECTED_SEVERITIES

DEFAULT_CONTENT_DIR = Path(__file__).resolve().parents[3] / "content"
RISK_SUBDIR = "risk"
LABELLED_SUBDIR = "labelled"  # risk/labelled/*.jsonl: labelled messages the learned model reads
DEFAULT_MODEL_THRESHOLD = 0.5


class RiskContentError(ValueError):
    """The risk content is invalid; the message names the file and line of each problem."""

    def __init__(self, problems: Sequence[tuple[str, int, str]]) -> None:
        self.problems = list(problems)
        lines = [f"{f}:{line}: {msg}" for f, line, msg in self.problems[:20]]
        more = len(self.problems) - 20
        if more > 0:
            lines.append(f"... and {more} more")
        super().__init__("invalid risk content:\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------
# Loading YAML with line numbers
# --------------------------------------------------------------------------------------------


class _LineStr(str):
    line: int = 0


class _LineDict(dict[str, Any]):
    line: int = 0


class _LineList(list[Any]):
    line: int = 0


# libyaml's parser where it is installed (several times faster); both give each node its line.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> _LineStr:
    s = _LineStr(loader.construct_scalar(node))
    s.line = node.start_mark.line + 1
    return s


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict()
    d.line = node.start_mark.line + 1
    d.update(loader.construct_mapping(node, deep=True))
    return d


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _LineList:
    lst = _LineList(loader.construct_sequence(node, deep=True))
    lst.line = node.start_mark.line + 1
    return lst


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _line(obj: Any, default: int = 0) -> int:
    return int(getattr(obj, "line", default) or default)


# --------------------------------------------------------------------------------------------
# Building the detector
# --------------------------------------------------------------------------------------------

_SEVERITIES = {s.value for s in DETECTED_SEVERITIES}
_CATEGORY_NAMES = [c.value for c in DETECTED_CATEGORIES]
_CATEGORIES = set(_CATEGORY_NAMES)
_RULE_KEYS = {
    "id", "category", "severity", "uncertain", "patterns", "tags", "negatable", "past",
    "past_to", "discussion", "unless", "unless_message", "soften", "soften_to", "on_joke", "resolved_to",
    "own", "note",
}
_COMBO_KEYS = {"id", "category", "severity", "uncertain", "all", "note"}
_CONTEXT_LISTS = (
    "negation", "negation_fillers", "pseudo_negation", "clause_breaks", "past", "current",
    "current_strong", "future", "discussion", "joke", "resolution", "over", "past_tense",
    "hypothetical", "third_party", "first_person",
)


def _alt(parts: Iterable[str]) -> str:
    return "|".join(f"(?:{p})" for p in parts)


def _read_yaml(path: Path, rel: str, problems: list[tuple[str, int, str]]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append((rel, 0, f"cannot read: {exc}"))
        return None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problems.append((rel, line, f"YAML syntax error: {getattr(exc, 'problem', None) or exc}"))
        return None


def _str_list(value: Any, rel: str, where: str, problems: list[tuple[str, int, str]], parent: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((rel, _line(value, _line(parent)), f"{where} must be a list of strings"))
        return []
    return list(value)


def _check_regex(src: str, vocab: dict[str, str], rel: str, where: str, problems: list[tuple[str, int, str]],
                 *, bounded: bool = True) -> str | None:
    try:
        return compile_pattern(src, vocab, bounded=bounded)
    except (PatternError, re.error) as exc:
        problems.append((rel, _line(src), f"{where}: bad pattern {src!r}: {exc}"))
        return None


def _relpath(path: Path, content_dir: Path) -> str:
    try:
        return str(path.relative_to(content_dir))
    except ValueError:
        return str(path)


def build(content_dir: Path, *, crisis_only: bool = False) -> tuple[RiskDetector | None, list[tuple[str, int, str]]]:
    """The detector from content_dir/risk, and the problems found. `crisis_only`: only the rules
    of crisis severity, with their contexts (negation, past, jokes ...), no combos and no
    learned model: a fraction of the build, for answering a crisis while the rest builds."""
    problems: list[tuple[str, int, str]] = []
    risk_dir = content_dir / RISK_SUBDIR
    files = sorted(risk_dir.glob("*.yaml")) if risk_dir.is_dir() else []
    if not files:
        problems.append((_relpath(risk_dir, content_dir), 0, "no risk content (expected risk/*.yaml)"))
        return None, problems
    docs: dict[str, tuple[str, Any]] = {}
    for path in files:
        rel = _relpath(path, content_dir)
        data = _read_yaml(path, rel, problems)
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append((rel, 1, "top level must be a mapping"))
            continue
        docs[path.stem.lower()] = (rel, data)
    if problems:
        return None, problems

    # normalisation data
    leet: dict[str, str] = {}
    keep: list[str] = []
    fillers: list[str] = []
    emoji: dict[str, str] = {}
    common_vocab: dict[str, str] = {}
    if COMMON in docs:
        rel, data = docs[COMMON]
        norm = data.get("normalize") or {}
        if not isinstance(norm, dict):
            problems.append((rel, _line(norm, 1), "normalize must be a mapping"))
            norm = {}
        for k, v in (norm.get("leet") or {}).items():
            if not isinstance(k, str) or not isinstance(v, str) or len(k) != 1 or len(v) != 1:
                problems.append((rel, _line(k, _line(norm)), f"leet entry {k!r}: {v!r} must map one character to one letter"))
                continue
            leet[k] = v
        for p in _str_list(norm.get("leet_keep"), rel, "leet_keep", problems, norm):
            try:
                re.compile(p)
                keep.append(p)
            except re.error as exc:
                problems.append((rel, _line(p), f"leet_keep: bad pattern {p!r}: {exc}"))
        fillers = _str_list(norm.get("fillers"), rel, "fillers", problems, norm)
        em = norm.get("emoji") or {}
        if not isinstance(em, dict):
            problems.append((rel, _line(em, 1), "emoji must be a mapping"))
            em = {}
        for k, v in em.items():
            key = "".join(ch for ch in str(k) if ch not in INVISIBLE)
            if len(key) != 1:
                problems.append((rel, _line(k), f"emoji {k!r} must be a single character (joined sequences are not supported)"))
                continue
            if not isinstance(v, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", v):
                problems.append((rel, _line(v, _line(k)), f"emoji {k!r}: name {v!r} must be lower-case letters, digits, _"))
                continue
            emoji[key] = v
        common_vocab = _read_vocab(data, rel, problems)
    normalizer = Normalizer(leet, compile_regex(_alt(keep) if keep else r"(?!)"), emoji, fillers)

    rules: list[Rule] = []
    combos: list[Combo] = []
    contexts: dict[str, Context] = {}
    breaks: list[str] = []
    ignore: list[tuple[re.Pattern[str], frozenset[Category] | None, str]] = []
    ctx_sources: dict[str, dict[str, list[str]]] = {}
    lang_vocab: dict[str, dict[str, str]] = {}
    for lang, (rel, data) in docs.items():
        vocab = dict(common_vocab)
        if lang != COMMON:
            vocab.update(_read_vocab(data, rel, problems))
        lang_vocab[lang] = vocab
        ctx_raw = data.get("context") or {}
        if not isinstance(ctx_raw, dict):
            problems.append((rel, _line(ctx_raw, 1), "context must be a mapping"))
            ctx_raw = {}
        srcs: dict[str, list[str]] = {}
        for key in _CONTEXT_LISTS:
            srcs[key] = _str_list(ctx_raw.get(key), rel, f"context.{key}", problems, ctx_raw)
        for key in ctx_raw:
            if key not in _CONTEXT_LISTS and key not in ("negation_window", "past_before", "past_after", "ignore"):
                problems.append((rel, _line(key), f"context: unknown key {key!r}"))
        ctx_sources[lang] = srcs
        for item in ctx_raw.get("ignore") or []:
            pat, cats = item, None
            if isinstance(item, dict):
                pat = item.get("pattern")
                raw_cats = _str_list(item.get("categories"), rel, "ignore.categories", problems, item)
                bad = [c for c in raw_cats if c not in _CATEGORIES]
                for c in bad:
                    problems.append((rel, _line(c, _line(item)), f"ignore: unknown category {c!r}"))
                cats = frozenset(Category(c) for c in raw_cats if c in _CATEGORIES) or None
            if not isinstance(pat, str):
                problems.append((rel, _line(item), "ignore entries need a pattern"))
                continue
            final = _check_regex(pat, vocab, rel, "context.ignore", problems)
            if final is not None:
                ignore.append((compile_regex(final), cats, lang))
        breaks += srcs["clause_breaks"]
        ctx = Context()
        for key, attr in (("negation_window", "negation_window"), ("past_before", "past_before"), ("past_after", "past_after")):
            if key in ctx_raw:
                v = ctx_raw[key]
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    problems.append((rel, _line(ctx_raw), f"context.{key} must be a non-negative integer"))
                else:
                    setattr(ctx, attr, v)
        contexts[lang] = ctx
        for raw in data.get("rules") or []:
            if crisis_only and not (isinstance(raw, dict) and raw.get("severity") == Severity.CRISIS.value):
                continue
            rule = _read_rule(raw, lang, rel, vocab, problems)
            if rule is not None:
                rules.append(rule)
        for raw in [] if crisis_only else data.get("combos") or []:
            combo = _read_combo(raw, rel, problems)
            if combo is not None:
                combos.append(combo)
        for key in data:
            if key not in ("normalize", "vocab", "context", "rules", "combos", "language", "note", "model"):
                problems.append((rel, _line(key), f"unknown top-level key {key!r}"))

    # context regexes: per language (with its own vocab), and their union for the shared rules
    _REGEX_KEYS = (("pseudo_negation", "pseudo"), ("past", "past"), ("current", "current"),
                   ("current_strong", "current_strong"), ("future", "future"), ("discussion", "discussion"),
                   ("joke", "joke"),
                   ("resolution", "resolution"), ("over", "over"), ("past_tense", "past_tense"),
                   ("hypothetical", "hypothetical"), ("third_party", "third_party"),
                   ("first_person", "first_person"))
    finals_by_lang: dict[str, dict[str, list[str]]] = {}
    for lang in contexts:
        rel = docs[lang][0]
        vocab = lang_vocab[lang]
        finals_by_lang[lang] = {
            key: [f for f in (_check_regex(p, vocab, rel, f"context.{key}", problems) for p in ctx_sources[lang][key]) if f]
            for key, _ in _REGEX_KEYS
        }
    all_langs = [lang for lang in ctx_sources if lang != COMMON]
    for lang, ctx in contexts.items():
        src_langs = [lang] if lang != COMMON else all_langs + [COMMON]
        everyone = all_langs + [COMMON]
        if lang == COMMON:
            windows = [contexts[sl] for sl in all_langs] or [ctx]
            ctx.negation_window = max(c.negation_window for c in windows)
        ctx.negation = frozenset(fold_text(w).strip() for sl in src_langs for w in ctx_sources[sl]["negation"])
        ctx.fillers = frozenset(fold_text(w).strip() for sl in src_langs for w in ctx_sources[sl]["negation_fillers"])
        for key, attr in _REGEX_KEYS:
            # talk about a topic and joking are recognised in any language
            langs = everyone if key in ("discussion", "joke", "resolution") else src_langs
            finals = [f for sl in langs for f in finals_by_lang[sl][key]]
            source = "|".join(finals)
            if key == "hypothetical" and finals:
                source = f"(?:{source})[^a-z0-9]*$"  # a condition right before the phrase
            setattr(ctx, attr, compile_regex(source) if finals else None)
    break_finals = [f for f in (_check_regex(p, {}, "risk", "clause_breaks", problems, bounded=False) for p in breaks) if f]
    clause_breaks = compile_regex(f"{BOUNDARY_L}(?:{'|'.join(break_finals)}){BOUNDARY_R}" if break_finals else r"(?!)")

    # ids and combo references
    seen: dict[str, str] = {}
    known_refs: set[str] = set()
    for r in rules:
        if r.id in seen:
            problems.append((seen[r.id], 0, f"duplicate rule id {r.id!r}"))
        seen[r.id] = r.lang
        known_refs.add(r.id)
        known_refs |= r.tags
    for c in combos:
        if c.id in seen:
            problems.append(("risk", 0, f"duplicate rule/combo id {c.id!r}"))
        seen[c.id] = "combo"
        for group in c.groups:
            for key in group:
                if ">=" in key:
                    cat, _, sev = key.partition(">=")
                    if (cat != "*" and cat not in _CATEGORIES) or sev not in _SEVERITIES:
                        problems.append(("risk", 0, f"combo {c.id}: bad condition {key!r}"))
                elif key not in known_refs:
                    problems.append(("risk", _line(key), f"combo {c.id}: {key!r} is neither a rule id nor a tag"))
    if problems:
        return None, problems
    detector = RiskDetector(normalizer, rules, combos, contexts, clause_breaks, ignore, prefilter=not crisis_only)
    if not crisis_only:
        detector.model = _read_model(content_dir, docs.get(COMMON), normalizer, problems)
    if problems:
        return None, problems
    return detector, problems


def load_detector(content_dir: Path) -> RiskDetector:
    """Load `content_dir/risk/*.yaml`; raise RiskContentError naming file and line."""
    detector, problems = build(Path(content_dir))
    if problems or detector is None:
        raise RiskContentError(problems or [(str(content_dir), 0, "no risk content")])
    return detector


def _read_model(
    content_dir: Path, common: tuple[str, Any] | None, normalizer: Normalizer, problems: list[tuple[str, int, str]]
) -> LearnedModel | None:
    """The learned second opinion (bot/safety/risk/model.py), from risk/labelled/*.jsonl; none when
    that folder is absent or `model.enabled` is false."""
    settings: Any = (common[1].get("model") if common else None) or {}
    rel = common[0] if common else RISK_SUBDIR
    if not isinstance(settings, dict):
        problems.append((rel, _line(settings, 1), "model must be a mapping"))
        return None
    threshold = settings.get("threshold", DEFAULT_MODEL_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        problems.append((rel, _line(settings), "model.threshold must be a number"))
        return None
    min_words = settings.get("min_words", 0)
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 0:
        problems.append((rel, _line(settings), "model.min_words must be a whole number, 0 or more"))
        return None
    folder = content_dir / RISK_SUBDIR / LABELLED_SUBDIR
    if settings.get("enabled", True) is False or not folder.is_dir():
        return None
    rows = read_labelled(sorted(folder.glob("*.jsonl")), lambda p: _relpath(p, content_dir), set(_CATEGORIES), problems)
    if not rows:
        return None
    return LearnedModel.train(rows, lambda t: normalizer.normalize(t).text, float(threshold), min_words)


def _read_vocab(data: dict[str, Any], rel: str, problems: list[tuple[str, int, str]]) -> dict[str, str]:
    raw = data.get("vocab") or {}
    if not isinstance(raw, dict):
        problems.append((rel, _line(raw, 1), "vocab must be a mapping"))
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", k):
            problems.append((rel, _line(k), f"vocab name {k!r} must be lower-case letters, digits, _"))
            continue
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = "|".join(f"(?:{x})" for x in v)
        elif isinstance(v, str):
            out[k] = v
        else:
            problems.append((rel, _line(k), f"vocab {k}: must be a string or a list of strings"))
    return out


def _severity(value: Any, rel: str, where: str, problems: list[tuple[str, int, str]], line: int) -> Severity | None:
    if not isinstance(value, str) or value not in _SEVERITIES:
        problems.append((rel, _line(value, line), f"{where}: severity must be one of {sorted(_SEVERITIES)}, not {value!r}"))
        return None
    return Severity(value)


def _read_head(
    raw: Any, kind: str, keys: set[str], rel: str, problems: list[tuple[str, int, str]]
) -> tuple[str, int, str, str, Severity] | None:
    """What rules and combos share: a mapping with a well-formed id, known keys, a category
    and a severity. Returns (id, line, where, category, severity), or None after a problem."""
    if not isinstance(raw, dict):
        problems.append((rel, _line(raw), f"each {kind} must be a mapping"))
        return None
    line = _line(raw)
    rid = raw.get("id")
    if not isinstance(rid, str) or not re.fullmatch(r"[a-z0-9_.\-]+", rid):
        problems.append((rel, line, f"{kind} id {rid!r} must be lower-case letters, digits, _ . -"))
        return None
    where = f"{kind} {rid}"
    for key in raw:
        if key not in keys:
            problems.append((rel, _line(key, line), f"{where}: unknown key {key!r}"))
    cat = raw.get("category")
    if cat not in _CATEGORIES:
        problems.append((rel, _line(cat, line), f"{where}: category must be one of {_CATEGORY_NAMES}, not {cat!r}"))
        return None
    return rid, line, where, cat, _severity(raw.get("severity"), rel, where, problems, line)


def _read_rule(raw: Any, lang: str, rel: str, vocab: dict[str, str], problems: list[tuple[str, int, str]]) -> Rule | None:
    head = _read_head(raw, "rule", _RULE_KEYS, rel, problems)
    if head is None:
        return None
    rid, line, where, cat, sev = head
    past_to = _severity(raw.get("past_to", "none"), rel, f"{where} past_to", problems, line)
    soften_to = _severity(raw.get("soften_to", "none"), rel, f"{where} soften_to", problems, line)
    on_joke = raw.get("on_joke")
    joke_sev = _severity(on_joke, rel, f"{where} on_joke", problems, line) if on_joke is not None else None
    resolved = raw.get("resolved_to")
    resolved_sev = _severity(resolved, rel, f"{where} resolved_to", problems, line) if resolved is not None else None
    flags: dict[str, bool] = {}
    for key, default in (("uncertain", False), ("negatable", True), ("past", True), ("discussion", False),
                         ("own", False)):
        v = raw.get(key, default)
        if not isinstance(v, bool):
            problems.append((rel, _line(v, line), f"{where}: {key} must be true or false"))
            v = default
        flags[key] = v
    pats = _str_list(raw.get("patterns"), rel, f"{where} patterns", problems, raw)
    if not pats:
        problems.append((rel, line, f"{where}: needs at least one pattern"))
        return None
    finals = [f for f in (_check_regex(p, vocab, rel, where, problems) for p in pats) if f]
    unless = [f for f in (_check_regex(p, vocab, rel, f"{where} unless", problems, bounded=True)
                          for p in _str_list(raw.get("unless"), rel, f"{where} unless", problems, raw)) if f]
    unless_message = [f for f in (_check_regex(p, vocab, rel, f"{where} unless_message", problems, bounded=True)
                                  for p in _str_list(raw.get("unless_message"), rel, f"{where} unless_message",
                                                     problems, raw)) if f]
    soften = [f for f in (_check_regex(p, vocab, rel, f"{where} soften", problems, bounded=True)
                          for p in _str_list(raw.get("soften"), rel, f"{where} soften", problems, raw)) if f]
    tags = _str_list(raw.get("tags"), rel, f"{where} tags", problems, raw)
    if sev is None or past_to is None or soften_to is None or (on_joke is not None and joke_sev is None):
        return None
    if resolved is not None and resolved_sev is None:
        return None
    if len(finals) != len(pats):
        return None
    if sev == Severity.NONE and not tags:
        problems.append((rel, line, f"{where}: a rule with severity none must have tags (it only feeds combos)"))
        return None
    return Rule(
        id=rid,
        lang=lang,
        category=Category(cat),
        severity=sev,
        uncertain=flags["uncertain"],
        parts=tuple(compile_regex(f) for f in finals),
        tags=frozenset(tags),
        negatable=flags["negatable"],
        past=flags["past"],
        past_to=past_to,
        discussion=flags["discussion"],
        unless=compile_regex("|".join(unless)) if unless else None,
        soften=compile_regex("|".join(soften)) if soften else None,
        soften_to=soften_to,
        on_joke=joke_sev,
        resolved_to=resolved_sev,
        own=flags["own"],
        unless_message=compile_regex("|".join(unless_message)) if unless_message else None,
    )


def _read_combo(raw: Any, rel: str, problems: list[tuple[str, int, str]]) -> Combo | None:
    head = _read_head(raw, "combo", _COMBO_KEYS, rel, problems)
    if head is None:
        return None
    cid, line, where, cat, sev = head
    unc = raw.get("uncertain", False)
    groups_raw = raw.get("all")
    if not isinstance(groups_raw, list) or len(groups_raw) < 2:
        problems.append((rel, line, f"{where}: 'all' must list at least two conditions"))
        return None
    groups: list[tuple[str, ...]] = []
    for g in groups_raw:
        if isinstance(g, str):
            groups.append((g,))
        elif isinstance(g, list) and g and all(isinstance(x, str) for x in g):
            groups.append(tuple(g))
        else:
            problems.append((rel, _line(g, line), f"{where}: each condition is a tag, a rule id, a list of them, or category>=severity"))
            return None
    if sev is None or sev == Severity.NONE or not isinstance(unc, bool):
        if sev == Severity.NONE:
            problems.append((rel, line, f"{where}: severity none makes no sense for a combo"))
        if not isinstance(unc, bool):
            problems.append((rel, line, f"{where}: uncertain must be true or false"))
        return None
    return Combo(cid, Category(cat), sev, unc, tuple(groups))
