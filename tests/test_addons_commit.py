from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from visionality.addons.runner import chain_addons

from .inprocess import CHAT, appliance, flow, issue, make_home, rows, run


def test_forward_swaps_envelope_for_provider_key_then_settles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--task", "C-1")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                addons = chain_addons(app)
                f = flow(body=CHAT, key=key, headers={"x-portkey-provider": "openai", "x-portkey-trace-id": "t9"})
                for hook in ("requestheaders", "request"):
                    for a in addons:
                        if hasattr(a, hook):
                            await getattr(a, hook)(f)
                assert f.response is None
                req = f.request
                assert (req.scheme, req.host, req.port) == ("http", "127.0.0.1", 9)
                assert req.headers["authorization"] == "Bearer sk-up-openai"
                assert "x-portkey-provider" not in req.headers and key not in str(req.headers)
                body = {"usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}, "choices": []}
                f.response = http.Response.make(
                    200, json.dumps(body), {"content-type": "application/json", "x-request-id": "req_7"}
                )
                for hook in ("responseheaders", "response"):
                    for a in addons:
                        if hasattr(a, hook):
                            await getattr(a, hook)(f)
                assert f.response.headers["x-portkey-trace-id"] == "t9"
                assert rows(app) == []  # the answer did not wait for the commit row ...
                for a in addons:  # a client that goes away after a complete answer is not an abort
                    if hasattr(a, "error"):
                        await a.error(f)
                await app.callpath.drain()  # ... which follows it within the same event-loop turn
                (row,) = rows(app)
                assert (row["decision"], row["input_tokens"], row["output_tokens"]) == ("allowed", 4, 3)
                assert row["upstream_request_id"] == "req_7" and row["task"] == "C-1"

    run(go)
