"""What in a request body is scanned (appliance/pii/request_body.py)."""

from __future__ import annotations

import base64
import json

import pytest
from visionality.errors import PiiScanError
from visionality.pii.request_body import MAX_DEPTH, iter_request_texts

PNG = base64.b64encode(bytes(range(256)) * 4).decode()


def texts(body: object) -> list[str]:
    return list(iter_request_texts(body))


def test_every_string_and_key_of_a_chat_request() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "sys-text"},
            {"role": "user", "content": [{"type": "text", "text": "part-text"}]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": "arg-text"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "tool-result"},
        ],
        "metadata": {"user-key": "meta-value"},
    }
    got = texts(body)
    for expected in ("sys-text", "part-text", '{"a": "arg-text"}', "tool-result", "user-key", "meta-value"):
        assert expected in got


def test_anthropic_blocks_and_tool_use_input() -> None:
    body = {
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "content": [{"type": "text", "text": "res"}]}]},
            {"role": "assistant", "content": [{"type": "tool_use", "input": {"email": "in-value"}}]},
            {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "doc-text"}}]},
        ],
    }
    got = texts(body)
    assert {"sys", "res", "in-value", "doc-text"} <= set(got)


def test_binary_payloads_are_skipped_but_nothing_else() -> None:
    body = {
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
        "input_audio": {"data": PNG, "format": "wav"},
        "source": {"type": "base64", "media_type": "application/pdf", "data": PNG},
        "data": "short text is text",
        "note": PNG,  # base64-looking but under an ordinary key: scanned
    }
    got = texts(body)
    assert got.count(PNG) == 1 and "short text is text" in got
    assert not any(t.startswith("data:image") for t in got)


def test_responses_and_embeddings_inputs() -> None:
    assert "hello" in texts({"input": "hello", "instructions": "be brief"})
    assert texts({"input": [[1, 2, 3], [4]]}) == ["input"]  # token ids are not text
    assert "4111111111111111" in texts({"metadata": {"card": 4111111111111111}})


def test_bytes_bodies_and_failures_fail_closed() -> None:
    assert texts(b'{"not": "parsed"}') == ['{"not": "parsed"}']
    with pytest.raises(PiiScanError, match="UTF-8"):
        texts(b"\xff\xfe")
    with pytest.raises(PiiScanError, match="unsupported value type"):
        texts({"x": {1, 2}})
    with pytest.raises(PiiScanError, match="key type"):
        texts({1: "x"})
    deep: object = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(PiiScanError, match="nested"):
        texts(deep)


def test_attack_json_key_separated_from_its_value() -> None:
    """Keys used to come first and values later (a LIFO stack), so the "ssn" label was far from its value."""
    body = {"input": {"ssn": "536221234", "notes": "n" * 150, "routing_number": 11000015}}
    assert texts(body) == ["input", "ssn", "536221234", "notes", "n" * 150, "routing_number", "11000015"]


def test_attack_number_sent_as_float_or_negative() -> None:
    assert texts({"c": 5425233430109903.0}) == ["c", "5425233430109903"]
    assert texts({"c": 5.425233430109903e15}) == ["c", "5425233430109903"]
    assert texts({"c": -5425233430109903}) == ["c", "5425233430109903"]
    assert texts({"c": 3.25, "d": 1e308, "e": 12.0}) == ["c", "d", "e"]  # fractions, huge, small: not identifiers


def test_attack_json_escapes_inside_a_string_value() -> None:
    assert texts({"arguments": '{"e":"bob\\u0040acme.io"}'}) == ["arguments", "e", "bob@acme.io"]
    assert texts({"arguments": '{"c":"\\u0035425"}'}) == ["arguments", "c", "5425"]
    # Without escapes the JSON text is scanned as it is (keys next to values), plus its floats' digits.
    assert texts({"arguments": '{"c": 5.425233430109903e15}'}) == [
        "arguments",
        '{"c": 5.425233430109903e15}',
        "5425233430109903",
    ]
    assert texts({"note": "[not json"}) == ["note", "[not json"]


def test_attack_pathological_json_in_strings_fails_closed() -> None:
    nested = "[]"
    for _ in range(10):
        nested = json.dumps([nested])
    with pytest.raises(PiiScanError, match="inside strings"):
        texts({"arguments": nested})
    with pytest.raises(PiiScanError, match="too deeply|nested deeper"):
        texts({"arguments": "[" * 100_000 + "]" * 100_000})
