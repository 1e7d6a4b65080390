"""StreamMeter's contract with the mitmproxy stream callable: never raise, never buffer, bounded memory."""

from __future__ import annotations

import gzip
import random
import zlib
from typing import Any

import pytest
from visionality.metering import MAX_HELD, StreamMeter, Usage, body_usage, stream_meter, upstream_request_id
from visionality.metering.sse import SSEEvent
from visionality.metering.usage import Notes

from tests.fakeprovider import render_body

CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_passthrough_returns_same_bytes_and_sets_first_byte() -> None:
    m = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=False)
    assert m.first_byte_at is None
    assert m.feed(b"") == b""  # an empty feed is the end-of-body flush, not a first byte
    assert m.first_byte_at is None
    m2 = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=False)
    chunk = b"data: {}\n\n"
    assert m2.feed(chunk) is chunk
    assert m2.first_byte_at is not None


@pytest.mark.parametrize(
    "garbage",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"error":{"message":"upstream broke","type":"server_error"}}',
        bytes(range(256)) * 10,
        b"data: \xff\xfe\x00 not utf8 {{{\n\n",
        b"event: message_start\ndata: [1,2,3]\n\n",
    ],
)
@pytest.mark.parametrize(
    ("provider", "endpoint", "strip"),
    [("openai", "chat.completions", True), ("openai", "responses", False), ("anthropic", "messages", False)],
)
def test_garbage_never_raises(garbage: bytes, provider: str, endpoint: str, strip: bool) -> None:
    m = stream_meter(provider, endpoint, content_encoding=None, strip_injected_usage=strip)
    out = b"".join(m.feed(garbage[i : i + 13]) for i in range(0, len(garbage), 13)) + m.feed(b"")
    assert out == garbage  # nothing lost, even when filtering
    assert not m.finish().complete


def test_corrupt_gzip_passes_through_and_is_noted() -> None:
    m = stream_meter("anthropic", "messages", content_encoding="gzip", strip_injected_usage=False)
    junk = b"\x1f\x8b\x08\x00garbage-not-deflate" * 5
    assert m.feed(junk) == junk
    assert m.feed(b"more") == b"more"
    assert m.parse_error is not None and "decode" in m.parse_error
    assert m.finish() == Usage()


def test_unsupported_encoding_passes_through() -> None:
    m = stream_meter("openai", "chat.completions", content_encoding="compress", strip_injected_usage=True)
    assert m.feed(b"abc") == b"abc"
    assert m.parse_error is not None


def test_encoded_stream_with_injected_usage_is_not_filtered_but_metered() -> None:
    data, u = render_body("chat.completions", CHAT)
    enc = gzip.compress(data)
    m = stream_meter("openai", "chat.completions", content_encoding="gzip", strip_injected_usage=True)
    out = b"".join(m.feed(enc[i : i + 50]) for i in range(0, len(enc), 50)) + m.feed(b"")
    assert out == enc
    assert m.finish().output_tokens == u["output_tokens"]
    assert m.parse_error is not None and "unfiltered" in m.parse_error


def test_filter_holds_only_partial_events_and_flushes_at_end() -> None:
    m = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=True)
    assert m.feed(b'data: {"choices":[{"index":0}]') == b""  # partial event held
    assert m.feed(b"}\n\ndata: [DO") == b'data: {"choices":[{"index":0}]}\n\n'
    # End of body (mitmproxy calls the stream callable with b""): the unterminated tail is released.
    assert m.feed(b"NE]") == b""
    assert m.feed(b"") == b"data: [DONE]"


def test_filter_gives_up_past_max_held() -> None:
    m = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=True)
    big = b"data: " + b"x" * 4096
    sent = m.feed(big)
    total = len(sent)
    while total == 0:
        sent = m.feed(b"y" * 65536)
        total += len(sent)
    # Released everything held so far once over the cap, then passes through.
    assert total > MAX_HELD
    assert m.feed(b"zz") == b"zz"
    assert m.parse_error is not None and "filtering stopped" in m.parse_error
    # Metering goes on after filtering stopped: a later usage chunk still counts (and now reaches the client).
    usage_chunk = b'\n\ndata: {"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}\n\n'
    assert m.feed(usage_chunk) == usage_chunk
    got = m.finish()
    assert (got.input_tokens, got.output_tokens, got.complete) == (5, 6, True)


def test_handler_bug_never_loses_bytes() -> None:
    def broken(event: SSEEvent, usage: Usage, notes: Notes) -> bool:
        raise TypeError("bug")

    m = StreamMeter(broken, None, strip_injected_usage=True)
    data = b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    out = b"".join(m.feed(data[i : i + 3]) for i in range(0, len(data), 3)) + m.feed(b"")
    assert out == data
    assert m.parse_error is not None and "TypeError" in m.parse_error


def test_finish_is_idempotent_and_feed_after_finish_passes() -> None:
    data, u = render_body("chat.completions", CHAT)
    m = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=False)
    m.feed(data)
    a = m.finish()
    b = m.finish()
    assert a == b and a.output_tokens == u["output_tokens"]
    a.output_tokens = 0
    assert m.finish().output_tokens == u["output_tokens"]  # a copy was returned
    assert m.feed(b"late") == b"late"


def test_memory_flat_over_a_long_stream() -> None:
    """A stream of 100k events keeps no history: the held buffer and parser state stay small."""
    m = stream_meter("openai", "chat.completions", content_encoding=None, strip_injected_usage=True)
    ev = b'data: {"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\n'
    rng = random.Random(1)
    buf = ev * 1000
    for _ in range(100):
        cut = rng.randint(1, len(buf) - 1)
        m.feed(buf[:cut])
        m.feed(buf[cut:])
        assert len(m._held) < len(ev)  # white-box: only a partial event is ever held
    assert m.finish().model == "gpt-4o"


def test_deflate_and_br_streams_metered() -> None:
    import brotli  # type: ignore[import-untyped]

    data, u = render_body("messages", {"model": "claude-haiku-4-5", "max_tokens": 9, "stream": True, "messages": []})
    for coding, enc in (("deflate", zlib.compress(data)), ("br", brotli.compress(data))):
        m = stream_meter("anthropic", "messages", content_encoding=coding, strip_injected_usage=False)
        out = b"".join(m.feed(enc[i : i + 7]) for i in range(0, len(enc), 7)) + m.feed(b"")
        assert out == enc
        assert m.finish().output_tokens == u["output_tokens"] == 9


def test_body_usage_never_raises() -> None:
    assert body_usage("openai", "chat.completions", b"", None) == Usage()
    assert body_usage("openai", "chat.completions", b"not json", "gzip") == Usage()
    assert body_usage("openai", "chat.completions", b"[1,2]", None) == Usage()
    assert body_usage("nope", "x", b"{}", None) == Usage()
    assert body_usage("openai", "chat.completions", b'{"usage": {"prompt_tokens": "7"}}', "br") == Usage(complete=True)


def test_unknown_provider_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        stream_meter("gemini", "x", content_encoding=None, strip_injected_usage=False)


def test_upstream_request_id() -> None:
    assert upstream_request_id("openai", {"X-Request-Id": "req_abc"}) == "req_abc"
    assert upstream_request_id("anthropic", {"request-id": "req_011C", "x-request-id": "other"}) == "req_011C"
    assert upstream_request_id("anthropic", {}) is None


@pytest.mark.parametrize(
    ("endpoint", "events", "content"),
    [
        (
            "chat.completions",
            [
                'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
                'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}',
                'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}',
                'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a"}}]}}]}',
            ],
            3,
        ),
        (
            "messages",
            [
                'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5}}}',
                'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"Hi"}}',
                "event: ping\ndata: {}",
                'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":" there"}}',
            ],
            2,
        ),
        (
            "responses",
            [
                'event: response.created\ndata: {"type":"response.created"}',
                'event: response.output_text.delta\ndata: {"delta":"Hi"}',
                'event: response.function_call_arguments.delta\ndata: {"delta":"{"}',
            ],
            2,
        ),
    ],
)
def test_content_events_are_counted_for_a_stream_cut_off(endpoint: str, events: list[str], content: int) -> None:
    """A stream cut off before the usage event: each content event that passed is at least one output token."""
    provider = "anthropic" if endpoint == "messages" else "openai"
    m = stream_meter(provider, endpoint, content_encoding=None, strip_injected_usage=False)
    m.feed(("\n\n".join(events) + "\n\n").encode())
    usage = m.finish()
    assert m.content_events == content and not usage.complete
