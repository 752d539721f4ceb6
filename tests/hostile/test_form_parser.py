"""The slash-command form parser (`bot.slack.inbound.form_pairs`, taken for its speed on the
ack's path) reads every text exactly as `urllib.parse.parse_qsl` does with opsbot's strict
options: the same pairs, or a refusal where parse_qsl raises."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.inbound import MAX_FORM_FIELDS, form_pairs

# Text rich in what a form parser must get right: separators, escapes (good, truncated and
# not UTF-8), plus signs, and any other character.
PIECES = st.sampled_from(["&", "=", "+", "%", "%2", "%20", "%3D", "%26", "%2B", "%ff", "%C3%A9",
                          "%e9", "%ED%A0%80", "a", "b", "text", ";", " ", "\u00e9", ""])
TEXTS = st.lists(PIECES | st.text(max_size=3), max_size=40).map("".join)


def _same(text: str) -> None:
    try:
        expected: object = parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                                     errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except (ValueError, UnicodeDecodeError) as exc:
        expected = type(exc).__name__ if isinstance(exc, UnicodeDecodeError) else "ValueError"
    try:
        found: object = form_pairs(text)
    except (ValueError, UnicodeDecodeError) as exc:
        found = type(exc).__name__ if isinstance(exc, UnicodeDecodeError) else "ValueError"
    assert found == expected, text


@settings(max_examples=600)
@given(text=TEXTS)
def test_any_text_reads_as_parse_qsl_reads_it(text: str) -> None:
    _same(text)


@settings(max_examples=200)
@given(fields=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=20)), min_size=1,
                       max_size=MAX_FORM_FIELDS + 2))
def test_any_encoded_form_reads_as_parse_qsl_reads_it(fields: list[tuple[str, str]]) -> None:
    text = "&".join(f"{quote_plus(k, errors='surrogatepass')}="
                    f"{quote_plus(v, errors='surrogatepass')}" for k, v in fields)
    _same(text)


@pytest.mark.parametrize("text", [
    "", "&", "a", "a=1&", "&a=1", "a=1&&b=2", "a==1", "=", "=1", "a=%", "a=%zz", "a=%ff",
    "a=%C3%A9+%2B+", "a=1;b=2", "&".join(["a=1"] * MAX_FORM_FIELDS),
    "&".join(["a=1"] * (MAX_FORM_FIELDS + 1)),
])
def test_the_edges_read_as_parse_qsl_reads_them(text: str) -> None:
    _same(text)
