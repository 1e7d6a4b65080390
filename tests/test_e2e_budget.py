"""End to end, issue 4: the cap signed into the key holds exactly under concurrency, on one node and across
nodes sharing Redis; a refused call is a 402, a commit row and a counter change, with no upstream call."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from .harness import Appliance, FakeProviderProc
from .test_e2e_wire import wait_requests, wait_rows

pytestmark = pytest.mark.e2e

REDIS = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS, socket_timeout=0.5).ping())
    except Exception:
        return False


async def _fire(urls: list[str], key: str, n: int) -> list[httpx.Response]:
    """n concurrent chat calls, spread over the given appliance base URLs."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "concurrency probe " + "x" * 40}],
        # Worst case per call: ~200 input tokens + 1,000 output tokens at gpt-4o-mini prices ≈ $0.0006,
        # so one call fits $0.05 but 200 together (≈ $0.12) do not.
        "max_tokens": 1000,
    }
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        return await asyncio.gather(
            *[
                c.post(
                    f"{urls[i % len(urls)]}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                )
                for i in range(n)
            ]
        )


def _check_exact(
    apps: list[Appliance], provider: FakeProviderProc, responses: list[httpx.Response], cap: Decimal, key_id: str
) -> None:
    allowed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert allowed and refused, "the test must exercise both sides of the cap"
    for r in refused:
        assert r.status_code == 402, r.text
        err = r.json()["error"]
        assert err["code"] == "budget_exceeded" and Decimal(err["cap"]) == cap
    seen = wait_requests(provider, len(allowed))
    time.sleep(0.5)
    assert len(provider.requests()) == len(allowed) == len(seen), "upstream calls must equal allowed calls"
    rows = wait_rows(apps[0], f"key_id = '{key_id}'", len(responses), timeout=20)
    assert sum(1 for r in rows if r["decision"] == "allowed") == len(allowed)
    assert sum(1 for r in rows if r["decision"] == "blocked_budget") == len(refused)
    spent = sum(Decimal(str(r["cost_usd"])) for r in rows)
    assert spent <= cap, f"settled spend {spent} exceeds the cap {cap}"


def _key_id(token: str) -> str:
    import base64

    body = token.split(".")[2]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return str(json.loads(raw[:-64])["jti"])


def test_200_concurrent_calls_never_overshoot_in_process(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="0.05", period="total")
    responses = asyncio.run(_fire([appliance.base_url], key, 200))
    _check_exact([appliance], provider, responses, Decimal("0.05"), _key_id(key))


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_200_concurrent_calls_never_overshoot_with_redis(make_appliance: Any, provider: FakeProviderProc) -> None:
    app = make_appliance(start=False)
    cfg = app.home / "visionality.toml"
    cfg.write_text(cfg.read_text().replace('backend = "memory"', f'backend = "{REDIS}"'))
    app.start()
    key = app.key(budget="0.05", period="total")
    responses = asyncio.run(_fire([app.base_url], key, 200))
    _check_exact([app], provider, responses, Decimal("0.05"), _key_id(key))


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_two_appliance_processes_share_one_cap_through_redis(
    make_appliance: Any, provider: FakeProviderProc, tmp_path: Any
) -> None:
    first = make_appliance(start=False, appliance_id="node-a")
    cfg = first.home / "visionality.toml"
    cfg.write_text(cfg.read_text().replace('backend = "memory"', f'backend = "{REDIS}"'))
    first.start()
    # The second node: same deployment (config, keys, ledger dir), its own process and ledger stream.
    second = Appliance(first.home, dict(first.env, VISIONALITY_APPLIANCE_ID="node-b"))
    second.start()
    try:
        key = first.key(budget="0.05", period="total")
        responses = asyncio.run(_fire([first.base_url, second.base_url], key, 200))
        _check_exact([first, second], provider, responses, Decimal("0.05"), _key_id(key))
        nodes = {
            r["appliance_id"] for r in first.query(f"SELECT appliance_id FROM commits WHERE key_id = '{_key_id(key)}'")
        }
        assert nodes == {"node-a", "node-b"}
    finally:
        second.stop()


def test_402_is_in_status_and_ledger_at_once(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="0", task="ZERO-1")
    with pytest.raises(openai.APIStatusError) as e:
        appliance.openai(key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=5
        )
    assert e.value.status_code == 402
    err = e.value.body
    assert isinstance(err, dict) and err["code"] == "budget_exceeded" and Decimal(err["remaining"]) == 0
    # Same trip: the row is already queryable, no sleep.
    rows = appliance.query(f"SELECT * FROM commits WHERE key_id = '{_key_id(key)}'")
    assert [r["decision"] for r in rows] == ["blocked_budget"] and rows[0]["http_status"] == 402
    assert provider.requests() == []
    assert provider.connections() == 0  # not even a TCP connection (connection_strategy lazy)
    status = json.loads(appliance.cli("budget", "status", "--key-id", _key_id(key), "--json"))
    (cap,) = status["caps"]
    assert Decimal(cap["cap"]) == 0 and Decimal(cap["spent"]) == 0 and Decimal(cap["remaining"]) == 0


def test_cap_smaller_than_one_call(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="0.0001")
    with pytest.raises(openai.APIStatusError) as e:
        appliance.openai(key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=4000
        )
    assert e.value.status_code == 402
    assert provider.requests() == []


def test_revoked_key_with_budget_left_is_403(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="100")
    appliance.cli("key", "revoke", "--key-id", _key_id(key))
    time.sleep(1.0)
    with pytest.raises(openai.PermissionDeniedError):
        appliance.openai(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert provider.requests() == []


def test_model_without_price_is_refused(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="100")
    with pytest.raises(openai.BadRequestError) as e:
        appliance.openai(key).chat.completions.create(
            model="acme-unpriced-9000", messages=[{"role": "user", "content": "x"}], max_tokens=5
        )
    assert e.value.body["code"] == "model_not_priced"  # type: ignore[index]
    assert provider.requests() == []
    # An operator-set price makes it usable.
    (appliance.home / "prices.toml").write_text(
        '[models."openai/acme-unpriced-9000"]\ninput_per_mtok = "1.00"\noutput_per_mtok = "2.00"\n'
        "max_output_tokens = 4096\n"
    )
    appliance.stop()
    appliance.start()
    out = appliance.openai(key).chat.completions.create(
        model="acme-unpriced-9000", messages=[{"role": "user", "content": "x"}], max_tokens=5
    )
    assert out.choices


def test_stream_cut_off_upstream_settles_to_what_was_used(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="1", task="CUT-1")
    client = appliance.openai(key)
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises on the truncated stream
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            max_tokens=500,
            stream=True,
            extra_headers={"x-fake-chunks": "20", "x-fake-die-after": "4"},
        ):
            pass
    (row,) = wait_rows(appliance, "task = 'CUT-1'", 1, timeout=15)
    assert row["decision"] in ("upstream_error", "client_abort")
    assert 0 < Decimal(str(row["cost_usd"])) <= Decimal(str(row["reserved_usd"]))
    assert row["output_tokens"] >= 3, "each content chunk that reached the client is at least one output token"
    status = json.loads(appliance.cli("budget", "status", "--key-id", _key_id(key), "--json"))
    assert Decimal(status["caps"][0]["reserved"]) == 0, "nothing stays reserved after the call ends"
    assert Decimal(status["caps"][0]["spent"]) == Decimal(str(row["cost_usd"]))


def test_project_cap_from_config_applies_with_gl_code(make_appliance: Any, provider: FakeProviderProc) -> None:
    project = "P" + secrets.token_hex(3).upper()
    app = make_appliance(
        config_extra=f'[projects.{project}]\ncap = "0.002"\nperiod = "month"\ngl_code = "6150-AI"\n'
        'cost_center = "CC-42"\n'
    )
    key = app.key(task=f"{project}-1", budget="100")
    client = app.openai(key)
    codes = []
    for _ in range(10):
        try:
            # Each call really spends 500 output tokens (~$0.0003), so the $0.002 cap runs out after a few.
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "x"}],
                max_tokens=1000,
                extra_headers={"x-fake-output-tokens": "500"},
            )
            codes.append(200)
        except openai.APIStatusError as e:
            codes.append(e.status_code)
            assert e.body["scope"] == "project"  # type: ignore[index]
    assert 200 in codes and 402 in codes
    rows = app.query(f"SELECT * FROM commits WHERE project = '{project}'")
    assert {r["gl_code"] for r in rows} == {"6150-AI"} and {r["cost_center"] for r in rows} == {"CC-42"}


def test_counters_survive_restart(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="5", task="RST-1")
    client = appliance.openai(key)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=9)
    before = json.loads(appliance.cli("budget", "status", "--key-id", _key_id(key), "--json"))["caps"][0]
    appliance.stop()
    appliance.start()
    after = json.loads(appliance.cli("budget", "status", "--key-id", _key_id(key), "--json"))["caps"][0]
    assert Decimal(after["spent"]) == Decimal(before["spent"]) > 0


def test_admin_listener_needs_an_admin_key(appliance: Appliance, provider: FakeProviderProc) -> None:
    user = appliance.key()
    admin = appliance.key(role="admin", sub="ops@corp.example")

    def get(key: str | None) -> int:
        req = urllib.request.Request(appliance.admin_url + "/_visionality/budget")
        if key:
            req.add_header("authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    assert get(None) == 401
    assert get(user) == 403
    assert get(admin) == 200
    with urllib.request.urlopen(appliance.admin_url + "/_visionality/health", timeout=10) as r:
        assert json.loads(r.read())["ok"] is True


def test_budget_status_table(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(budget="2.50", sub="erin@corp.example")
    appliance.openai(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=9
    )
    out = appliance.cli("budget", "status", "--sub", "erin@corp.example")
    assert "key" in out and "2.50" in out and "remaining" in out


def test_redis_unreachable_refuses_with_503_never_unmetered(make_appliance: Any, provider: FakeProviderProc) -> None:
    app = make_appliance(start=False)
    cfg = app.home / "visionality.toml"
    cfg.write_text(cfg.read_text().replace('backend = "memory"', 'backend = "redis://127.0.0.1:1/0"'))
    app.start()  # starts anyway: the counters refuse until Redis answers
    key = app.key(budget="5")
    with pytest.raises(openai.APIStatusError) as e:
        app.openai(key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=5
        )
    assert e.value.status_code == 503 and e.value.body["code"] == "appliance_unavailable"  # type: ignore[index]
    assert provider.requests() == []
    (row,) = wait_rows(app, f"key_id = '{_key_id(key)}'", 1)
    assert row["decision"] == "blocked_unavailable"


def test_background_responses_run_is_refused(appliance: Appliance, provider: FakeProviderProc) -> None:
    """The audit's probe through the real SDK: a background run is billed after its ``queued`` reply, where the
    appliance never sees it. Refused (400) before anything is reserved or sent upstream."""
    key = appliance.key(budget="100", task="BG-1")
    with pytest.raises(openai.BadRequestError) as e:
        appliance.openai(key).responses.create(model="gpt-5-pro", input="think hard", background=True)
    assert e.value.body["code"] == "background_unsupported"  # type: ignore[index]
    assert provider.requests() == []
    (row,) = wait_rows(appliance, "task = 'BG-1'", 1)
    assert row["decision"] == "blocked_invalid" and Decimal(str(row["cost_usd"])) == 0


def test_non_stream_client_abort_is_charged_the_reservation(appliance: Appliance, provider: FakeProviderProc) -> None:
    """The client gives up on a non-stream call: the provider still generates and bills the answer, so the
    row and the counters carry the worst case, not the input alone."""
    key = appliance.key(budget="1", task="NSA-1")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3000}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            f"{appliance.base_url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}", "x-fake-first-byte-delay-ms": "3000"},
            timeout=1.0,
        )
    wait_requests(provider, 1)  # the provider answered it anyway (and would bill it)
    (row,) = wait_rows(appliance, "task = 'NSA-1'", 1, timeout=15)
    assert row["decision"] == "client_abort" and row["error_code"] == "usage_unreported"
    assert Decimal(str(row["cost_usd"])) == Decimal(str(row["reserved_usd"])) > 0
    status = json.loads(appliance.cli("budget", "status", "--key-id", _key_id(key), "--json"))
    assert Decimal(status["caps"][0]["reserved"]) == 0
    assert Decimal(status["caps"][0]["spent"]) == Decimal(str(row["cost_usd"]))
