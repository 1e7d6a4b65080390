"""Anthropic metering: message_start input counts, CUMULATIVE message_delta usage, gzip SSE, aborts, errors."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

from visionality.metering import Usage, body_usage, stream_meter

from tests.fakeprovider import render_body

MSGS = [{"role": "user", "content": "Write a haiku about metering."}]
BODY: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": MSGS, "stream": True}


def _meter(data: bytes, cuts: list[int], encoding: str | None = None) -> tuple[bytes, Any]:
    m = stream_meter("anthropic", "messages", content_encoding=encoding, strip_injected_usage=False)
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out = b"".join(m.feed(p) for p in pieces) + m.feed(b"")
    return out, m


def _want(u: dict[str, int]) -> Usage:
    return Usage(
        input_tokens=u["input_tokens"],
        output_tokens=u["output_tokens"],
        cached_tokens=u["cached_tokens"],
        cache_write_tokens=u["cache_write_tokens"],
        reasoning_tokens=0,
        model="claude-sonnet-4-5-20250929",
        complete=True,
    )


def test_every_split_point_with_cache_counts() -> None:
    data, u = render_body(
        "messages",
        BODY,
        {"x-fake-cached-tokens": "2", "x-fake-cache-write-tokens": "1", "x-fake-output-tokens": "6"},
    )
    want = _want(u)
    # input_tokens = uncached + cache reads + cache writes (Anthropic reports them apart)
    assert want.input_tokens == u["input_tokens"]
    for i in range(len(data) + 1):
        out, m = _meter(data, [i] if 0 < i < len(data) else [])
        assert out == data
        assert m.finish() == want, i


def test_cumulative_message_deltas_are_not_summed() -> None:
    data, u = render_body("messages", BODY, {"x-fake-message-deltas": "4", "x-fake-output-tokens": "12"})
    assert data.count(b"event: message_delta") == 4
    _, m = _meter(data, [])
    assert m.finish().output_tokens == 12  # the sum of the four would be 30


def test_gzip_sse_random_splits_client_gets_original_bytes() -> None:
    data, u = render_body("messages", BODY, {"x-fake-output-tokens": "20"})
    # Compress the way a server streams: one sync flush per event.
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    wire = b"".join(c.compress(ev + b"\n\n") + c.flush(zlib.Z_SYNC_FLUSH) for ev in data.split(b"\n\n")[:-1])
    wire += c.flush()
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(wire)), rng.randint(1, 25)))
        out, m = _meter(wire, cuts, "gzip")
        assert out == wire  # untouched, still compressed
        assert m.finish() == _want(u)


def test_abort_after_message_start_and_some_deltas() -> None:
    data, u = render_body("messages", BODY, {"x-fake-message-deltas": "3", "x-fake-output-tokens": "9"})
    # Cut right after the second cumulative message_delta.
    second = data.index(b"event: message_delta", data.index(b"event: message_delta") + 1)
    cut = data.index(b"\n\n", second) + 2
    _, m = _meter(data[:cut], [cut // 2])
    got = m.finish()
    assert got.input_tokens == u["input_tokens"]
    assert got.output_tokens == 6  # latest cumulative value seen (9 * 2 // 3)
    assert not got.complete


def test_abort_right_after_message_start() -> None:
    data, u = render_body("messages", BODY)
    cut = data.index(b"\n\n") + 2
    _, m = _meter(data[:cut], [])
    got = m.finish()
    assert got.input_tokens == u["input_tokens"] and got.output_tokens == 1 and not got.complete


def test_mid_stream_error_event() -> None:
    data, _ = render_body("messages", BODY)
    cut = data.index(b"event: content_block_stop")
    err = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    _, m = _meter(data[:cut] + err, [])
    assert m.upstream_error == "overloaded_error: Overloaded"
    assert not m.finish().complete


# Literal stream modelled on Anthropic's streaming docs ("Basic streaming request"), with newer fields:
# cache counts, the 1h cache-creation breakdown, thinking tokens, input counts repeated on message_delta.
LITERAL = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-opus-4-1-20250805","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"cache_read_input_tokens":300,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40},"output_tokens":1}}}\n'
    b"\n"
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n'
    b"\n"
    b"event: ping\n"
    b'data: {"type": "ping"}\n'
    b"\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n'
    b"\n"
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n'
    b"\n"
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"cache_read_input_tokens":300,'
    b'"output_tokens":15,"output_tokens_details":{"thinking_tokens":4}}}\n'
    b"\n"
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n'
    b"\n"
)


def test_literal_stream_with_cache_and_thinking() -> None:
    _, m = _meter(LITERAL.replace(b"\n", b"\r\n"), [17, 400, 401])
    got = m.finish()
    assert got == Usage(
        input_tokens=425,
        output_tokens=15,
        cached_tokens=300,
        cache_write_tokens=100,
        reasoning_tokens=4,
        model="claude-opus-4-1-20250805",
        complete=True,
        cache_write_1h_tokens=40,
    )


def test_body_usage_nonstream_and_gzip() -> None:
    raw, u = render_body(
        "messages", {**BODY, "stream": False}, {"x-fake-cached-tokens": "3", "x-fake-output-tokens": "7"}
    )
    want = _want(u)
    assert body_usage("anthropic", "messages", raw, None) == want
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    enc = gz.compress(raw) + gz.flush()
    assert body_usage("anthropic", "messages", enc, "gzip") == want
    # mitmproxy usually hands over decoded content while the header still says gzip.
    assert body_usage("anthropic", "messages", raw, "gzip") == want


def test_body_usage_error_body() -> None:
    err = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).encode()
    assert body_usage("anthropic", "messages", err, None) == Usage()


def test_body_usage_of_a_whole_sse_body() -> None:
    data, u = render_body("messages", BODY)
    assert body_usage("anthropic", "messages", data, None) == _want(u)


def test_message_delta_with_zero_input_does_not_wipe_message_start_counts() -> None:
    """Some servers send input_tokens: 0 on message_delta (envoyproxy/ai-gateway #1631)."""
    start = {
        "type": "message_start",
        "message": {
            "model": "claude-haiku-4-5",
            "usage": {
                "input_tokens": 40,
                "cache_read_input_tokens": 10,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 0, "cache_read_input_tokens": None, "output_tokens": 30},
    }
    data = (
        b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n"
        b"event: message_delta\ndata: " + json.dumps(delta).encode() + b"\n\n"
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    _, m = _meter(data, [])
    got = m.finish()
    assert (got.input_tokens, got.cached_tokens, got.output_tokens, got.complete) == (50, 10, 30, True)
