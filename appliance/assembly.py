"""Building a running appliance from its config: every component, wired once, in dependency order.

Start-up order matters for the guarantees: the ledger replays its WAL first (so calls cut off by a crash
become rows), then the budget counters are rebuilt from the ledger (so a restart never forgets spend),
then revocations are loaded, and only then does the proxy open its listeners.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from nacl.signing import SigningKey

from .admin import AdminApi
from .budget import Cap, Counters, bucket_for, counters_from_setting
from .callpath import CallPath
from .config import Config
from .envelope import EnvelopeVerifier
from .errors import BudgetUnavailable, ConfigError, LedgerError
from .identity import Identity
from .ledger.events import EventLog
from .ledger.ledger import Ledger
from .ledger.views import open_views
from .paserk import k4_pid
from .pii import PiiPolicy, PiiScanner
from .pricing import PriceCatalog
from .registry import KeyRegistry
from .revocation import RedisRevocationFeed, RevocationFile, RevocationSet, RevocationSource, RevocationWatcher

__all__ = ["Appliance", "assemble", "spend_by_bucket"]

log = logging.getLogger("visionality.assembly")


@dataclass(slots=True)
class Appliance:
    config: Config
    callpath: CallPath
    admin: AdminApi
    ledger: Ledger
    counters: Counters
    watcher: RevocationWatcher
    seeder: asyncio.Task[None]

    def health(self) -> Mapping[str, Any]:
        return {
            "ledger_ok": self.ledger.healthy,
            "revocations_ok": self.watcher.healthy,
            "appliance_id": self.config.appliance_id,
        }

    async def close(self) -> None:
        self.seeder.cancel()
        await self.watcher.stop()
        await self.callpath.drain()  # settlements still running write their rows before the ledger closes
        try:
            await self.ledger.close()
        finally:
            await self.counters.close()


async def assemble(config: Config) -> Appliance:
    home = config.home
    signing_key = home.signing_key()
    public = bytes(signing_key.verify_key)
    verifier = EnvelopeVerifier({k4_pid(public): public}, config.deployment_id)

    ledger = Ledger(
        home.ledger_dir,
        appliance_id=config.appliance_id,
        signing_key=signing_key,
        seal_max_rows=config.ledger_seal_max_rows,
        seal_max_age_s=config.ledger_seal_max_age_s,
        immutable_files=config.ledger_immutable_files,
    )
    report = await ledger.start()
    log.info("ledger ready: %s", report)
    _record_config(config, signing_key)

    # In process, a settled reservation id is remembered 10 minutes (client retries come within seconds); the
    # backend's default of a day would hold ~43 million ids at 500 calls/s.
    app_holder: list[Appliance] = []

    def reseed() -> None:
        """Redis came back empty while we run: rebuild from the ledger again (same SET NX rule as at start)."""
        if app_holder and app_holder[0].seeder.done():
            log.warning("budget counters in Redis lost their seed (restarted empty?); rebuilding from the ledger")
            app_holder[0].seeder = asyncio.create_task(_seed_counters(config, counters), name="reseed-counters")

    extra: dict[str, Any] = (
        {"timeout_s": config.redis_timeout_s, "on_unseeded": reseed}
        if config.budget_backend != "memory"
        else {"settled_ttl_s": 600.0}
    )
    counters = counters_from_setting(config.budget_backend, month_tz=config.month_tz, **extra)
    seeder = asyncio.create_task(_seed_counters(config, counters), name="seed-counters")
    try:
        await asyncio.wait_for(asyncio.shield(seeder), timeout=5.0)
    except TimeoutError:
        pass  # still retrying in the background; until it succeeds every call is refused with 503

    revocations = RevocationSet()
    sources: list[RevocationSource] = [RevocationFile(home.revocations_path)]
    if config.revocation_redis:
        sources.append(RedisRevocationFeed(config.revocation_redis))
    watcher = RevocationWatcher(revocations, sources)
    await watcher.poll_once()  # the full list is in force before the first call is accepted
    await watcher.start()

    identity = Identity(verifier, revocations, lambda: watcher.healthy)
    pii = PiiScanner(PiiPolicy.from_mapping(config.pii))
    prices = PriceCatalog(config.prices_path)
    provider_keys = {name: p.api_key() for name, p in config.providers.items()}
    for name, key in provider_keys.items():
        if not key:
            log.warning(
                "no %s key: set %s (calls to %s will be refused with 503)",
                name,
                config.providers[name].api_key_env,
                name,
            )
    callpath = CallPath(config, identity, pii, counters, prices, ledger, provider_keys)
    admin = AdminApi(config, identity, counters, KeyRegistry(home.key_registry_path), lambda: app_holder[0].health())
    app = Appliance(config, callpath, admin, ledger, counters, watcher, seeder)
    app_holder.append(app)
    return app


async def _seed_counters(config: Config, counters: Counters) -> None:
    """Rebuild the counters from the ledger, retrying while the backend is unreachable.

    A Redis that is down at start-up must not stop the appliance from starting, and must not let a call through
    unmetered either: until the seed succeeds the counters refuse (BudgetUnavailable -> 503), and this task
    retries every few seconds."""
    delay = 0.5
    while True:
        try:
            await counters.rebuild(spend_by_bucket(config, datetime.now(config.month_tz)), {})
            return
        except BudgetUnavailable as e:
            log.error("budget counters unavailable (%s); refusing calls with 503, retrying in %.0f s", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _file_digest(path: Path | None) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    except OSError:
        return None


def _record_config(config: Config, signing_key: SigningKey) -> None:
    """Every start records which config and prices it runs with (SHA-256), in the events stream: an edit made
    between two runs shows up as a changed digest, with the time it took effect (SOC 2 CC8.1 change evidence)."""
    EventLog(config.home.ledger_dir, writer_id=config.appliance_id, signing_key=signing_key).append(
        "config_loaded",
        appliance_id=config.appliance_id,
        deployment_id=config.deployment_id,
        config_sha256=_file_digest(config.home.config_path),
        prices_sha256=_file_digest(config.prices_path),
        budget_backend=config.budget_backend.split("@")[-1],  # never a Redis password
        by=os.environ.get("USER") or "unknown",
    )


def spend_by_bucket(config: Config, now: datetime) -> dict[str, Decimal]:
    """Settled spend per budget bucket, from every stream in the ledger (this month and all time).

    Unsettled intents of this node were turned into rows by ``Ledger.start`` (charged at their reserved
    worst case), so they are counted here too.
    """
    try:
        con = open_views(config.home.ledger_dir)
    except LedgerError as e:
        raise ConfigError(f"cannot read the ledger to rebuild budget counters: {e}") from e
    tz = str(config.month_tz)
    try:
        rows = con.execute(
            """
            SELECT key_id, project, strftime(timezone(?, ts), '%Y-%m') AS month, sum(cost_usd) AS spent
            FROM commits WHERE cost_usd > 0 GROUP BY ALL
            """,
            [tz],
        ).fetchall()
    finally:
        con.close()
    month_now = now.strftime("%Y-%m")
    out: dict[str, Decimal] = {}
    zero = Decimal(0)
    for key_id, project, month, spent in rows:
        amount = Decimal(str(spent))
        at = datetime.strptime(month + "-15", "%Y-%m-%d").replace(tzinfo=config.month_tz)
        scopes: tuple[tuple[Literal["key", "project"], str | None], ...] = (("key", key_id), ("project", project))
        for scope, ident in scopes:
            if not ident:
                continue
            total = bucket_for(Cap(scope, ident, zero, "total"), at, month_tz=config.month_tz)
            out[total] = out.get(total, zero) + amount
            if month == month_now:
                monthly = bucket_for(Cap(scope, ident, zero, "month"), at, month_tz=config.month_tz)
                out[monthly] = out.get(monthly, zero) + amount
    return out
