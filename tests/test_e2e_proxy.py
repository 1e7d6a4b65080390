"""End to end, explicit-proxy mode: HTTPS_PROXY + the deployment CA, TLS intercepted for the provider hosts
only; every other host refused (no open proxy) or, when an operator allows it, tunnelled untouched."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from .harness import OPENAI_KEY, Appliance, FakeProviderProc
from .test_e2e_wire import wait_requests, wait_rows

pytestmark = pytest.mark.e2e


def proxied(app: Appliance, *, http2: bool = False) -> httpx.Client:
    return httpx.Client(proxy=app.proxy_url, verify=app.ca_bundle, http2=http2, timeout=30)


def sdk_http(app: Appliance, *, http2: bool = False) -> httpx2.Client:
    """The openai and anthropic SDKs installed here are built on httpx2 and want its client."""
    return httpx2.Client(proxy=app.proxy_url, verify=app.ca_bundle, http2=http2, timeout=30)


def test_openai_sdk_through_the_proxy(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = openai.OpenAI(api_key=appliance.key(task="PRX-1"), http_client=sdk_http(appliance), max_retries=0)
    out = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "via proxy"}], max_tokens=8
    )
    assert out.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream via proxy"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    seen = wait_requests(provider, 2)
    assert all(s["auth"] == f"Bearer {OPENAI_KEY}" for s in seen)
    rows = wait_rows(appliance, "task = 'PRX-1'", 2)
    assert {r["decision"] for r in rows} == {"allowed"}


def test_anthropic_sdk_through_the_proxy_over_http2(appliance: Appliance, provider: FakeProviderProc) -> None:
    http = sdk_http(appliance, http2=True)
    client = anthropic.Anthropic(api_key=appliance.key(task="PRX-2"), http_client=http, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        assert "".join(s.text_stream)
    (row,) = wait_rows(appliance, "task = 'PRX-2'", 1)
    assert row["provider"] == "anthropic" and row["output_tokens"] > 0
    probe = http.get("https://api.anthropic.com/v1/models", headers={"x-api-key": appliance.key()})
    assert probe.status_code == 200 and probe.http_version == "HTTP/2"


def test_other_hosts_are_refused_not_tunnelled(appliance: Appliance, provider: FakeProviderProc) -> None:
    with proxied(appliance) as c, pytest.raises(httpx.ProxyError) as e:
        c.get("https://example.com/")
    assert "403" in str(e.value)
    with httpx.Client(proxy=appliance.proxy_url) as c:
        r = c.get("http://example.com/")
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"


def test_missing_envelope_in_proxy_mode_is_401_without_upstream(
    appliance: Appliance, provider: FakeProviderProc
) -> None:
    client = openai.OpenAI(api_key="sk-not-an-envelope", http_client=sdk_http(appliance), max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert provider.requests() == []


def test_passthrough_host_is_tunnelled_untouched(make_appliance: Any, provider: FakeProviderProc) -> None:
    app = make_appliance(config_extra="", start=False)
    cfg = app.home / "visionality.toml"
    cfg.write_text(cfg.read_text().replace("passthrough_hosts = []", 'passthrough_hosts = ["127.0.0.1"]'))
    app.start()
    fake_host, fake_port = provider.url.removeprefix("http://").split(":")
    phost, pport = app.listeners["proxy"].rsplit(":", 1)
    with socket.create_connection((phost, int(pport)), timeout=10) as s:
        s.sendall(f"CONNECT {fake_host}:{fake_port} HTTP/1.1\r\nHost: {fake_host}:{fake_port}\r\n\r\n".encode())
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        # Inside the tunnel we talk to the fake provider directly: its own 401 (no key), not ours.
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 401") and b"invalid_api_key" in data
    assert b"x-visionality-commit" not in data.lower()


def test_client_configured_only_by_environment(appliance: Appliance, provider: FakeProviderProc) -> None:
    """The variables `visionality ca` prints are enough for an unmodified SDK script."""
    out = appliance.cli("ca")
    env = dict(appliance.env)
    for line in out.splitlines():
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("  #")[0].strip().split("=", 1)
            env[name] = value
    env["HTTPS_PROXY"] = appliance.proxy_url
    env["OPENAI_API_KEY"] = appliance.key(task="ENV-1")
    script = textwrap.dedent(
        """
        import openai
        c = openai.OpenAI(max_retries=0)
        r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "env"}], max_tokens=4)
        print(r.choices[0].message.content is not None)
        """
    )
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"
    wait_rows(appliance, "task = 'ENV-1'", 1)
