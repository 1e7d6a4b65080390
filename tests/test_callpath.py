"""The call path in-process: gates, refusals with rows, settlement."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from visionality.callpath import Call
from visionality.commit import Decision
from visionality.errors import BudgetExceeded, RequestRejected
from visionality.estimate import EstimateError, UnpricedFeature
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
            call = await _reserved(app, key, "/v1/models", None)
            assert call.record.commit_id in app.ledger._open_intents

    run(go)


# -- settlement without the provider's usage, and the bound's holes (audit 2026-12) -------------------


async def _reserved(app: Any, key: str, path: str, body: dict[str, Any] | None) -> Call:
    """A call through every gate up to the durable intent, as the addons drive it before forwarding
    (``body`` None: a GET without a body)."""
    p = app.callpath
    call = p.begin(None)
    method = "GET" if body is None else "POST"
    p.routed(call, route_base_url(method, path, None), None)
    p.identify(call, _headers(key))
    if body is None:
        p.read_body(call, method, None, b"")
    else:
        p.read_body(call, method, "application/json", json.dumps(body).encode())
    p.screen(call)
    await p.reserve(call)
    await p.intent(call)
    return call


async def _spent(app: Any, call: Call) -> tuple[Decimal, Decimal]:
    (status,) = await app.counters.status(app.callpath.caps_for(call), call.record.ts)
    return status.spent, status.reserved


def test_background_run_is_refused_before_it_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's probe: ``background: true`` answers ``queued`` with ``usage: null`` and OpenAI bills the run
    later, where the appliance never sees it. Refused with a 400, nothing held, one row."""
    home = make_home(tmp_path)
    key = issue(home, "--budget", "100")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            p = app.callpath
            with pytest.raises(UnpricedFeature) as e:
                await _reserved(app, key, "/v1/responses", {"model": "gpt-5-pro", "input": "x", "background": True})
            assert (e.value.status, e.value.code) == (400, "background_unsupported")
            call = p.begin(None)  # the refused call's row, through refuse() as the addons do it
            p.routed(call, route_base_url("POST", "/v1/responses", None), None)
            p.identify(call, _headers(key))
            p.read_body(call, "POST", "application/json", b'{"model":"gpt-5-pro","input":"x","background":true}')
            with pytest.raises(UnpricedFeature) as e:
                await p.reserve(call)
            refusal = await p.refuse(call, e.value)
            assert refusal.status == 400 and refusal.decision is Decision.BLOCKED_INVALID
            (row,) = rows(app)
            assert row["error_code"] == "background_unsupported" and Decimal(str(row["reserved_usd"])) == 0

    run(go)


def test_2xx_without_usage_is_charged_the_reservation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2xx with ``usage: null`` was charged $0 (reserved $3.84, cost $0, allowed). Now: the worst case."""
    home = make_home(tmp_path)
    key = issue(home, "--budget", "100")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            call = await _reserved(app, key, "/v1/responses", {"model": "gpt-5-pro", "input": "x"})
            reserved = call.record.reserved_usd
            assert reserved >= Decimal("32.64")  # 272,000 output tokens at $120/M: gpt-5-pro's real limit
            await app.callpath.settle(
                call,
                status=200,
                body=b'{"id":"resp_1","status":"queued","usage":null}',
                content_encoding=None,
                upstream_request_id="req_q",
                aborted=False,
            )
            (row,) = rows(app)
            assert row["decision"] == "allowed" and row["error_code"] == "usage_unreported"
            assert Decimal(str(row["cost_usd"])) == reserved == Decimal(str(row["reserved_usd"]))
            assert await _spent(app, call) == (reserved, 0)

    run(go)


@pytest.mark.parametrize(
    "reply",
    [b'{"choices":[],"usage":{}}', b'{"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0}}', b"not json"],
)
def test_empty_or_unreadable_usage_is_charged_the_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply: bytes
) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--budget", "1")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            call = await _reserved(app, key, "/v1/chat/completions", CHAT)
            await app.callpath.settle(
                call, status=200, body=reply, content_encoding=None, upstream_request_id=None, aborted=False
            )
            (row,) = rows(app)
            assert row["error_code"] == "usage_unreported"
            assert Decimal(str(row["cost_usd"])) == call.record.reserved_usd > 0

    run(go)


def test_non_stream_client_abort_is_charged_the_reservation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client hung up before a non-stream answer: the provider still finishes and bills the generation,
    so the input bound alone (output 0) undercharged. Charged the reservation, the worst case."""
    home = make_home(tmp_path)
    key = issue(home, "--budget", "1")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            call = await _reserved(app, key, "/v1/chat/completions", {**CHAT, "max_tokens": 4000})
            await app.callpath.settle(
                call, status=0, body=None, content_encoding=None, upstream_request_id=None, aborted=True
            )
            (row,) = rows(app)
            assert row["decision"] == "client_abort" and row["error_code"] == "usage_unreported"
            assert Decimal(str(row["cost_usd"])) == call.record.reserved_usd
            assert await _spent(app, call) == (call.record.reserved_usd, 0)

    run(go)


def test_provider_never_reached_is_not_charged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection to the provider never came up (outage, refused, TLS failure): nothing was sent, so an
    outage does not burn every caller's budget at its worst case."""
    home = make_home(tmp_path)
    key = issue(home, "--budget", "1")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            call = await _reserved(app, key, "/v1/chat/completions", {**CHAT, "max_tokens": 4000})
            await app.callpath.settle(
                call, status=0, body=None, content_encoding=None, upstream_request_id=None, aborted=True, reached=False
            )
            (row,) = rows(app)
            assert (row["decision"], row["error_code"]) == ("upstream_error", "upstream_unreachable")
            assert Decimal(str(row["cost_usd"])) == 0
            assert await _spent(app, call) == (0, 0)

    run(go)


def test_upstream_error_answer_is_not_charged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--budget", "1")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            call = await _reserved(app, key, "/v1/chat/completions", CHAT)
            err = b'{"error":{"message":"overloaded","type":"server_error"}}'
            await app.callpath.settle(
                call, status=500, body=err, content_encoding=None, upstream_request_id=None, aborted=False
            )
            (row,) = rows(app)
            assert row["decision"] == "upstream_error" and row["error_code"] is None
            assert Decimal(str(row["cost_usd"])) == 0 and await _spent(app, call) == (0, 0)

    run(go)


_UNLIMITED = '[models."openai/acme-9"]\ninput_per_mtok = "1"\noutput_per_mtok = "2"\n'


def test_priced_model_without_output_limit_needs_max_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A priced model with no known output limit, asked without max tokens, used to reserve a silent 32K."""
    home = make_home(tmp_path)
    (home.root / "prices.toml").write_text(_UNLIMITED)
    key = issue(home, "--budget", "100")
    body = {"model": "acme-9", "messages": [{"role": "user", "content": "x"}]}

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            assert app.config.default_output_limit is None  # `init` leaves it unset
            with pytest.raises(EstimateError) as e:
                await _reserved(app, key, "/v1/chat/completions", body)
            assert (e.value.status, e.value.code) == (400, "max_tokens_required")
            assert "openai/acme-9" in str(e.value) and "max_completion_tokens" in str(e.value)
            call = await _reserved(app, key, "/v1/chat/completions", {**body, "max_completion_tokens": 70_000})
            assert call.record.reserved_usd >= Decimal("0.14")  # the client's 70K, not a table or default figure

    run(go)


def test_operator_default_output_limit_still_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    cfg = home.root / "visionality.toml"
    cfg.write_text(cfg.read_text().replace("# default_output_limit = 32000", "default_output_limit = 50000"))
    (home.root / "prices.toml").write_text(_UNLIMITED)
    key = issue(home, "--budget", "100")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            assert app.config.default_output_limit == 50_000
            body = {"model": "acme-9", "messages": [{"role": "user", "content": "x"}]}
            call = await _reserved(app, key, "/v1/chat/completions", body)
            assert call.record.reserved_usd >= 50_000 * Decimal(2) / 1_000_000

    run(go)


@pytest.mark.parametrize(
    "extra",
    [{"service_tier": "priority"}, {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}],
)
def test_priority_tier_and_audio_are_refused_at_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]
) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--budget", "100")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with pytest.raises(UnpricedFeature) as e:
                await _reserved(app, key, "/v1/chat/completions", {**CHAT, **extra})
            assert (e.value.status, e.value.code) == (400, "unpriced_feature")

    run(go)
