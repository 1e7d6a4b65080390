"""The call path in-process: gates, refusals with rows, settlement."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from visionality.commit import Decision
from visionality.errors import BudgetExceeded, RequestRejected
from visionality.routing import route_base_url

from .inprocess import CHAT, appliance, issue, make_home, rows, run


def _headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_allowed_call_passes_every_gate_then_settles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--task", "T-1", "--budget", "1")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            call = p.begin("trace-1")
            p.routed(call, route_base_url("POST", "/v1/chat/completions", None), 100)
            p.identify(call, _headers(key))
            import json

            p.read_body(call, "POST", "application/json", json.dumps(CHAT).encode())
            p.screen(call)
            await p.reserve(call)
            assert call.record.reserved_usd > 0 and call.remaining is not None and call.remaining < 1
            await p.intent(call)
            fwd = p.forward(call, {"authorization": "Bearer x", "x-portkey-provider": "openai", "accept": "*/*"})
            assert fwd.set_headers["authorization"] == "Bearer sk-up-openai"
            assert set(fwd.drop_headers) == {"authorization", "x-portkey-provider"}
            assert (fwd.host, fwd.port, fwd.path) == ("127.0.0.1", 9, "/v1/chat/completions")
            body = b'{"usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}, "choices": []}'
            await p.settle(
                call, status=200, body=body, content_encoding=None, upstream_request_id="req_1", aborted=False
            )
            (row,) = rows(app)
            assert row["decision"] == "allowed" and row["input_tokens"] == 3 and row["output_tokens"] == 5
            assert Decimal(str(row["cost_usd"])) < Decimal(str(row["reserved_usd"]))
            assert row["trace_id"] == "trace-1" and row["upstream_request_id"] == "req_1"
            status = await app.counters.status(p.caps_for(call), call.record.ts)
            assert status[0].reserved == 0 and status[0].spent == Decimal(str(row["cost_usd"]))

    run(go)


def test_forward_refuses_when_a_gate_was_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            call = p.begin(None)
            p.routed(call, route_base_url("POST", "/v1/chat/completions", None), None)
            p.identify(call, _headers(key))
            with pytest.raises(RuntimeError, match="gates"):
                p.forward(call, {})

    run(go)


def test_refusal_releases_reservation_and_writes_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--budget", "0.0001")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            call = p.begin(None)
            p.routed(call, route_base_url("POST", "/v1/chat/completions", None), None)
            p.identify(call, _headers(key))
            p.read_body(
                call, "POST", "application/json", b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": 9000}'
            )
            with pytest.raises(BudgetExceeded) as e:
                await p.reserve(call)
            refusal = await p.refuse(call, e.value)
            assert refusal.status == 402 and refusal.decision is Decision.BLOCKED_BUDGET
            await p.refuse(call, e.value)  # a second refusal of the same call writes nothing more
            (row,) = rows(app)
            assert (
                row["decision"] == "blocked_budget" and row["sub"] == "alice" and row["error_code"] == "budget_exceeded"
            )

    run(go)


def test_oversized_and_provider_key_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            call = p.begin(None)
            with pytest.raises(RequestRejected) as e:
                p.routed(call, route_base_url("POST", "/v1/chat/completions", None), 50 * 1024 * 1024)
            assert e.value.status == 413
            p._provider_keys["anthropic"] = None
            with pytest.raises(RequestRejected) as e:
                p.routed(p.begin(None), route_base_url("POST", "/anthropic/v1/messages", None), 10)
            assert e.value.status == 503 and "VISIONALITY_ANTHROPIC_API_KEY" in str(e.value)

    run(go)


def test_include_usage_injected_only_when_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            for body, injected in (
                (b'{"model":"gpt-4o-mini","messages":[],"stream":true}', True),
                (b'{"model":"gpt-4o-mini","messages":[],"stream":true,"stream_options":{"include_usage":true}}', False),
                (b'{"model":"gpt-4o-mini","messages":[]}', False),
            ):
                call = p.begin(None)
                p.routed(call, route_base_url("POST", "/v1/chat/completions", None), None)
                p.identify(call, _headers(key))
                p.read_body(call, "POST", "application/json", body)
                assert call.injected_usage is injected
                assert (call.new_body is not None) is injected
                if injected:
                    assert call.input_bound >= len(call.new_body or b"")

    run(go)


def test_unbilled_endpoint_leaves_a_durable_intent_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /v1/models costs nothing, but it reached upstream: after a crash it must still be a row."""
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            call = p.begin(None)
            p.routed(call, route_base_url("GET", "/v1/models", None), None)
            p.identify(call, _headers(key))
            p.read_body(call, "GET", None, b"")
            p.screen(call)
            await p.reserve(call)
            await p.intent(call)
            assert call.record.commit_id in app.ledger._open_intents

    run(go)
