"""OpenAI metering: chat streams (with the injected include_usage chunk stripped), Responses, embeddings.

Streams come from the fake provider's renderer (the same bytes it serves, which the official SDK parses in
test_fakeprovider.py) plus literal streams written from OpenAI's API reference.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx2
import openai
import pytest
from visionality.metering import Usage, body_usage, inject_stream_usage, stream_meter

from tests.fakeprovider import render_body

MSGS = [{"role": "user", "content": "Count to five in French, please."}]


def _chat_stream(headers: dict[str, str] | None = None, include_usage: bool = True) -> tuple[bytes, dict[str, int]]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return render_body("chat.completions", body, headers)


def _feed_all(data: bytes, cuts: list[int], *, strip: bool, endpoint: str = "chat.completions") -> tuple[bytes, Any]:
    m = stream_meter("openai", endpoint, content_encoding=None, strip_injected_usage=strip)
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out = b"".join(m.feed(p) for p in pieces) + m.feed(b"")
    return out, m


def _expected(u: dict[str, int], model: str) -> Usage:
    return Usage(
        input_tokens=u["input_tokens"],
        output_tokens=u["output_tokens"],
        cached_tokens=u["cached_tokens"],
        cache_write_tokens=u["cache_write_tokens"],
        reasoning_tokens=u["reasoning_tokens"],
        model=model,
        complete=True,
    )


def _sse_payloads(data: bytes) -> list[str]:
    return [
        line[6:] for block in data.decode().split("\n\n") for line in block.split("\n") if line.startswith("data: ")
    ]


def test_chat_stream_usage_every_split_point() -> None:
    data, u = _chat_stream({"x-fake-cached-tokens": "3", "x-fake-reasoning-tokens": "2"})
    want = _expected(u, "gpt-4o-mini-2024-07-18")
    for i in range(len(data) + 1):
        out, m = _feed_all(data, [i] if 0 < i < len(data) else [], strip=False)
        assert out == data
        assert m.finish() == want, i


def test_chat_stream_random_multi_splits_with_stripping() -> None:
    data, u = _chat_stream()
    rng = random.Random(7)
    reference, _ = _feed_all(data, [], strip=True)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 60)))
        out, m = _feed_all(data, cuts, strip=True)
        assert out == reference
        assert m.finish().output_tokens == u["output_tokens"]


def test_strip_removes_only_the_usage_chunk_byte_for_byte() -> None:
    data, u = _chat_stream()
    out, m = _feed_all(data, [], strip=True)
    events = data.split(b"\n\n")
    usage_events = [e for e in events if b'"choices":[]' in e]
    assert len(usage_events) == 1
    assert out == data.replace(usage_events[0] + b"\n\n", b"")
    payloads = _sse_payloads(out)
    assert payloads[-1] == "[DONE]"
    assert all(json.loads(p)["choices"] for p in payloads[:-1])
    assert m.finish().input_tokens == u["input_tokens"] and m.finish().complete


def test_no_strip_passes_usage_chunk() -> None:
    data, _ = _chat_stream()
    out, _m = _feed_all(data, [100, 200], strip=False)
    assert out == data


def _sdk_chunks(wire: bytes) -> list[Any]:
    """Run bytes through the official SDK's stream parser, as a client behind the appliance would."""

    # openai-python 3.x is built on httpx2 (openai/_base_client.py), so the mock transport comes from there.
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=wire)

    client = openai.OpenAI(
        api_key="sk-x", base_url="http://fake/v1", http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    return list(client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))  # type: ignore[arg-type]


def test_stripped_stream_parses_in_the_sdk_and_client_code_sees_choices() -> None:
    """The client did not ask for usage; the appliance injected it; chunk.choices[0] must work on every chunk."""
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS, "stream": True}
    assert inject_stream_usage(body) and body["stream_options"] == {"include_usage": True}
    data, u = render_body("chat.completions", body)
    rng = random.Random(3)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    out, m = _feed_all(data, cuts, strip=True)
    chunks = _sdk_chunks(out)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)  # would IndexError on the usage chunk
    assert len(text.split()) == u["output_tokens"]
    assert m.finish() == _expected(u, "gpt-4o-mini-2024-07-18")


def test_sdk_sees_usage_chunk_when_client_asked() -> None:
    data, u = _chat_stream()
    out, _ = _feed_all(data, [50], strip=False)
    chunks = _sdk_chunks(out)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == u["output_tokens"]


def test_crlf_stream_stripped_and_parsed() -> None:
    data, _ = _chat_stream()
    crlf = data.replace(b"\n", b"\r\n")
    for cut in range(0, len(crlf), 97):
        out, m = _feed_all(crlf, [cut] if cut else [], strip=True)
        assert b'"choices":[]' not in out
        assert len(_sdk_chunks(out)) == 18
        assert m.finish().complete


def test_abort_before_usage_chunk() -> None:
    data, _ = _chat_stream()
    m = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=True)
    m.feed(data[: len(data) // 2])
    got = m.finish()
    assert not got.complete and got.model == "gpt-4o-mini-2024-07-18" and got.output_tokens == 0
    assert m.first_byte_at is not None


def test_malformed_event_is_noted_and_rest_metered() -> None:
    data, u = _chat_stream()
    bad = b"data: {not json\n\n" + data
    out, m = _feed_all(bad, [5, 300], strip=True)
    assert out.startswith(b"data: {not json\n\n")
    assert m.finish().output_tokens == u["output_tokens"]
    assert m.parse_error is not None and "malformed" in m.parse_error


def test_mid_stream_error_event_noted() -> None:
    err = b'data: {"error":{"message":"The server had an error","type":"server_error","code":null}}\n\n'
    out, m = _feed_all(err, [], strip=True)
    assert out == err
    assert m.upstream_error is not None and "server_error" in m.upstream_error


# A chat stream as in OpenAI's API reference ("The chat completion chunk object"), include_usage on.
LITERAL_CHAT = (
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    b'"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    b'"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,'
    b'"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    b'"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,'
    b'"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    b'"system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,'
    b'"total_tokens":29,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":3,"audio_tokens":0,"accepted_prediction_tokens":0,'
    b'"rejected_prediction_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)


def test_literal_reference_stream() -> None:
    out, m = _feed_all(LITERAL_CHAT, [], strip=False)
    assert m.finish() == Usage(19, 10, 4, 0, 3, "gpt-4o-mini", True)


# --- Responses API ----------------------------------------------------------------------------------


def test_responses_stream_every_split_point() -> None:
    data, u = render_body(
        "responses",
        {"model": "gpt-4o-mini", "input": "hello there", "stream": True},
        {"x-fake-output-tokens": "3", "x-fake-cached-tokens": "1", "x-fake-reasoning-tokens": "1"},
    )
    want = _expected(u, "gpt-4o-mini-2024-07-18")
    for i in range(len(data) + 1):
        out, m = _feed_all(data, [i] if 0 < i < len(data) else [], strip=True, endpoint="responses")
        assert out == data  # never filtered: only chat streams get an injected chunk
        assert m.finish() == want, i


def test_responses_abort_before_completed() -> None:
    data, _ = render_body("responses", {"model": "gpt-4o-mini", "input": "x", "stream": True})
    cut = data.index(b"event: response.completed")
    _, m = _feed_all(data[:cut], [], strip=False, endpoint="responses")
    got = m.finish()
    assert got.model == "gpt-4o-mini-2024-07-18" and not got.complete and got.input_tokens == 0


def test_responses_huge_completed_event_still_metered() -> None:
    text = "word " * 1_200_000  # ~6 MB of output text repeated in response.completed
    completed = {
        "type": "response.completed",
        "sequence_number": 9,
        "response": {
            "id": "resp_1",
            "object": "response",
            "model": "gpt-4.1",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}],
            "usage": {
                "input_tokens": 11,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 1_200_000,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 1_200_011,
            },
            "metadata": {},
        },
    }
    data = b"event: response.completed\ndata: " + json.dumps(completed).encode() + b"\n\n"
    cuts = list(range(65536, len(data), 65536))
    _, m = _feed_all(data, cuts, strip=False, endpoint="responses")
    got = m.finish()
    assert (got.input_tokens, got.output_tokens, got.complete) == (11, 1_200_000, True)
    assert m.parse_error is not None and "cap" in m.parse_error


def test_responses_failed_and_error_events() -> None:
    failed = {
        "type": "response.failed",
        "sequence_number": 3,
        "response": {
            "model": "gpt-4o",
            "status": "failed",
            "error": {"code": "server_error", "message": "boom"},
            "usage": {"input_tokens": 7, "output_tokens": 2},
        },
    }
    data = b"event: response.failed\ndata: " + json.dumps(failed).encode() + b"\n\n"
    _, m = _feed_all(data, [], strip=False, endpoint="responses")
    assert m.finish().input_tokens == 7 and m.upstream_error is not None
    err = b'event: error\ndata: {"type":"error","code":"rate_limit_exceeded","message":"slow down"}\n\n'
    _, m2 = _feed_all(err, [], strip=False, endpoint="responses")
    assert m2.upstream_error is not None and "slow down" in m2.upstream_error


# --- non-stream bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("chat.completions", {"model": "gpt-4o", "messages": MSGS, "max_tokens": 9}),
        ("responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 4}),
        ("embeddings", {"model": "text-embedding-3-small", "input": ["a", "bb", "ccc"]}),
    ],
)
def test_body_usage(endpoint: str, body: dict[str, Any]) -> None:
    raw, u = render_body(endpoint, body, {"x-fake-cached-tokens": "1"})
    got = body_usage("openai", endpoint, raw, None)
    assert (got.input_tokens, got.output_tokens, got.complete) == (u["input_tokens"], u["output_tokens"], True)
    if endpoint != "embeddings":
        assert got.cached_tokens == 1
    assert got.model is not None


def test_body_usage_error_body() -> None:
    err = b'{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}'
    assert body_usage("openai", "chat.completions", err, None) == Usage()


# --- include_usage injection ------------------------------------------------------------------------


def test_inject_stream_usage_cases() -> None:
    b1: dict[str, Any] = {"stream": True}
    assert inject_stream_usage(b1) and b1["stream_options"] == {"include_usage": True}
    b2: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    assert not inject_stream_usage(b2)
    b3: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": False, "other": 1}}
    assert inject_stream_usage(b3) and b3["stream_options"] == {"include_usage": True, "other": 1}
    b4: dict[str, Any] = {"stream": True, "stream_options": None}
    assert inject_stream_usage(b4) and b4["stream_options"] == {"include_usage": True}
    assert not inject_stream_usage({"stream": False})
    assert not inject_stream_usage({})
    assert not inject_stream_usage({"stream": True, "stream_options": "junk"})


def test_generated_text_cannot_fake_a_usage_chunk() -> None:
    """The fast path keys on "usage":null; quotes in generated text are escaped, so content can't spoof it."""
    fake_text = '"usage":{"prompt_tokens":999999,"completion_tokens":999999}, "choices":[] "error"'
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": fake_text}, "finish_reason": None}],
        "usage": None,
    }
    data = LITERAL_CHAT.replace(b"data: [DONE]", b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]")
    out, m = _feed_all(data, [], strip=True)
    got = m.finish()
    assert (got.input_tokens, got.output_tokens) == (19, 10)
    assert json.dumps(chunk).encode() in out
