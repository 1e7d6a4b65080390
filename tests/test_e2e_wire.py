"""End to end, base-URL mode: the official SDKs against the real appliance process and the fake provider.

Each test checks three views of the same call agree: what the SDK got, what the provider saw (the provider
key, never the envelope), and the commit row in the ledger (usage, cost, attribution).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from .harness import ANTHROPIC_KEY, OPENAI_KEY, Appliance, FakeProviderProc

pytestmark = pytest.mark.e2e


def wait_rows(app: Appliance, where: str, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = app.query(f"SELECT * FROM commits WHERE {where} ORDER BY ts")
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {n} rows where {where}, got {len(rows)}: {rows}")


def wait_requests(provider: FakeProviderProc, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = provider.requests()
        if len(seen) >= n:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"provider saw {len(seen)} requests, expected {n}")


def assert_row_matches(row: dict[str, Any], seen: dict[str, Any], *, sub: str, task: str | None) -> None:
    usage = seen["usage"]
    assert row["decision"] == "allowed", row
    assert row["input_tokens"] == usage["input_tokens"]
    assert row["output_tokens"] == usage["output_tokens"]
    assert row["sub"] == sub and row["task"] == task
    assert Decimal(str(row["cost_usd"])) > 0
    assert Decimal(str(row["cost_usd"])) <= Decimal(str(row["reserved_usd"]))
    assert row["upstream_request_id"] == seen["request_id"]


def test_openai_chat_non_stream(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(task="PROJ-128", budget="10")
    client = appliance.openai(key)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=20
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    commit = raw.headers["x-visionality-commit"]
    assert Decimal(raw.headers["x-visionality-budget-remaining"]) < Decimal("10")
    (seen,) = wait_requests(provider, 1)
    assert seen["auth"] == f"Bearer {OPENAI_KEY}", "the provider must get the appliance's key, never the envelope"
    assert provider.connections() == 1  # what the refusal tests count as 0 is really counted
    (row,) = wait_rows(appliance, f"commit_id = '{commit}'", 1)
    assert_row_matches(row, seen, sub="alice@corp.example", task="PROJ-128")
    assert row["project"] == "PROJ" and row["provider"] == "openai" and row["endpoint"] == "chat.completions"
    assert completion.usage is not None and completion.usage.prompt_tokens == row["input_tokens"]


def test_openai_chat_stream_without_include_usage_is_still_metered(
    appliance: Appliance, provider: FakeProviderProc
) -> None:
    client = appliance.openai(appliance.key(task="PROJ-1"))
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Count to five"}],
        stream=True,
        extra_headers={"x-fake-chunks": "5"},
    )
    chunks = list(stream)
    # The usage chunk the appliance asked for is not shown to a client that did not ask for it:
    # code doing chunk.choices[0] must keep working.
    assert chunks and all(c.choices for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text
    (seen,) = wait_requests(provider, 1)
    assert seen["include_usage"] is True and seen["stream"] is True
    (row,) = wait_rows(appliance, "endpoint = 'chat.completions'", 1)
    assert_row_matches(row, seen, sub="alice@corp.example", task="PROJ-1")
    assert row["stream"] is True and row["ttft_ms"] is not None


def test_openai_chat_stream_with_include_usage_keeps_usage_chunk(
    appliance: Appliance, provider: FakeProviderProc
) -> None:
    client = appliance.openai(appliance.key())
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    (seen,) = wait_requests(provider, 1)
    (row,) = wait_rows(appliance, "endpoint = 'chat.completions'", 1)
    assert row["output_tokens"] == chunks[-1].usage.completion_tokens == seen["usage"]["output_tokens"]


def test_openai_responses_stream_and_non_stream(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.openai(appliance.key())
    resp = client.responses.create(model="gpt-4o-mini", input="Write a haiku", max_output_tokens=30)
    assert resp.output_text
    events = list(client.responses.create(model="gpt-4o-mini", input="Again", stream=True))
    assert events[-1].type == "response.completed"
    seen = wait_requests(provider, 2)
    rows = wait_rows(appliance, "endpoint = 'responses'", 2)
    by_stream = {r["stream"]: r for r in rows}
    for s in seen:
        assert by_stream[s["stream"]]["output_tokens"] == s["usage"]["output_tokens"]
        assert by_stream[s["stream"]]["input_tokens"] == s["usage"]["input_tokens"]


def test_openai_embeddings(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.openai(appliance.key())
    out = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(out.data) == 2
    (seen,) = wait_requests(provider, 1)
    (row,) = wait_rows(appliance, "endpoint = 'embeddings'", 1)
    assert row["input_tokens"] == seen["usage"]["input_tokens"] and row["output_tokens"] == 0
    assert Decimal(str(row["cost_usd"])) > 0


@pytest.mark.parametrize("gzip", [False, True])
def test_anthropic_messages_stream(appliance: Appliance, provider: FakeProviderProc, gzip: bool) -> None:
    client = appliance.anthropic(appliance.key(task="ANT-7"))
    headers = {"x-fake-gzip": "1", "x-fake-message-deltas": "3"} if gzip else {"x-fake-message-deltas": "3"}
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello Claude"}],
        extra_headers=headers,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    (seen,) = wait_requests(provider, 1)
    assert seen["auth"] == ANTHROPIC_KEY
    (row,) = wait_rows(appliance, "endpoint = 'messages'", 1)
    # message_delta usage is cumulative: summing the three deltas would triple-count.
    assert row["output_tokens"] == final.usage.output_tokens == seen["usage"]["output_tokens"]
    assert_row_matches(row, seen, sub="alice@corp.example", task="ANT-7")


def test_anthropic_messages_non_stream(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.anthropic(appliance.key())
    msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
    assert msg.content[0].text  # type: ignore[union-attr]
    (seen,) = wait_requests(provider, 1)
    (row,) = wait_rows(appliance, "endpoint = 'messages'", 1)
    assert_row_matches(row, seen, sub="alice@corp.example", task=None)


def test_portkey_sdk_switches_by_base_url_only(appliance: Appliance, provider: FakeProviderProc) -> None:
    from portkey_ai import Portkey

    key = appliance.key(task="PK-1")
    client = Portkey(
        base_url=appliance.base_url + "/v1",
        provider="openai",
        Authorization=f"Bearer {key}",
        trace_id="trace-abc-123",
        metadata={"_user": "alice"},
        max_retries=0,
    )
    out = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}], max_tokens=5
    )
    assert out.choices[0].message.content
    # The Portkey SDK exposes the x-portkey-* response headers without their prefix.
    assert (out.get_headers() or {}).get("trace-id") == "trace-abc-123"
    (seen,) = wait_requests(provider, 1)
    assert seen["auth"] == f"Bearer {OPENAI_KEY}"
    assert not any(h.startswith("x-portkey-") for h in seen["headers"]), "portkey control headers stay here"
    (row,) = wait_rows(appliance, "task = 'PK-1'", 1)
    assert row["trace_id"] == "trace-abc-123"


@pytest.mark.parametrize("stream", [False, True])
def test_portkey_sdk_with_provider_anthropic_on_chat_completions(
    appliance: Appliance, provider: FakeProviderProc, stream: bool
) -> None:
    """Portkey users call Claude through chat.completions with provider="anthropic"; the appliance sends it to
    Anthropic's OpenAI-compatible endpoint with Anthropic's key, and meters it as an Anthropic call."""
    from portkey_ai import Portkey

    key = appliance.key(task="PKA-1")
    client = Portkey(
        base_url=appliance.base_url + "/v1", provider="anthropic", Authorization=f"Bearer {key}", max_retries=0
    )
    args = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 7}
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert all(c.choices for c in chunks), "the usage chunk the appliance asked for is removed"
    else:
        text = client.chat.completions.create(**args).choices[0].message.content or ""
    assert text
    (seen,) = wait_requests(provider, 1)
    assert seen["provider"] == "anthropic" and seen["auth"] == f"Bearer {ANTHROPIC_KEY}"
    assert seen["path"] == "/v1/chat/completions" and seen["include_usage"] is stream
    (row,) = wait_rows(appliance, "task = 'PKA-1'", 1)
    assert (row["provider"], row["endpoint"], row["decision"]) == ("anthropic", "chat.completions", "allowed")
    usage = seen["usage"]
    assert (row["input_tokens"], row["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert Decimal(str(row["cost_usd"])) > 0


def test_models_listing_is_authenticated_and_free(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.openai(appliance.key())
    assert list(client.models.list())
    (row,) = wait_rows(appliance, "endpoint = 'models'", 1)
    assert row["decision"] == "allowed" and Decimal(str(row["cost_usd"])) == 0


def test_http2_enabled_client_through_base_url_speaks_http11(appliance: Appliance, provider: FakeProviderProc) -> None:
    """An HTTP/2-enabled client on the plain-HTTP base URL falls back to HTTP/1.1 and works: HTTP/2 without
    TLS (h2c) is not something mitmproxy speaks (mitmproxy issue 3362; PR 8127 open), and SDK clients never
    ask for it. HTTP/2 is negotiated through the proxy listener (ALPN): test_e2e_proxy."""
    key = appliance.key()
    with httpx.Client(http2=True, base_url=appliance.base_url) as h:
        r = h.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3},
        )
    assert r.status_code == 200, r.text
    assert r.http_version == "HTTP/1.1"
