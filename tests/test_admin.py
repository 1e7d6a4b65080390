from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from visionality.errors import EnvelopeError, RevokedError

from .inprocess import appliance, issue, make_home, run


def test_authorize_and_budget_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path, '[projects.PQ]\ncap = "7.50"\nperiod = "total"\n')
    user = issue(home, "--budget", "3", "--task", "PQ-1")
    admin = issue(home, "--role", "admin")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with pytest.raises(EnvelopeError):
                app.admin.authorize({})
            with pytest.raises(RevokedError, match="admin role"):
                app.admin.authorize({"authorization": f"Bearer {user}"})
            assert app.admin.authorize({"authorization": f"Bearer {admin}"}).role == "admin"
            by_sub = await app.admin.budget(project=None, key_id=None, sub="alice")
            assert [(c["scope"], c["cap"]) for c in by_sub["caps"]] == [("key", Decimal("3"))]
            by_project = await app.admin.budget(project="PQ", key_id=None, sub=None)
            assert [(c["scope"], c["id"], c["period"]) for c in by_project["caps"]] == [("project", "PQ", "total")]
            everything = await app.admin.budget(project=None, key_id=None, sub=None)
            assert {c["scope"] for c in everything["caps"]} == {"key", "project"}
            status, health = app.admin.health()
            assert status == 200 and health["ledger_ok"] and health["revocations_ok"]

    run(go)
