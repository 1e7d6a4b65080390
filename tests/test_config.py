from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from visionality.config import Config, Listen, render_initial_config
from visionality.errors import ConfigError
from visionality.home import Home


def _home(tmp_path: Path, text: str) -> Home:
    home = Home(tmp_path)
    home.config_path.write_text(text)
    return home


def test_initial_config_loads_with_safe_defaults(tmp_path: Path) -> None:
    home = _home(tmp_path, render_initial_config(upstreams={"openai": "http://127.0.0.1:9"}))
    c = Config.load(home)
    assert c.deployment_id.startswith("dep_")
    assert c.base_listen == Listen("127.0.0.1", 4000) and c.proxy_listen == Listen("127.0.0.1", 8080)
    assert c.providers["openai"].upstream == "http://127.0.0.1:9"
    assert c.providers["anthropic"].upstream == "https://api.anthropic.com"
    assert c.providers["openai"].intercept_hosts == ("api.openai.com",)
    assert c.budget_backend == "memory" and c.passthrough_hosts == ()


def test_projects_money_is_decimal_from_strings(tmp_path: Path) -> None:
    text = render_initial_config(upstreams={}) + '\n[projects.PROJ]\ncap = "500.10"\ngl_code = "6150"\n'
    c = Config.load(_home(tmp_path, text))
    assert c.projects["PROJ"].cap == Decimal("500.10") and c.projects["PROJ"].period == "month"


def test_float_money_is_rejected_with_key_path(tmp_path: Path) -> None:
    text = render_initial_config(upstreams={}) + "\n[projects.PROJ]\ncap = 500.1\n"
    with pytest.raises(ConfigError, match=r"projects\.PROJ\.cap.*string"):
        Config.load(_home(tmp_path, text))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('[listen]\nbase_url = "nope"', "HOST:PORT"),
        ('[providers.openai]\nupstream = "ftp://x"', "http"),
        ('[budget]\nmonth_tz = "Mars/Base"', "time zone"),
        ("[limits]\nmax_body_bytes = 1", ">= 1024"),
        ('[ledger]\nimmutable_files = "yes"', "true or false"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, patch: str, message: str) -> None:
    text = '[deployment]\nid = "dep_test"\n' + patch + "\n"
    with pytest.raises(ConfigError, match=message):
        Config.load(_home(tmp_path, text))


def test_minimal_config_is_enough(tmp_path: Path) -> None:
    c = Config.load(_home(tmp_path, '[deployment]\nid = "dep_test"\n'))
    assert c.appliance_id == "node-1" and c.providers["openai"].upstream == "https://api.openai.com"


def test_missing_home_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="visionality init"):
        Config.load(Home(tmp_path / "nothing"))


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(_home(tmp_path, "[deployment\n"))
