"""`json_value` (the review export's JSON columns read by orjson) gives what json.loads gives, including the texts
orjson refuses or would read otherwise: NaN and Infinity (SQLite's JSON columns hold what json.dumps wrote),
lone surrogates, numbers out of a double's range, and integers beyond 64 bits (orjson rounds them to floats)."""

from __future__ import annotations

import json
import math

import pytest

from storage.review import json_value

TEXTS = [
    '{"a": 1, "b": [1.5, -0.0, "x"], "c": null, "d": true}',
    '{"a": 1, "a": 2}',
    '{"total": NaN, "x": Infinity, "y": -Infinity}',
    '"\\ud800 lone"',
    "1e400",
    f'{{"n": {2**70}, "m": -{2**64}, "k": {2**63 - 1}, "f": 0.1234567890123456789}}',
    '"1234567890123456789012345 in a string"',
    '{"naïve": "ünïcode ✓ \\u00e9"}',
    "[]",
    "null",
]


@pytest.mark.parametrize("text", TEXTS)
def test_json_value_reads_as_json_loads(text: str) -> None:
    got, want = json_value(text), json.loads(text)
    assert repr(got) == repr(want)  # repr: NaN equals nothing, and 1 == 1.0
    if isinstance(want, dict) and isinstance(want.get("n"), int):
        assert type(got["n"]) is int


def test_json_value_of_sql_null_is_none() -> None:
    assert json_value(None) is None
    assert math.isinf(json_value("1e400"))
