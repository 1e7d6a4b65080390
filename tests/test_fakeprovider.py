"""The fake provider must speak the real wire formats: the official SDKs are the judges."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.fakeprovider import DEFAULT_ANTHROPIC_KEY, DEFAULT_OPENAI_KEY, FakeProvider, input_tokens_for

ROOT = Path(__file__).resolve().parent.parent
MSGS: list[Any] = [{"role": "user", "content": "Say hello to the fake provider, please."}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    fp = FakeProvider().start()
    try:
        yield fp
    finally:
        fp.stop()


@pytest.fixture()
def fp(fake: FakeProvider) -> FakeProvider:
    fake.clear()
    return fake


def _oai(fp: FakeProvider, key: str = DEFAULT_OPENAI_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.url + "/v1", api_key=key, max_retries=0, timeout=10)


def _ant(fp: FakeProvider, key: str = DEFAULT_ANTHROPIC_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.url, api_key=key, max_retries=0, timeout=10)


def test_chat_nonstream_usage_and_dated_model(fp: FakeProvider) -> None:
    r = _oai(fp).chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=5)
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.usage is not None
    assert r.usage.prompt_tokens == input_tokens_for({"messages": MSGS})
    assert r.usage.completion_tokens == 5
    assert r.choices[0].finish_reason == "length"
    rec = fp.requests[-1]
    assert rec["auth"] == f"Bearer {DEFAULT_OPENAI_KEY}" and rec["auth_ok"]
    assert rec["max_tokens"] == 5 and rec["usage"]["output_tokens"] == 5
    assert rec["request_id"].startswith("req_")
    assert "authorization" in rec["header_names"] and rec["body_bytes"] > 0


def test_chat_stream_with_include_usage(fp: FakeProvider) -> None:
    stream = _oai(fp).chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-output-tokens": "7", "x-fake-chunks": "3"},
    )
    chunks = list(stream)
    # role chunk + 3 content chunks + finish chunk + usage chunk
    assert len(chunks) == 6
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 7
    rec = fp.requests[-1]
    assert rec["stream"] and rec["include_usage"] and rec["usage_sent"]


def test_chat_stream_without_include_usage_sends_no_usage(fp: FakeProvider) -> None:
    chunks = list(_oai(fp).chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    rec = fp.requests[-1]
    assert rec["stream"] and not rec["include_usage"] and not rec["usage_sent"]
    assert rec["usage"]["output_tokens"] == 16


def test_chat_stream_request_id_header(fp: FakeProvider) -> None:
    raw = _oai(fp).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
    assert raw.headers["x-request-id"] == fp.requests[-1]["request_id"]
    assert raw.headers["content-type"] == "application/json"


def test_responses_nonstream(fp: FakeProvider) -> None:
    r = _oai(fp).responses.create(
        model="gpt-4o-mini",
        input="hello responses",
        max_output_tokens=4,
        extra_headers={"x-fake-cached-tokens": "2", "x-fake-reasoning-tokens": "1"},
    )
    assert r.usage is not None
    assert r.usage.output_tokens == 4 and r.usage.output_tokens_details.reasoning_tokens == 1
    assert r.usage.input_tokens_details.cached_tokens == 2
    assert len(r.output_text.split()) == 3


def test_responses_stream_event_sequence(fp: FakeProvider) -> None:
    with _oai(fp).responses.stream(model="gpt-4o-mini", input="hello responses") as st:
        kinds = [e.type for e in st]
        final = st.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") == 16
    assert final.usage is not None and final.usage.output_tokens == 16
    assert len(final.output_text.split()) == 16


def test_embeddings_base64_default_and_float(fp: FakeProvider) -> None:
    e = _oai(fp).embeddings.create(model="text-embedding-3-small", input=["one", "two words"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 8
    assert e.usage.prompt_tokens == input_tokens_for({"input": ["one", "two words"]})
    f = _oai(fp).embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float", dimensions=4)
    assert len(f.data[0].embedding) == 4
    assert f.data[0].embedding == pytest.approx(e.data[0].embedding[:4], rel=1e-6)


def test_models_list(fp: FakeProvider) -> None:
    assert "gpt-4o-mini" in [m.id for m in _oai(fp).models.list()]
    assert any(m.id.startswith("claude-") for m in _ant(fp).models.list())


def test_openai_bad_key_401(fp: FakeProvider) -> None:
    with pytest.raises(openai.AuthenticationError) as ei:
        _oai(fp, key="sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert ei.value.code == "invalid_api_key"
    assert fp.requests[-1]["auth"] == "Bearer sk-wrong" and not fp.requests[-1]["auth_ok"]


def test_anthropic_bad_key_401_both_header_styles(fp: FakeProvider) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        _ant(fp, key="sk-ant-wrong").messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MSGS)
    r = httpx.post(
        fp.url + "/v1/messages",
        headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"},
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": MSGS},
    )
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    assert r.headers["request-id"].startswith("req_")
    ok = httpx.post(
        fp.url + "/v1/messages",
        headers={"x-api-key": DEFAULT_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": MSGS},
    )
    assert ok.status_code == 200 and fp.requests[-1]["auth"] == DEFAULT_ANTHROPIC_KEY


def test_anthropic_nonstream(fp: FakeProvider) -> None:
    m = _ant(fp).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=MSGS,
        extra_headers={"x-fake-cached-tokens": "3", "x-fake-cache-write-tokens": "2"},
    )
    total_in = input_tokens_for({"messages": MSGS})
    assert m.model == "claude-sonnet-4-5-20250929"
    # Anthropic's input_tokens excludes cache reads/writes.
    assert m.usage.input_tokens == total_in - 5
    assert m.usage.cache_read_input_tokens == 3 and m.usage.cache_creation_input_tokens == 2
    assert m.usage.output_tokens == 16 and m.stop_reason == "end_turn"


@pytest.mark.parametrize("gz", [False, True])
def test_anthropic_stream_events_and_cumulative_usage(fp: FakeProvider, gz: bool) -> None:
    headers = {"x-fake-message-deltas": "3", "x-fake-output-tokens": "9"}
    if gz:
        headers["x-fake-gzip"] = "1"
    with _ant(fp).messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MSGS, extra_headers=headers
    ) as st:
        kinds = [e.type for e in st]
        final = st.get_final_message()
        encoding = st.response.headers.get("content-encoding")
        request_id = st.request_id
    # The SDK's HTTP client accepts gzip, so x-fake-gzip really compressed what it parsed.
    assert encoding == ("gzip" if gz else None)
    assert request_id == fp.requests[-1]["request_id"]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("message_delta") == 3
    # The SDK overwrites with each cumulative message_delta; the final count is the real one.
    assert final.usage.output_tokens == 9
    assert final.usage.input_tokens == input_tokens_for({"messages": MSGS})
    assert len(final.content[0].text.split()) == 9  # type: ignore[union-attr]


def test_anthropic_gzip_sse_on_the_wire(fp: FakeProvider) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True, "messages": MSGS}
    headers = {
        "x-api-key": DEFAULT_ANTHROPIC_KEY,
        "anthropic-version": "2023-06-01",
        "accept-encoding": "gzip",
        "x-fake-gzip": "1",
    }
    with httpx.stream("POST", fp.url + "/v1/messages", headers=headers, json=body) as r:
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["transfer-encoding"] == "chunked"
        raw = b"".join(r.iter_raw())
    text = gzip.decompress(raw).decode()
    assert text.startswith("event: message_start\n") and "event: ping\n" in text
    # Without Accept-Encoding: gzip the header alone does not compress.
    headers["accept-encoding"] = "identity"
    with httpx.stream("POST", fp.url + "/v1/messages", headers=headers, json=body) as r:
        assert "content-encoding" not in r.headers


def test_forced_status_uses_provider_error_shape(fp: FakeProvider) -> None:
    with pytest.raises(openai.RateLimitError):
        _oai(fp).chat.completions.create(model="gpt-4o-mini", messages=MSGS, extra_headers={"x-fake-status": "429"})
    with pytest.raises(anthropic.InternalServerError) as ei:
        _ant(fp).messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=MSGS, extra_headers={"x-fake-status": "529"}
        )
    assert ei.value.status_code == 529


def test_die_after_truncates_stream(fp: FakeProvider) -> None:
    stream = _oai(fp).chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, stream=True, extra_headers={"x-fake-die-after": "3"}
    )
    got = []
    # openai-python 3.x runs on httpx2; a truncated chunked body surfaces as a connection error.
    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
        for c in stream:
            got.append(c)
    assert len(got) == 3
    assert fp.requests[-1]["died"]


def test_client_disconnect_is_recorded(fp: FakeProvider) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True, "messages": MSGS}
    headers = {
        "x-api-key": DEFAULT_ANTHROPIC_KEY,
        "anthropic-version": "2023-06-01",
        "x-fake-chunk-delay-ms": "30",
        "x-fake-output-tokens": "40",
    }
    with httpx.Client() as c, c.stream("POST", fp.url + "/v1/messages", headers=headers, json=body) as r:
        next(r.iter_raw())
    deadline = time.time() + 5
    while time.time() < deadline and not (fp.requests and fp.requests[-1]["client_disconnected"]):
        time.sleep(0.02)
    assert fp.requests[-1]["client_disconnected"]


def test_delays(fp: FakeProvider) -> None:
    t = time.perf_counter()
    list(
        _oai(fp).chat.completions.create(
            model="gpt-4o-mini",
            messages=MSGS,
            stream=True,
            extra_headers={"x-fake-first-byte-delay-ms": "100", "x-fake-chunk-delay-ms": "20", "x-fake-chunks": "4"},
        )
    )
    assert time.perf_counter() - t >= 0.1 + 3 * 0.02


def test_portkey_sdk(fp: FakeProvider) -> None:
    portkey_ai = pytest.importorskip("portkey_ai")
    client = portkey_ai.Portkey(
        base_url=fp.url + "/v1", provider="openai", Authorization=f"Bearer {DEFAULT_OPENAI_KEY}", max_retries=0
    )
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=3)
    assert r.usage is not None and r.usage.completion_tokens == 3
    assert fp.requests[-1]["headers"].get("x-portkey-provider") == "openai"


def test_cli_process_log_and_control_endpoints(tmp_path: Path) -> None:
    log = tmp_path / "fake.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakeprovider", "--host", "127.0.0.1", "--port", "0", "--log", str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        r = httpx.post(
            url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {DEFAULT_OPENAI_KEY}"},
            json={"model": "gpt-4o-mini", "messages": MSGS},
        )
        assert r.status_code == 200
        recs = httpx.get(url + "/_fake/requests").json()
        assert len(recs) == 1 and recs[0]["request_id"] == r.headers["x-request-id"]
        logged = [json.loads(x) for x in log.read_text().splitlines()]
        assert logged == recs
        assert httpx.post(url + "/_fake/clear").status_code == 200
        assert httpx.get(url + "/_fake/requests").json() == []
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_keepalive_throughput(fp: FakeProvider) -> None:
    """A smoke check that keep-alive works and one connection sustains many requests."""
    body = {"model": "gpt-4o-mini", "messages": MSGS}
    with httpx.Client(headers={"authorization": f"Bearer {DEFAULT_OPENAI_KEY}"}) as c:
        for _ in range(200):
            assert c.post(fp.url + "/v1/chat/completions", json=body).status_code == 200
    assert len(fp.requests) == 200


def test_raw_http_expect_continue_chunked_body_and_pipelining(fp: FakeProvider) -> None:
    import socket

    body = json.dumps({"model": "gpt-4o-mini", "messages": MSGS}).encode()
    auth = f"Authorization: Bearer {DEFAULT_OPENAI_KEY}\r\n".encode()
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n"
        b"Expect: 100-continue\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    plain = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Length: %d\r\n\r\n%s"
        % (
            len(body),
            body,
        )
    )
    with socket.create_connection((fp.host, fp.port), timeout=5) as s:
        s.sendall(chunked + plain)  # two requests pipelined on one connection
        got = b""
        while got.count(b'"chat.completion"') < 2:
            data = s.recv(65536)
            assert data, got
            got += data
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert len(fp.requests) == 2 and all(r["status"] == 200 for r in fp.requests)


def test_chunks_header_is_the_exact_number_of_content_events(fp: FakeProvider) -> None:
    with _ant(fp).messages.stream(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=MSGS,
        extra_headers={"x-fake-chunks": "5", "x-fake-output-tokens": "2"},
    ) as st:
        deltas = [e for e in st if e.type == "content_block_delta"]
        final = st.get_final_message()
    assert len(deltas) == 5 and final.usage.output_tokens == 2
    many = list(
        _oai(fp).chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, extra_headers={"x-fake-chunks": "40"}
        )
    )
    assert len(many) == 1 + 40 + 1  # role chunk, content chunks, finish chunk
    assert fp.requests[-1]["usage"]["output_tokens"] == 40
