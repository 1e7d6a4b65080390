from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.identify import IdentifyAddon
from visionality.addons.route import RouteAddon

from .inprocess import CHAT, appliance, flow, issue, make_home, run


def test_identify_401_before_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                route, ident = RouteAddon(app.callpath), IdentifyAddon(app.callpath)
                for f, status in ((flow(body=CHAT), 401), (flow(body=CHAT, key=key), None)):
                    await route.requestheaders(f)
                    await ident.requestheaders(f)
                    assert (f.response.status_code if f.response else None) == status
                    if status is None:
                        assert f.metadata["visionality.call"].record.sub == "alice"

    run(go)
