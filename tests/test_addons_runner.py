from __future__ import annotations

from pathlib import Path

import pytest
from visionality.addons.runner import _modes, chain_addons

from .inprocess import appliance, make_home, run


def test_chain_order_and_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            names = [type(a).__name__ for a in chain_addons(app)]
            assert names == [
                "AdminAddon",
                "ProxyGuard",
                "RouteAddon",
                "IdentifyAddon",
                "PiiAddon",
                "BudgetAddon",
                "MeterAddon",
                "CommitAddon",
            ]
            modes = _modes(app)
            assert modes[0].startswith("reverse:http://visionality-base.invalid") and modes[0].endswith(
                "@127.0.0.1:4000"
            )
            assert modes[1] == "regular@127.0.0.1:8080" and modes[2].endswith("@127.0.0.1:4001")

    run(go)
