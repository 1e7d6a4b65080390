"""Shared fixtures. The e2e ones start real processes (see tests/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Appliance, FakeProviderProc


@pytest.fixture(scope="session")
def fake_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeProviderProc]:
    log = tmp_path_factory.mktemp("fake") / "requests.jsonl"
    proc = FakeProviderProc.start(log)
    yield proc
    proc.stop()


@pytest.fixture
def provider(fake_provider: FakeProviderProc) -> FakeProviderProc:
    """The session's fake provider with its request log cleared for this test."""
    fake_provider.clear()
    return fake_provider


@pytest.fixture
def make_appliance(tmp_path: Path, provider: FakeProviderProc) -> Iterator[...]:  # type: ignore[misc]
    started: list[Appliance] = []

    def make(
        *, config_extra: str = "", appliance_id: str = "node-1", home: Path | None = None, start: bool = True
    ) -> Appliance:
        app = Appliance.create(
            home or tmp_path / f"home-{len(started)}",
            provider.url,
            config_extra=config_extra,
            appliance_id=appliance_id,
        )
        started.append(app)
        if start:
            app.start()
        return app

    yield make
    for app in started:
        app.stop()


@pytest.fixture
def appliance(make_appliance) -> Appliance:  # type: ignore[no-untyped-def]
    return make_appliance()
