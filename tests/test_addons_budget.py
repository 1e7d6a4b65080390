from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.budget import BudgetAddon
from visionality.addons.identify import IdentifyAddon
from visionality.addons.pii import PiiAddon
from visionality.addons.route import RouteAddon

from .inprocess import CHAT, appliance, flow, issue, make_home, rows, run


def test_zero_cap_is_402_with_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)
    key = issue(home, "--budget", "0")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                f = flow(body=CHAT, key=key)
                for a in (RouteAddon(app.callpath), IdentifyAddon(app.callpath)):
                    await a.requestheaders(f)
                await PiiAddon(app.callpath).request(f)
                await BudgetAddon(app.callpath).request(f)
                assert f.response is not None and f.response.status_code == 402
                err = f.response.json()["error"]
                assert err["code"] == "budget_exceeded" and err["remaining"] == "0"
                (row,) = rows(app)
                assert row["decision"] == "blocked_budget"

    run(go)
