from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.route import RouteAddon

from .inprocess import appliance, flow, make_home, rows, run


def test_route_sets_call_and_refuses_unknown_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                addon = RouteAddon(app.callpath)
                ok = flow(path="/anthropic/v1/messages", body={})
                await addon.requestheaders(ok)
                call = ok.metadata["visionality.call"]
                assert ok.response is None and call.route.provider == "anthropic"
                bad = flow(path="/v1/files", body={})
                await addon.requestheaders(bad)
                assert bad.response is not None and bad.response.status_code == 404
                prox = flow(listener="proxy", path="/v1/chat/completions", body={})
                prox.request.host = "api.openai.com"
                await addon.requestheaders(prox)
                assert prox.response is None and prox.metadata["visionality.call"].route.provider == "openai"
                admin = flow(listener="admin", method="GET", path="/_visionality/health")
                await addon.requestheaders(admin)
                assert "visionality.call" not in admin.metadata
                assert [r["http_status"] for r in rows(app)] == [404]

    run(go)
