from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.identify import IdentifyAddon
from visionality.addons.pii import PiiAddon
from visionality.addons.route import RouteAddon

from .inprocess import appliance, flow, issue, make_home, run


def test_pii_blocks_and_malformed_json_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                chain = [RouteAddon(app.callpath), IdentifyAddon(app.callpath)]
                pii = PiiAddon(app.callpath)
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mail bob@acme-corp.com"}]}
                f = flow(body=body, key=key)
                for a in chain:
                    await a.requestheaders(f)
                await pii.request(f)
                assert f.response is not None and f.response.status_code == 400
                assert f.response.json()["error"]["entities"] == {"EMAIL_ADDRESS": 1}
                g = flow(key=key)
                g.request.headers["content-type"] = "application/json"
                g.request.content = b"{oops"
                for a in chain:
                    await a.requestheaders(g)
                await pii.request(g)
                assert g.response is not None and g.response.json()["error"]["code"] == "invalid_json"

    run(go)
