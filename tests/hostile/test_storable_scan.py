"""The byte scan that spares the Alertmanager intake walking every string of a payload
(`json_may_hold_unstorable`) never misses what the walk (`unstorable`) would refuse, in any
encoding `json.loads` reads from bytes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.storable import json_may_hold_unstorable, unstorable

# Any code point, lone surrogates and NUL included, in keys and values.
TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12)
ENCODINGS = st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32-be"])


@settings(max_examples=400)
@given(value=st.dictionaries(TEXT, VALUES, max_size=4), ascii_only=st.booleans(),
       encoding=ENCODINGS)
def test_the_scan_never_misses_what_the_walk_refuses(value: dict[str, object], ascii_only: bool,
                                                     encoding: str) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    body = text.encode(encoding, errors="surrogatepass")
    assert json.loads(body) == value  # what the intake parses is what was sent
    if unstorable(value) is not None:
        assert json_may_hold_unstorable(body)


def test_an_ordinary_payload_is_not_walked() -> None:
    payload = {"version": "4", "alerts": [{"labels": {"alertname": "KubePodCrashLooping",
                                                      "pod": "shop-api-1", "note": "caf\u00e9"}}]}
    for ascii_only in (True, False):
        assert not json_may_hold_unstorable(json.dumps(payload, ensure_ascii=ascii_only).encode())
