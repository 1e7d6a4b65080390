"""``visionality budget status``: the live burn-down, asked of the running appliance's admin listener.

The CLI holds the deployment key, so it mints itself a short-lived admin envelope (2 minutes) instead of
asking the operator for one. When no appliance is listening, it says so and exits non-zero: counters
(reservations in flight) live in the appliance, and an offline guess would be a different number.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Config
from .envelope import Claims, EnvelopeSigner
from .errors import VisionalityError

__all__ = ["fetch_status", "render_table", "admin_token"]


def admin_token(config: Config, *, lifetime: timedelta = timedelta(minutes=2)) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    claims = Claims(
        iss=config.deployment_id,
        sub="visionality-cli",
        email="visionality-cli@localhost",
        jti="adm_" + secrets.token_hex(8),
        iat=now,
        exp=now + lifetime,
        nbf=None,
        project=None,
        task=None,
        memo="budget status",
        url=None,
        budget=None,
        role="admin",
    )
    return EnvelopeSigner(config.home.signing_key(), config.deployment_id).issue(claims)


def fetch_status(
    config: Config, *, project: str | None, key_id: str | None, sub: str | None, timeout_s: float = 5.0
) -> dict[str, Any]:
    admin = _admin_address(config)
    query = urllib.parse.urlencode({k: v for k, v in (("project", project), ("key_id", key_id), ("sub", sub)) if v})
    url = f"http://{admin}/_visionality/budget" + (f"?{query}" if query else "")
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {admin_token(config)}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except urllib.error.HTTPError as e:
        raise VisionalityError(f"the appliance refused the status request: HTTP {e.code} {e.read()[:300]!r}") from e
    except (urllib.error.URLError, OSError) as e:
        raise VisionalityError(f"no appliance answering on {admin} ({e}); start it with `visionality up`") from e


def _admin_address(config: Config) -> str:
    """The running appliance's admin address: what it recorded at start-up, else the configured one."""
    try:
        recorded = json.loads(config.home.listeners_path(config.appliance_id).read_text())
        if isinstance(recorded, dict) and isinstance(recorded.get("admin"), str):
            return str(recorded["admin"])
    except (OSError, ValueError):
        pass
    if config.admin_listen is None:
        raise VisionalityError("the admin listener is off (listen.admin): no live status to ask for")
    return str(config.admin_listen)


def render_table(data: dict[str, Any]) -> str:
    header = ("scope", "id", "period", "cap", "spent", "reserved", "remaining", "burn/h")
    rows = [
        (
            c["scope"],
            c["id"],
            c["bucket"].rsplit(":", 1)[-1],
            c["cap"],
            c["spent"],
            c["reserved"],
            c["remaining"],
            c["burn_rate_per_hour"],
        )
        for c in data.get("caps", [])
    ]
    if not rows:
        return f"no caps match (as of {data.get('as_of')})"
    cols = [header, *[tuple(str(v) for v in r) for r in rows]]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    lines = ["  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in cols]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"as of {data.get('as_of')} from {data.get('appliance_id')}")
    return "\n".join(lines)
