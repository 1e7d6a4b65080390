"""The deployment config (``visionality.toml`` in the home): parsed once, validated, typed.

Every value has a safe default, so ``visionality init`` + ``visionality up`` runs with no edits:
listeners on loopback, the real provider endpoints upstream, the in-process budget backend.
Errors name the key path and what was expected (``ConfigError``).
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .home import Home

__all__ = [
    "Config",
    "ProviderConfig",
    "ProjectConfig",
    "Listen",
    "PROVIDERS",
    "render_initial_config",
]

Period = Literal["total", "month"]

# The providers the appliance meters, their public API origins and the hosts intercepted in
# explicit-proxy mode. Anything not listed is never decrypted (no open proxy).
PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com", ("api.openai.com",)),
    "anthropic": ("https://api.anthropic.com", ("api.anthropic.com",)),
}

# 10 MiB: OpenAI's documented request limit for chat bodies is larger for images, but a prompt
# bigger than this is almost always an accident; operators raise it in [limits].
_DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, where: str) -> Listen:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
        try:
            port_n = int(port)
        except ValueError as e:
            raise ConfigError(f"{where}: port must be a number, got {port!r}") from e
        if not 0 <= port_n <= 65535:
            raise ConfigError(f"{where}: port must be 0..65535, got {port_n}")
        return cls(host.strip("[]"), port_n)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    upstream: str  # scheme://host[:port][/prefix]; the request path is appended
    api_key_env: str  # environment variable holding the provider key (users never hold it)
    api_key_file: Path | None
    intercept_hosts: tuple[str, ...]

    @property
    def scheme(self) -> str:
        return urlsplit(self.upstream).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.upstream).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.upstream)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def path_prefix(self) -> str:
        return urlsplit(self.upstream).path.rstrip("/")

    def api_key(self) -> str | None:
        """The provider key the appliance swaps in. Read at start-up; never logged or recorded."""
        value = os.environ.get(self.api_key_env)
        if value:
            return value.strip()
        if self.api_key_file is not None:
            try:
                return self.api_key_file.read_text().strip() or None
            except OSError:
                return None
        return None


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    name: str
    cap: Decimal | None
    period: Period
    gl_code: str | None
    cost_center: str | None


@dataclass(frozen=True, slots=True)
class Config:
    home: Home
    deployment_id: str
    appliance_id: str
    base_listen: Listen | None
    proxy_listen: Listen | None
    admin_listen: Listen | None
    providers: Mapping[str, ProviderConfig]
    passthrough_hosts: tuple[str, ...]
    max_body_bytes: int
    budget_backend: str  # "memory" | "redis://…"
    redis_timeout_s: float
    month_tz: ZoneInfo
    # Worst-case output tokens for a request that sets no max tokens on a model with no known output limit.
    # None (the default): such a request is refused (400 max_tokens_required) rather than guessed.
    default_output_limit: int | None
    projects: Mapping[str, ProjectConfig]
    pii: Mapping[str, Any]
    prices_path: Path | None
    revocation_redis: str | None
    upstream_timeout_s: float
    ledger_seal_max_rows: int
    ledger_seal_max_age_s: float
    ledger_immutable_files: bool
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def load(cls, home: Home) -> Config:
        home.require()
        try:
            with home.config_path.open("rb") as f:
                raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{home.config_path}: not valid TOML: {e}") from e
        except OSError as e:
            raise ConfigError(f"cannot read {home.config_path}: {e}") from e
        return cls.from_mapping(home, raw)

    @classmethod
    def from_mapping(cls, home: Home, raw: Mapping[str, Any]) -> Config:
        r = _Reader(raw, str(home.config_path))
        dep = r.table("deployment")
        deployment_id = dep.string("id")
        appliance_id = os.environ.get("VISIONALITY_APPLIANCE_ID") or dep.string("appliance_id", "node-1")
        listen = r.table("listen")
        providers: dict[str, ProviderConfig] = {}
        ptab = r.table("providers")
        for name, (origin, hosts) in PROVIDERS.items():
            p = ptab.table(name)
            upstream = p.string("upstream", origin).rstrip("/")
            parts = urlsplit(upstream)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{p.where}.upstream: expected http(s)://host[:port], got {upstream!r}")
            key_file = p.optional_string("api_key_file")
            providers[name] = ProviderConfig(
                name=name,
                upstream=upstream,
                api_key_env=p.string("api_key_env", f"VISIONALITY_{name.upper()}_API_KEY"),
                api_key_file=Path(key_file) if key_file else None,
                intercept_hosts=tuple(p.string_list("intercept_hosts", list(hosts))),
            )
        proxy = r.table("proxy")
        limits = r.table("limits")
        budget = r.table("budget")
        tz_name = budget.string("month_tz", "UTC")
        try:
            month_tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ConfigError(f"{budget.where}.month_tz: unknown time zone {tz_name!r}") from e
        projects: dict[str, ProjectConfig] = {}
        ptabs = r.table("projects")
        for pname in ptabs.keys():
            pt = ptabs.table(pname)
            period = pt.string("period", "month")
            if period not in ("total", "month"):
                raise ConfigError(f"{pt.where}.period: expected 'total' or 'month', got {period!r}")
            projects[pname] = ProjectConfig(
                name=pname,
                cap=pt.optional_money("cap"),
                period=cast(Period, period),
                gl_code=pt.optional_string("gl_code"),
                cost_center=pt.optional_string("cost_center"),
            )
        pricing = r.table("pricing")
        prices = pricing.optional_string("overrides")
        prices_path = Path(prices) if prices else home.root / "prices.toml"
        ledger = r.table("ledger")
        revocation = r.table("revocation")

        def _listen(key: str, default: str) -> Listen | None:
            value = listen.string(key, default)
            return None if value in ("", "off") else Listen.parse(value, f"{listen.where}.{key}")

        return cls(
            home=home,
            deployment_id=deployment_id,
            appliance_id=appliance_id,
            base_listen=_listen("base_url", "127.0.0.1:4000"),
            proxy_listen=_listen("proxy", "127.0.0.1:8080"),
            admin_listen=_listen("admin", "127.0.0.1:4001"),
            providers=providers,
            passthrough_hosts=tuple(proxy.string_list("passthrough_hosts", [])),
            max_body_bytes=limits.integer("max_body_bytes", _DEFAULT_MAX_BODY, minimum=1024),
            budget_backend=budget.string("backend", "memory"),
            redis_timeout_s=budget.integer("redis_timeout_ms", 1000, minimum=10) / 1000,
            month_tz=month_tz,
            default_output_limit=(
                budget.integer("default_output_limit", 1, minimum=1)
                if "default_output_limit" in budget.keys()
                else None
            ),
            projects=projects,
            pii=r.mapping("pii"),
            prices_path=prices_path if prices_path.exists() or prices else None,
            revocation_redis=revocation.optional_string("redis"),
            upstream_timeout_s=float(limits.integer("upstream_timeout_s", 900, minimum=1)),
            ledger_seal_max_rows=ledger.integer("seal_max_rows", 50_000, minimum=1),
            ledger_seal_max_age_s=float(ledger.integer("seal_max_age_s", 30, minimum=1)),
            ledger_immutable_files=ledger.boolean("immutable_files", False),
            raw=raw,
        )


class _Reader:
    """Typed access to one TOML table; every error names the key path."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self._data = data
        self.where = where

    def keys(self) -> list[str]:
        return list(self._data.keys())

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._data.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.where}.{key}: expected a table")
        return value

    def table(self, key: str) -> _Reader:
        return _Reader(self.mapping(key), f"{self.where}.{key}" if self.where else key)

    def string(self, key: str, default: str | None = None) -> str:
        value = self._data.get(key, default)
        if value is None:
            raise ConfigError(f"{self.where}.{key}: required")
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}.{key}: expected a string, got {type(value).__name__}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}.{key}: expected a string, got {type(value).__name__}")
        return value

    def string_list(self, key: str, default: list[str]) -> list[str]:
        value = self._data.get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.where}.{key}: expected a list of strings")
        return list(value)

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self._data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.where}.{key}: expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{self.where}.{key}: must be >= {minimum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._data.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}.{key}: expected true or false, got {value!r}")
        return value

    def optional_money(self, key: str) -> Decimal | None:
        value = self._data.get(key)
        if value is None:
            return None
        # Money is written as a string ("250.00") so TOML floats never round it (DESIGN: Decimal end to end).
        if not isinstance(value, str):
            raise ConfigError(f'{self.where}.{key}: write money as a string, e.g. "250.00"; got {value!r}')
        try:
            amount = Decimal(value)
        except InvalidOperation as e:
            raise ConfigError(f"{self.where}.{key}: not a decimal amount: {value!r}") from e
        if not amount.is_finite() or amount < 0:
            raise ConfigError(f"{self.where}.{key}: must be a finite amount >= 0, got {value!r}")
        return amount


def render_initial_config(*, upstreams: Mapping[str, str], appliance_id: str = "node-1") -> str:
    """The config ``visionality init`` writes: every setting present, commented, with its default."""
    deployment_id = "dep_" + secrets.token_hex(8)
    lines = [
        '# Visionality deployment config. Money is written as strings ("250.00"): never floats.',
        "",
        "[deployment]",
        f'id = "{deployment_id}"  # implicit assertion in every key: keys from another deployment fail',
        f'appliance_id = "{appliance_id}"  # this node\'s ledger stream; env VISIONALITY_APPLIANCE_ID overrides',
        "",
        "[listen]",
        'base_url = "127.0.0.1:4000"  # OPENAI_BASE_URL=http://HOST:4000/v1, Anthropic base_url http://HOST:4000/anthropic',
        'proxy = "127.0.0.1:8080"     # HTTPS_PROXY=http://HOST:8080 with the deployment CA trusted ("off" disables)',
        'admin = "127.0.0.1:4001"     # /_visionality/budget etc.; needs an admin key',
        "",
    ]
    for name, (origin, hosts) in PROVIDERS.items():
        lines += [
            f"[providers.{name}]",
            f'upstream = "{upstreams.get(name, origin)}"',
            f'api_key_env = "VISIONALITY_{name.upper()}_API_KEY"  # or api_key_file = "/path" (mode 0600)',
            f"intercept_hosts = {list(hosts)!r}".replace("'", '"'),
            "",
        ]
    lines += [
        "[proxy]",
        "passthrough_hosts = []  # hosts tunnelled untouched in proxy mode; every other host is refused",
        "",
        "[limits]",
        f"max_body_bytes = {_DEFAULT_MAX_BODY}",
        "upstream_timeout_s = 900",
        "",
        "[budget]",
        'backend = "memory"  # or "redis://127.0.0.1:6379/0" to share counters across appliance nodes',
        'month_tz = "UTC"',
        "redis_timeout_ms = 1000  # a Redis answer slower than this refuses the call (503), never allows it",
        "# Output tokens to reserve when a request sets no max tokens and the model's output limit is unknown.",
        "# Unset: such requests are refused (400 max_tokens_required). Setting it is a guess, not a bound.",
        "# default_output_limit = 32000",
        "",
        "# [projects.PROJ]",
        '# cap = "500.00"',
        '# period = "month"',
        '# gl_code = "6150-AI"',
        '# cost_center = "CC-ENG"',
        "",
        "[pricing]",
        '# overrides = "/path/prices.toml"  # default: prices.toml in this home when present',
        "",
        "[revocation]",
        '# redis = "redis://127.0.0.1:6379/0"  # share revocations across nodes',
        "",
        "[ledger]",
        "seal_max_rows = 50000",
        "seal_max_age_s = 30",
        "# chattr +i on each sealed file (needs root or CAP_LINUX_IMMUTABLE; after a crash, clear it before repair).",
        "immutable_files = false",
        "",
        "[pii]",
        "# See docs/pii.md: per-detector action/threshold, allow_list, per-project policy.",
        "",
    ]
    return "\n".join(lines)
