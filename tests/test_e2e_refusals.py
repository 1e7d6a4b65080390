"""End to end: everything the appliance refuses is refused before any upstream connection, with a clear
OpenAI-style error and a commit row; bad input never crashes it and never forwards an unauthenticated call."""

from __future__ import annotations

import os
import socket
import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from nacl.signing import SigningKey
from visionality.envelope import Claims, EnvelopeSigner

from .harness import Appliance, FakeProviderProc
from .test_e2e_wire import wait_rows

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def post(
    app: Appliance,
    path: str,
    *,
    key: str | None,
    content: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = dict(headers or {})
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=app.base_url, timeout=30) as c:
        return c.post(path, content=content, json=json_body, headers=h)


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    assert err["message"] and err["type"]
    return err


def test_missing_invalid_and_foreign_keys_get_401_and_no_upstream_call(
    appliance: Appliance, provider: FakeProviderProc
) -> None:
    good = appliance.key()
    assert_error(post(appliance, "/v1/chat/completions", key=None, json_body=CHAT), 401, "invalid_api_key")
    flipped = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
    assert_error(post(appliance, "/v1/chat/completions", key=flipped, json_body=CHAT), 401, "invalid_api_key")
    foreign = EnvelopeSigner(SigningKey.generate(), "dep_other").issue(
        Claims.from_payload({**_payload(appliance, good), "iss": "dep_other"})
    )
    assert_error(post(appliance, "/v1/chat/completions", key=foreign, json_body=CHAT), 401, "invalid_api_key")
    err = assert_error(
        post(appliance, "/v1/chat/completions", key="sk-proj-realOpenAIkey", json_body=CHAT), 401, "invalid_api_key"
    )
    assert "provider keys" in err["message"]
    # The OpenAI SDK surfaces it as AuthenticationError with our message.
    with pytest.raises(openai.AuthenticationError):
        appliance.openai(flipped).chat.completions.create(**CHAT)
    assert provider.requests() == []
    assert provider.connections() == 0  # not even a TCP connection (connection_strategy lazy)
    rows = wait_rows(appliance, "decision = 'blocked_auth'", 5)
    assert all(r["http_status"] == 401 for r in rows)


def _payload(app: Appliance, token: str) -> dict[str, Any]:
    import base64
    import json

    body = token.split(".")[2]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return json.loads(raw[:-64])


def test_revocation_reaches_running_appliance_within_a_second(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(sub="bob@corp.example", budget="5")
    other = appliance.key(sub="carol@corp.example")
    client = appliance.openai(key)
    client.chat.completions.create(**CHAT)
    key_id = _payload(appliance, key)["jti"]
    t0 = time.monotonic()
    appliance.cli("key", "revoke", "--key-id", key_id)
    while True:
        try:
            client.chat.completions.create(**CHAT)
        except openai.PermissionDeniedError as e:
            assert e.status_code == 403
            break
        assert time.monotonic() - t0 < 1.0, "revocation did not take effect within 1 s"
        time.sleep(0.02)
    took = time.monotonic() - t0
    assert took < 1.0
    appliance.openai(other).chat.completions.create(**CHAT)  # other subjects unaffected
    # Revoking by subject covers every key issued to it before now.
    k2 = appliance.key(sub="dave@corp.example")
    k3 = appliance.key(sub="dave@corp.example")
    appliance.cli("key", "revoke", "--sub", "dave@corp.example")
    time.sleep(1.0)
    for k in (k2, k3):
        with pytest.raises(openai.PermissionDeniedError):
            appliance.openai(k).chat.completions.create(**CHAT)
    rows = wait_rows(appliance, "decision = 'blocked_revoked'", 3)
    assert {r["sub"] for r in rows} >= {"bob@corp.example", "dave@corp.example"}


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_body"),
        (b'{"model": "gpt-4o-mini"}', "text/plain", 415, "unsupported_media_type"),
        (b"[1, 2]", "application/json", 400, "invalid_body"),
        (b'{"messages": []}', "application/json", 400, "missing_model"),
        (b'{"model": "gpt-4o-mini", "temperature": NaN, "messages": []}', "application/json", 400, "invalid_json"),
        (
            b'{"model": "gpt-4o-mini", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "application/json",
            400,
            "invalid_json",
        ),
    ],
)
def test_malformed_bodies_are_refused_clearly(
    appliance: Appliance, provider: FakeProviderProc, content: bytes, ctype: str, status: int, code: str
) -> None:
    r = post(appliance, "/v1/chat/completions", key=appliance.key(), content=content, headers={"content-type": ctype})
    assert_error(r, status, code)
    assert provider.requests() == []


def test_body_that_does_not_match_its_content_encoding_is_400(appliance: Appliance, provider: FakeProviderProc) -> None:
    r = post(
        appliance,
        "/v1/chat/completions",
        key=appliance.key(),
        content=b'{"model": "gpt-4o-mini"}',
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert_error(r, 400, "invalid_body")
    assert provider.requests() == []


def test_body_over_the_limit_is_413(make_appliance: Any, provider: FakeProviderProc) -> None:
    app = make_appliance(config_extra="")
    cfg = app.home / "visionality.toml"
    cfg.write_text(cfg.read_text().replace("max_body_bytes = 10485760", "max_body_bytes = 65536"))
    app.stop()
    app.start()
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a" * 100_000}]}
    assert_error(post(app, "/v1/chat/completions", key=app.key(), json_body=big), 413, "request_too_large")

    # Chunked upload without Content-Length: still refused, never forwarded.
    def gen() -> Any:
        for _ in range(20):
            yield b" " * 8192

    with httpx.Client(base_url=app.base_url, timeout=30) as c:
        r = c.post(
            "/v1/chat/completions",
            content=gen(),
            headers={"authorization": f"Bearer {app.key()}", "content-type": "application/json"},
        )
    assert r.status_code == 413
    assert provider.requests() == []


def test_unknown_path_is_404_and_not_forwarded(appliance: Appliance, provider: FakeProviderProc) -> None:
    r = post(appliance, "/v1/files", key=appliance.key(), json_body={})
    assert_error(r, 404, "unknown_path")
    with httpx.Client(base_url=appliance.base_url) as c:
        assert c.get("/").status_code == 404
    assert provider.requests() == []


def test_client_disconnect_before_body_does_not_crash(appliance: Appliance, provider: FakeProviderProc) -> None:
    host, port = appliance.listeners["base_url"].rsplit(":", 1)
    for _ in range(5):
        s = socket.create_connection((host, int(port)))
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\nAuthorization: Bearer " + appliance.key().encode() + b'\r\n\r\n{"mo'
        )
        s.close()
    # Still serving:
    appliance.openai(appliance.key()).chat.completions.create(**CHAT)
    assert len(provider.requests()) == 1


def test_client_abort_mid_stream_is_metered(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.openai(appliance.key(task="ABT-1"))
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "long story"}],
        stream=True,
        max_tokens=200,
        extra_headers={"x-fake-chunks": "50", "x-fake-chunk-delay-ms": "40"},
    )
    got = 0
    for _chunk in stream:
        got += 1
        if got == 3:
            break
    stream.close()
    (row,) = wait_rows(appliance, "task = 'ABT-1'", 1, timeout=15)
    assert row["decision"] == "client_abort"
    assert row["input_tokens"] > 0 and float(row["cost_usd"]) > 0
    assert float(row["cost_usd"]) <= float(row["reserved_usd"])


def test_upstream_error_is_recorded_and_passed_through(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.openai(appliance.key(task="ERR-1"))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT, extra_headers={"x-fake-status": "500"})
    (row,) = wait_rows(appliance, "task = 'ERR-1'", 1)
    assert row["decision"] == "upstream_error" and row["http_status"] == 500


def test_provider_outage_is_an_upstream_error_charged_nothing(tmp_path: Any, provider: FakeProviderProc) -> None:
    """Nothing listens where the provider should be: the client gets mitmproxy's 502, the row says the
    provider was unreachable, and no budget is burned (nothing was sent, nothing billed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # a port nobody listens on once this socket closes
    app = Appliance.create(tmp_path / "home", f"http://127.0.0.1:{dead}")
    app.start()
    try:
        key = app.key(task="DOWN-1", budget="5")
        r = post(app, "/v1/chat/completions", key=key, json_body=CHAT)
        assert r.status_code == 502
        (row,) = wait_rows(app, "task = 'DOWN-1'", 1)
        assert (row["decision"], row["error_code"]) == ("upstream_error", "upstream_unreachable")
        assert Decimal(str(row["cost_usd"])) == 0 and Decimal(str(row["reserved_usd"])) > 0
    finally:
        app.stop()


@pytest.mark.parametrize("stage", ["route", "identify", "pii", "budget", "intent", "forward"])
def test_a_crashing_hook_refuses_instead_of_forwarding(
    make_appliance: Any, provider: FakeProviderProc, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_appliance(start=False)
    app.env["VISIONALITY_INJECT_FAULTS"] = stage
    app.start()
    r = post(app, "/v1/chat/completions", key=app.key(), json_body=CHAT)
    assert_error(r, 500, "appliance_error")
    time.sleep(0.3)
    assert provider.requests() == [], f"a fault in {stage} let the call through"
    (row,) = wait_rows(app, "http_status = 500", 1)
    assert row["decision"] == "blocked_unavailable"


def test_a_crashing_hook_after_forwarding_charges_the_worst_case(
    make_appliance: Any, provider: FakeProviderProc
) -> None:
    """A bug on the response side (metering) fails the call, but the provider already ran it and bills it:
    the row says so and charges the reservation, never $0 (which would let a key spend past its cap). The
    client's connection is cut rather than sent the provider's body under an error's headers."""
    app = make_appliance(start=False)
    app.env["VISIONALITY_INJECT_FAULTS"] = "meter"
    app.start()
    key = app.key(task="MF-1", budget="5")
    with httpx.Client(base_url=app.base_url, timeout=30) as c, pytest.raises(httpx.TransportError):
        c.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"authorization": f"Bearer {key}"})
    assert len(provider.requests()) == 1
    (row,) = wait_rows(app, "task = 'MF-1'", 1)
    assert row["decision"] == "unsettled" and row["error_code"] == "appliance_error"
    assert Decimal(str(row["cost_usd"])) == Decimal(str(row["reserved_usd"])) > 0


@pytest.mark.slow
def test_memory_flat_across_10000_requests(make_appliance: Any, provider: FakeProviderProc) -> None:
    appliance = make_appliance(start=False)
    cfg = appliance.home / "visionality.toml"
    # Seal every second, so the run also shows memory while sealing (issue 3) and no first seal lands after
    # the warm-up (it costs pyarrow's pools ~19 MB once).
    cfg.write_text(cfg.read_text().replace("seal_max_age_s = 30", "seal_max_age_s = 1"))
    appliance.start()
    assert appliance.proc is not None
    pid = appliance.proc.pid
    key = appliance.key()
    bad = {"authorization": "Bearer v4.public.garbage"}

    def rss_kb() -> int:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def burst(n: int) -> None:
        with httpx.Client(base_url=appliance.base_url, timeout=30) as c:
            for i in range(n):
                if i % 4 == 0:
                    c.post("/v1/chat/completions", json=CHAT, headers=bad)
                elif i % 4 == 1:
                    c.post(
                        "/v1/chat/completions",
                        content=b"{bad",
                        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
                    )
                else:
                    r = c.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
                    assert r.status_code == 200

    burst(2000)  # warm-up: caches, allocator pools, the first ledger seal
    samples = [rss_kb()]
    for _ in range(5):  # 10,000 requests in five bursts
        burst(2000)
        samples.append(rss_kb())
    steps = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    print(f"RSS kB after each 2,000 requests: {samples}; steps {steps}")
    # No per-request leak of flows or bodies (a leaked flow is several kB). A seal briefly holds its chunk
    # (RSS swings ~2 MB with the sampling moment), so compare peaks: the second half's peak may exceed the
    # first half's by at most 4 MB (0.7 kB/request over 6,000). Measured here (2026-12-04, a seal every
    # second): [268872, 270516, 272520, 272020, 274184, 272616] kB, i.e. +1.7 MB from the first half's peak.
    growth = max(samples[3:]) - max(samples[:3])
    assert growth < 4_000, f"memory still growing after warm-up: {samples}"
    assert max(samples) - samples[0] < 10_000, f"memory grew {max(samples) - samples[0]} kB over 10,000 requests"
    assert os.path.exists(f"/proc/{pid}")
    rows = wait_rows(appliance, "true", 12_000, timeout=60)
    assert len(rows) >= 12_000
