from hypothesis import given
from hypothesis import strategies as st

from bot.platform.text import MESSAGE_LIMIT, pack, split_text


def test_short_text_is_one_message():
    assert split_text("hello") == ["hello"]


def test_long_text_splits_at_paragraphs_first():
    paras = [f"p{i} " * 300 for i in range(6)]
    parts = split_text("\n\n".join(paras))
    assert len(parts) > 1
    assert all(len(p) <= MESSAGE_LIMIT for p in parts)
    assert all(not p.startswith("\n") for p in parts)


@given(st.text(alphabet=st.sampled_from("ab \n"), max_size=20000), st.integers(min_value=50, max_value=4000))
def test_every_part_fits_and_nothing_is_lost(text, limit):
    parts = split_text(text, limit=limit)
    assert all(len(p) <= limit for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_pack_joins_small_blocks():
    assert pack(["a", "b"], limit=10) == ["a\n\nb"]
