from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from visionality.envelope import Budget, Claims
from visionality.errors import ConfigError
from visionality.registry import KeyRegistry


def _claims(jti: str, sub: str) -> Claims:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return Claims(
        iss="dep",
        sub=sub,
        email=f"{sub}@x",
        jti=jti,
        iat=now,
        exp=None,
        nbf=None,
        project="P",
        task=None,
        memo=None,
        url=None,
        budget=Budget(Decimal("5.00"), "month"),
    )


def test_add_find_and_by_sub(tmp_path: Path) -> None:
    reg = KeyRegistry(tmp_path / "keys.jsonl")
    reg.add(_claims("k1", "alice"), kid="k4.pid.x")
    reg.add(_claims("k2", "alice"), kid="k4.pid.x")
    reg.add(_claims("k3", "bob"), kid="k4.pid.x")
    found = reg.find("k2")
    assert found is not None and found.budget == Budget(Decimal("5.00"), "month")
    assert [c.jti for c in reg.by_sub("alice")] == ["k1", "k2"]
    assert reg.find("nope") is None
    assert "v4.public" not in (tmp_path / "keys.jsonl").read_text()
    assert (tmp_path / "keys.jsonl").stat().st_mode & 0o777 == 0o600


def test_torn_last_line_is_ignored_and_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    reg = KeyRegistry(path)
    reg.add(_claims("k1", "alice"), kid="k")
    with path.open("a") as f:
        f.write('{"half": ')
    assert [c.jti for c in reg.claims()] == ["k1"]
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match="keys.jsonl:1"):
        list(reg.claims())
    assert list(KeyRegistry(tmp_path / "missing").claims()) == []
