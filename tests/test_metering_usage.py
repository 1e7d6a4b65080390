"""The provider-neutral Usage record and its helpers."""

from __future__ import annotations

import json

import pytest
from visionality.metering.usage import Notes, Usage, as_count, tail_usage_object


@pytest.mark.parametrize(("value", "want"), [(5, 5), (0, 0), (-3, 0), (None, 0), (True, 0), ("7", 0), (2.5, 0)])
def test_as_count(value: object, want: int) -> None:
    assert as_count(value) == want


def test_copy_is_independent() -> None:
    u = Usage(1, 2, 3, 4, 5, "m", True, 1)
    c = u.copy()
    assert c == u and c is not u
    c.input_tokens = 99
    assert u.input_tokens == 1


def test_tail_usage_object_finds_last_usage() -> None:
    doc = {"usage": {"a": 1}, "response": {"output": "x" * 100, "usage": {"input_tokens": 3, "d": {"k": 1}}}}
    text = json.dumps(doc)
    assert tail_usage_object(text) == {"input_tokens": 3, "d": {"k": 1}}
    # Works on a tail that starts mid-string.
    assert tail_usage_object(text[40:]) == {"input_tokens": 3, "d": {"k": 1}}
    assert tail_usage_object('"usage": null, "x": 1') is None
    assert tail_usage_object("no usage here") is None
    assert tail_usage_object('"usage": {"broken": ') is None


def test_notes_keep_first_parse_error_and_truncate() -> None:
    n = Notes()
    n.parse("first")
    n.parse("second")
    assert n.parse_error == "first"
    n.upstream("x" * 1000)
    assert n.upstream_error is not None and len(n.upstream_error) == 300
