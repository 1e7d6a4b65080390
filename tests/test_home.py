from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey
from visionality.errors import ConfigError
from visionality.home import Home, resolve_home
from visionality.paserk import k4_secret


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONALITY_HOME", str(tmp_path / "env"))
    assert resolve_home(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert resolve_home(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv("VISIONALITY_HOME")
    assert resolve_home(None).name == ".visionality"


def test_signing_key_round_trip_and_errors(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.keys_dir.mkdir()
    sk = SigningKey.generate()
    home.signing_key_path.write_text(k4_secret(bytes(sk) + bytes(sk.verify_key)))
    assert bytes(home.signing_key()) == bytes(sk)
    home.signing_key_path.write_text("k4.public.abc")
    with pytest.raises(ConfigError, match="k4.secret"):
        home.signing_key()
    other = SigningKey.generate()
    good = k4_secret(bytes(other) + bytes(other.verify_key))
    mixed = k4_secret(bytes(sk) + bytes(sk.verify_key))[: len("k4.secret.") + 43] + good[len("k4.secret.") + 43 :]
    home.signing_key_path.write_text(mixed)  # seed of one key, public half of another
    with pytest.raises(ConfigError):
        home.signing_key()


def test_systemd_unit_makes_only_the_ledger_and_run_dir_writable() -> None:
    """The unit's ReadWritePaths are exactly where `visionality up` writes under its home (issue 3)."""
    unit = (Path(__file__).parent.parent / "systemd" / "visionality.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.lstrip().startswith("#")
    )
    home = Home(Path(settings["Environment"].split("=", 1)[1]))
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"].split() == [str(home.ledger_dir), str(home.listeners_path("n").parent)]
