from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons
from visionality.addons.admin import AdminAddon
from visionality.errors import BudgetUnavailable

from .inprocess import appliance, flow, issue, make_home, run


def test_admin_health_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path, '[projects.PX]\ncap = "10.00"\n')
    user, admin = issue(home), issue(home, "--role", "admin")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            with taddons.context():
                addon = AdminAddon(app.admin)
                results = {}
                for name, key in (("none", None), ("user", user), ("admin", admin)):
                    f = flow(listener="admin", method="GET", path="/_visionality/budget?project=PX", key=key)
                    await addon.requestheaders(f)
                    results[name] = f.response.status_code if f.response else None
                assert results == {"none": 401, "user": 403, "admin": 200}
                f = flow(listener="admin", method="GET", path="/_visionality/health")
                await addon.requestheaders(f)
                assert f.response is not None and f.response.json()["ok"] is True
                base = flow(listener="base", method="GET", path="/_visionality/health")
                await addon.requestheaders(base)
                assert base.response is None  # admin endpoints exist only on the admin listener

    run(go)


def test_counter_backend_down_answers_503_not_400(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis gone: the burn-down cannot be read. That is the appliance's failure (503 appliance_unavailable,
    retry later), not a bad request (400): a monitor must not be told to fix its query."""
    home = make_home(tmp_path, '[projects.PX]\ncap = "10.00"\n')
    admin = issue(home, "--role", "admin")

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:

            async def down(*_: object) -> None:
                raise BudgetUnavailable("redis://127.0.0.1:1/0: connection refused")

            monkeypatch.setattr(app.counters, "status", down)
            with taddons.context():
                f = flow(listener="admin", method="GET", path="/_visionality/budget?project=PX", key=admin)
                await AdminAddon(app.admin).requestheaders(f)
                assert f.response is not None and f.response.status_code == 503
                assert f.response.json()["error"]["code"] == "appliance_unavailable"
                assert f.response.headers["retry-after"] == "5"

    run(go)
