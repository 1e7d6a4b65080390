from __future__ import annotations

from pathlib import Path

import pytest
from visionality.burndown import fetch_status, render_table
from visionality.config import Config, render_initial_config
from visionality.errors import VisionalityError
from visionality.home import Home


def test_render_table() -> None:
    data = {
        "as_of": "2026-12-03T00:00:00Z",
        "appliance_id": "node-1",
        "caps": [
            {
                "scope": "key",
                "id": "key_1",
                "bucket": "key:key_1:2026-12",
                "cap": "5",
                "spent": "1.25",
                "reserved": "0.10",
                "remaining": "3.65",
                "burn_rate_per_hour": "0.5",
            }
        ],
    }
    out = render_table(data)
    lines = out.splitlines()
    assert lines[0].split() == ["scope", "id", "period", "cap", "spent", "reserved", "remaining", "burn/h"]
    assert lines[2].split() == ["key", "key_1", "2026-12", "5", "1.25", "0.10", "3.65", "0.5"]
    assert render_table({"caps": [], "as_of": "t"}).startswith("no caps match")


def test_no_appliance_listening_is_a_clear_error(tmp_path: Path) -> None:
    from nacl.signing import SigningKey
    from visionality.paserk import k4_secret

    home = Home(tmp_path)
    home.keys_dir.mkdir()
    sk = SigningKey.generate()
    home.signing_key_path.write_text(k4_secret(bytes(sk) + bytes(sk.verify_key)))
    home.config_path.write_text(render_initial_config(upstreams={}).replace("127.0.0.1:4001", "127.0.0.1:1"))
    with pytest.raises(VisionalityError, match="no appliance answering"):
        fetch_status(Config.load(home), project=None, key_id=None, sub=None, timeout_s=1)
