"""Callback data: every codec the bot declares (bot/areas.py) packs and parses back, fits
Telegram's 64 bytes at its widest, writes the strings buttons already sent carry, and answers
anything else with the one failure path, `Stale`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.areas import button_families
from bot.assessments import buttons as assessments
from bot.checkins import buttons as checkins
from bot.enrolment import buttons as enrolment
from bot.escalation import buttons as escalation
from bot.platform.callbacks import Codec, Field, Int, OneOf, Pressed, Stale, Word, callback_data_ok
from bot.platform.keyboards import MAX_CALLBACK_BYTES, MAX_CALLBACK_NUMBER
from bot.privacy import buttons as privacy
from bot.recovery import buttons as recovery
from bot.safety import buttons as safety

FAMILIES = button_families()
CODECS = [codec for family in FAMILIES for codec in family.codecs]
CONTENT = Path(__file__).resolve().parents[2] / "content"


def _name(codec: Codec) -> str:
    return f"{codec.prefix}:{codec.tag}/{len(codec.fields)}"


def _samples(f: Field) -> list[object]:
    if isinstance(f, Int):
        return sorted({f.low, max(f.low, 0), min(f.high, 7), f.high})
    if isinstance(f, OneOf):
        return list(f.values)
    assert isinstance(f, Word)
    return ["a", "w" * f.max_bytes]


def _bad(f: Field) -> list[str]:
    """Texts the field must refuse."""
    if isinstance(f, Int):
        out = [str(f.high + 1), "9" * 25, "٣", "1.5", "x", "", "+1", " 1"]
        if f.low >= 0:
            out.append("-1")
        else:
            out += [str(f.low - 1), "--1"]
        return out
    if isinstance(f, OneOf):
        return ["", "not_one_of_them", f.values[0].upper() if f.values[0].upper() != f.values[0] else "zz"]
    assert isinstance(f, Word)
    return ["", "w" * (f.max_bytes + 1)]


def test_the_families_have_one_prefix_each_and_their_codecs_are_theirs() -> None:
    prefixes = [f.prefix for f in FAMILIES]
    assert len(prefixes) == len(set(prefixes))
    assert set(prefixes) == {"ob", "st", "inv", "sf", "ci", "as", "fl", "pv", "sos", "pl"}
    for family in FAMILIES:
        assert family.codecs, family.prefix
        for codec in family.codecs:
            assert codec.prefix == family.prefix
            assert re.match(family.pattern, codec.widest())
            assert family.owns(codec.widest())


@pytest.mark.parametrize("codec", CODECS, ids=_name)
def test_every_codec_packs_and_parses_back(codec: Codec) -> None:
    family = next(f for f in FAMILIES if f.prefix == codec.prefix)
    columns = [_samples(f) for f in codec.fields]
    for i in range(max((len(c) for c in columns), default=1)):
        values = tuple(c[i % len(c)] for c in columns)
        data = codec.pack(*values)
        assert family.parse(data) == Pressed(codec, values)
        assert codec.parse(data) == values
        assert codec.made(data)
        assert callback_data_ok(data)  # the check made before any handler parses


@pytest.mark.parametrize("codec", CODECS, ids=_name)
def test_every_codec_at_its_widest_fits_telegram(codec: Codec) -> None:
    assert len(codec.widest().encode()) <= MAX_CALLBACK_BYTES


@pytest.mark.parametrize("codec", CODECS, ids=_name)
def test_every_codec_refuses_what_it_did_not_make(codec: Codec) -> None:
    family = next(f for f in FAMILIES if f.prefix == codec.prefix)
    good = [_samples(f)[0] for f in codec.fields]
    packed = [f.dump(v) for f, v in zip(codec.fields, good, strict=True)]
    garbage: list[object] = [
        None, 42, "", codec.prefix, f"{codec.prefix}:", f"{codec.prefix}:no_such_tag",
        ":".join([codec.prefix, codec.tag, *packed, "extra", "more"]),
        ":".join(["zz", codec.tag, *packed]),
        ":".join([codec.prefix, codec.tag, *packed]) + ":" + "x" * MAX_CALLBACK_BYTES,
    ]
    for i, f in enumerate(codec.fields):
        for bad in _bad(f):
            garbage.append(":".join([codec.prefix, codec.tag, *packed[:i], bad, *packed[i + 1 :]]))
    for data in garbage:
        with pytest.raises(Stale):
            codec.parse(data)
        try:
            pressed = family.parse(data)
        except Stale:
            continue
        # Another codec of the family may own it (st:sob and st:sob:<answer>), never this one
        # with values it would not have written.
        assert pressed.codec is not codec, data


@pytest.mark.parametrize("codec", CODECS, ids=_name)
def test_every_codec_refuses_to_pack_what_it_could_not_parse(codec: Codec) -> None:
    good = [_samples(f)[0] for f in codec.fields]
    with pytest.raises(ValueError):
        codec.pack(*good, "one too many")
    for i, f in enumerate(codec.fields):
        for bad in (*_bad(f), None):
            value: object = bad
            if isinstance(f, Int):
                value = f.high + 1 if bad != "-1" else -1
            with pytest.raises(ValueError):
                codec.pack(*good[:i], value, *good[i + 1 :])


def test_numbers_stop_at_a_row_id() -> None:
    assert escalation.CLAIM.pack(MAX_CALLBACK_NUMBER) == f"fl:claim:{MAX_CALLBACK_NUMBER}"
    with pytest.raises(Stale):
        escalation.FLAG.parse(f"fl:claim:{MAX_CALLBACK_NUMBER + 1}")
    with pytest.raises(ValueError):
        escalation.CLAIM.pack(MAX_CALLBACK_NUMBER + 1)
    with pytest.raises(ValueError):
        escalation.CLAIM.pack(True)


# The strings on buttons already sent: they must keep working, so the codecs write them exactly.
WIRE = [
    (escalation.CLAIM, (12,), "fl:claim:12"),
    (escalation.DETAILS, (12,), "fl:details:12"),
    (escalation.MESSAGE, (12,), "fl:msg:12"),
    (escalation.RESOLVE, (12,), "fl:resolve:12"),
    (escalation.NO_NOTE, (12,), "fl:nonote:12"),
    (escalation.END, (3,), "fl:end:3"),
    (safety.YES, (5, "suicide_self_harm"), "sf:y:5:suicide_self_harm"),
    (safety.YES_BARE, (5,), "sf:y:5"),
    (safety.NO, (5,), "sf:n:5"),
    (safety.TALK, (5,), "sf:t:5"),
    (safety.FOLLOWUP, (9, "talk"), "sf:fu:9:talk"),
    (privacy.DELETE, ("1",), "pv:del:1"),
    (privacy.DELETE, ("2",), "pv:del:2"),
    (privacy.KEEP, (), "pv:keep"),
    (enrolment.REVOKE, (4,), "inv:rev:4"),
    (enrolment.AGE, ("y",), "ob:age:y"),
    (enrolment.CONSENT, ("n",), "ob:con:n"),
    (enrolment.ONBOARDING.timezone, ("3",), "ob:tz:3"),
    (enrolment.ONBOARDING.timezone, ("other",), "ob:tz:other"),
    (enrolment.ONBOARDING.time, ("0900",), "ob:tm:0900"),
    (enrolment.ONBOARDING.sobriety, ("d20260115",), "ob:sob:d20260115"),
    (enrolment.ONBOARDING.sobriety, ("change",), "ob:sob:change"),
    (enrolment.ONBOARDING.mat, ("y",), "ob:mat:y"),
    (enrolment.ONBOARDING.schedule, ("w",), "ob:med:w"),
    (enrolment.SETTINGS.sobriety, ("clear",), "st:sob:clear"),
    (enrolment.SETTINGS.timezone, ("other",), "st:tz:other"),
    (enrolment.SETTINGS.time, ("2130",), "st:tm:2130"),
    (enrolment.SETTINGS.mat, ("n",), "st:mat:n"),
    (enrolment.SETTINGS.schedule, ("m",), "st:med:m"),
    (enrolment.OPEN_TIMEZONE, (), "st:tz"),
    (enrolment.OPEN_TIME, (), "st:tm"),
    (enrolment.OPEN_SOBRIETY, (), "st:sob"),
    (enrolment.OPEN_MAT, (), "st:mat"),
    (enrolment.OPEN_LANGUAGE, (), "st:lang"),
    (enrolment.LANGUAGE, ("es",), "st:lang:es"),
    (enrolment.TIPS, ("0",), "st:tips:0"),
    (checkins.START, (), "ci:start"),
    (checkins.ANSWER, ("mood", "4"), "ci:a:mood:4"),
    (checkins.TOGGLE, ("feelings", "anxious"), "ci:t:feelings:anxious"),
    (checkins.DONE, ("feelings",), "ci:d:feelings"),
    (checkins.SKIP, ("note",), "ci:skip:note"),
    (checkins.BACK, (), "ci:back"),
    (checkins.CANCEL, (), "ci:cancel"),
    (checkins.TALK, ("y",), "ci:talk:y"),
    (checkins.MILESTONE, (30, "n"), "ci:ms:30:n"),
    (assessments.START, ("phq9",), "as:start:phq9"),
    (assessments.ANSWER, ("phq9", "q9", "2"), "as:a:phq9:q9:2"),
    (assessments.RESUME, ("gad7",), "as:resume:gad7"),
    (assessments.FOLLOWUP, ("phq9", "wish_dead", "y"), "as:f:phq9:wish_dead:y"),
    (assessments.BACK, ("weekly",), "as:back:weekly"),
    (assessments.CANCEL, ("weekly",), "as:cancel:weekly"),
    (recovery.OPEN, (), "sos:open"),
    (recovery.MENU, (), "sos:menu"),
    (recovery.SHOW_PLAN, (), "sos:plan"),
    (recovery.CALL, (), "sos:call"),
    (recovery.TALK, (), "sos:talk"),
    (recovery.HELPED, (), "sos:helped"),
    (recovery.STEP, ("ride_the_wave", 0), "sos:x:ride_the_wave:0"),
    (recovery.CHOICE, ("halt_check", 1, 2), "sos:c:halt_check:1:2"),
    (recovery.RATE, ("ride_the_wave", 3, 7), "sos:r:ride_the_wave:3:7"),
    (recovery.FOLLOWUP, (41, 5), "sos:f:41:5"),
    (recovery.PLAN_MENU, (), "pl:menu"),
    (recovery.PLAN_SHOW, (), "pl:show"),
    (recovery.PLAN_CANCEL, (), "pl:cancel"),
    (recovery.PLAN_SECTION, ("people",), "pl:s:people"),
    (recovery.PLAN_KEEP, ("coping",), "pl:k:coping"),
    (recovery.PLAN_ADD, ("triggers",), "pl:add:triggers"),
    (recovery.PLAN_EDIT, (8,), "pl:e:8"),
    (recovery.PLAN_REMOVE, (8,), "pl:d:8"),
    (recovery.PLAN_REMOVE_YES, (8,), "pl:dy:8"),
]


@pytest.mark.parametrize(("codec", "values", "data"), WIRE, ids=[w[2] for w in WIRE])
def test_the_wire_format_is_the_one_buttons_already_carry(codec: Codec, values: tuple[object, ...], data: str) -> None:
    assert codec.pack(*values) == data
    family = next(f for f in FAMILIES if f.prefix == codec.prefix)
    assert family.parse(data) == Pressed(codec, values)


def test_every_codec_has_a_wire_example() -> None:
    shown = {id(w[0]) for w in WIRE}
    assert [_name(c) for c in CODECS if id(c) not in shown] == []


def test_a_safety_answer_with_a_category_no_longer_known_still_parses() -> None:
    # The handler gives the default crisis resources for it, never "expired".
    assert safety.SAFETY.parse("sf:y:5:renamed_category") == Pressed(safety.YES, (5, "renamed_category"))


def test_the_content_fits_its_buttons() -> None:
    """Every check-in and questionnaire item, option and exercise of the content packs."""
    for path in sorted((CONTENT / "en" / "instruments").glob("*.yaml")):
        inst = yaml.safe_load(path.read_text())
        for item in inst["items"]:
            for option in item.get("options") or ():
                checkins.ANSWER.pack(item["id"], str(option["value"]))
                checkins.TOGGLE.pack(item["id"], str(option["value"]))
                assessments.ANSWER.pack(inst["id"], item["id"], str(option["value"]))
            checkins.SKIP.pack(item["id"])
    rules = yaml.safe_load((CONTENT / "rules" / "assessments.yaml").read_text())
    for name, spec in (rules.get("instruments") or {}).items():
        for q in (spec.get("suicide_followup") or {}).get("questions") or ():
            assessments.FOLLOWUP.pack(name, q["id"], "y")
    for ex in yaml.safe_load((CONTENT / "en" / "exercises.yaml").read_text())["exercises"]:
        recovery.RATE.pack(ex["id"], len(ex.get("steps") or ()), 10)
