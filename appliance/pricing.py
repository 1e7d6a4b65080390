"""Prices per token, from an operator's override file first and the genai-prices catalog second.

- genai-prices (pydantic/genai-prices on PyPI) is a maintained, offline price catalog with Decimal prices per
  million tokens; it resolves dated names (``gpt-4o-mini-2024-07-18``, ``claude-sonnet-4-5-20250929``) to the
  model they snapshot. Its data ships inside the package: nothing is fetched at run time.
- A model nobody can price raises ``PricingError``: it can be neither reserved nor charged, so the call is
  refused (fail closed) until an operator adds a price. Nothing is ever silently charged 0.
- Money is Decimal end to end; the override file must spell prices as strings (a TOML float is rejected, since
  0.1 is not exact in binary).
- Long-context "cliff" tiers (e.g. Anthropic Sonnet 4/4.5 above 200K input tokens: every token at the higher
  rate) come through as ``ModelPrice.tiers``; ``cost`` applies them, and ``ModelPrice.for_input(n)`` gives the
  rates a request of ``n`` input tokens pays (use the input upper bound for a worst case).
- Output limits (for a budget's worst case when a request sets no max tokens) are not in genai-prices: they come
  from ``data/model_limits.json`` (sources cited there), overridable per model in the TOML file.

See docs/pricing.md for the override file format.
"""

from __future__ import annotations

import json
import re
import threading
import time
import tomllib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from importlib import resources
from pathlib import Path
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

from .errors import PricingError
from .metering.usage import Usage

__all__ = ["ModelPrice", "PriceTier", "PriceCatalog", "normalize_model"]

_MTOK = Decimal(1_000_000)
# A cached genai-prices lookup is re-resolved after this long: some catalog prices are time-constrained.
_CACHE_TTL_S = 3600.0
_CACHE_MAX = 4096
_PROVIDERS = ("openai", "anthropic")
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
_OVERRIDE_KEYS = {
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "cache_write_per_mtok",
    "cache_write_1h_per_mtok",
    "max_output_tokens",
}


@dataclass(frozen=True)
class PriceTier:
    """Rates that apply to a whole request once its input tokens exceed ``above_input_tokens``."""

    above_input_tokens: int
    input_per_token: Decimal
    output_per_token: Decimal
    cached_input_per_token: Decimal | None
    cache_write_per_token: Decimal | None
    cache_write_1h_per_token: Decimal | None = None


@dataclass(frozen=True)
class ModelPrice:
    input_per_token: Decimal
    output_per_token: Decimal
    cached_input_per_token: Decimal | None
    cache_write_per_token: Decimal | None
    max_output_tokens: int | None
    source: str  # "override" | "genai-prices"
    cache_write_1h_per_token: Decimal | None = None
    tiers: tuple[PriceTier, ...] = ()

    def for_input(self, input_tokens: int) -> ModelPrice:
        """The flat rates a request with ``input_tokens`` input tokens pays (tiers resolved, none left)."""
        if not self.tiers:
            return self
        chosen: PriceTier | None = None
        for tier in self.tiers:  # ascending
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        if chosen is None:
            return replace(self, tiers=())
        return replace(
            self,
            input_per_token=chosen.input_per_token,
            output_per_token=chosen.output_per_token,
            cached_input_per_token=chosen.cached_input_per_token,
            cache_write_per_token=chosen.cache_write_per_token,
            cache_write_1h_per_token=chosen.cache_write_1h_per_token,
            tiers=(),
        )

    @property
    def worst_input_per_token(self) -> Decimal:
        """The dearest rate any input token can be billed at (cache writes cost more than plain input)."""
        rates = [self.input_per_token, self.cache_write_per_token, self.cache_write_1h_per_token]
        return max(r for r in rates if r is not None)


def normalize_model(provider: str, model: str) -> str:
    """Lower-case, without a ``provider/`` prefix."""
    m = model.strip().lower()
    prefix = provider.lower() + "/"
    return m[len(prefix) :] if m.startswith(prefix) else m


def _undated(model: str) -> str:
    return _DATE_SUFFIX.sub("", model)


class _FloatLiteral(str):
    """A TOML float kept as its source text, so the error can quote it."""


def _decimal_field(where: str, key: str, value: Any) -> Decimal:
    if isinstance(value, _FloatLiteral):
        raise PricingError(
            f'{where}: {key} = {value} is a TOML float; write it as a string, {key} = "{value}" '
            "(floats are not exact for money)"
        )
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PricingError(f'{where}: {key} must be a decimal string like "0.15", got {type(value).__name__}')
    try:
        d = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise PricingError(f"{where}: {key} = {value!r} is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise PricingError(f"{where}: {key} = {value!r} must be a finite, non-negative number")
    return d


@dataclass(frozen=True)
class _Override:
    input_per_token: Decimal | None
    output_per_token: Decimal | None
    cached_input_per_token: Decimal | None
    cache_write_per_token: Decimal | None
    cache_write_1h_per_token: Decimal | None
    max_output_tokens: int | None
    has_max_output: bool


def _load_overrides(path: Path) -> dict[str, _Override]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PricingError(f"cannot read price overrides {path}: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"), parse_float=_FloatLiteral)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PricingError(f"{path}: not valid TOML: {e}") from None
    extra = set(doc) - {"models"}
    if extra:
        raise PricingError(f'{path}: unknown top-level keys {sorted(extra)}; prices go under [models."provider/model"]')
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise PricingError(f"{path}: [models] must be a table")
    out: dict[str, _Override] = {}
    for name, entry in models.items():
        where = f'{path}: [models."{name}"]'
        provider, sep, model = name.partition("/")
        if not sep or provider.lower() not in _PROVIDERS or not model:
            raise PricingError(f'{where}: the key must be "openai/<model>" or "anthropic/<model>"')
        if not isinstance(entry, dict):
            raise PricingError(f"{where} must be a table")
        unknown = set(entry) - _OVERRIDE_KEYS
        if unknown:
            raise PricingError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_OVERRIDE_KEYS)}")
        per_tok: dict[str, Decimal | None] = {}
        for key in (
            "input_per_mtok",
            "output_per_mtok",
            "cached_input_per_mtok",
            "cache_write_per_mtok",
            "cache_write_1h_per_mtok",
        ):
            per_tok[key] = _decimal_field(where, key, entry[key]) / _MTOK if key in entry else None
        if (per_tok["input_per_mtok"] is None) != (per_tok["output_per_mtok"] is None):
            raise PricingError(f"{where}: set both input_per_mtok and output_per_mtok (or neither)")
        if per_tok["input_per_mtok"] is None and any(
            per_tok[k] is not None for k in ("cached_input_per_mtok", "cache_write_per_mtok", "cache_write_1h_per_mtok")
        ):
            raise PricingError(f"{where}: cache prices need input_per_mtok and output_per_mtok too")
        mot = entry.get("max_output_tokens")
        if mot is not None and (isinstance(mot, bool) or not isinstance(mot, int) or mot < 0):
            raise PricingError(f"{where}: max_output_tokens must be a non-negative integer")
        out[f"{provider.lower()}/{normalize_model(provider, model)}"] = _Override(
            per_tok["input_per_mtok"],
            per_tok["output_per_mtok"],
            per_tok["cached_input_per_mtok"],
            per_tok["cache_write_per_mtok"],
            per_tok["cache_write_1h_per_mtok"],
            mot,
            "max_output_tokens" in entry,
        )
    return out


def _load_limits() -> dict[str, dict[str, int]]:
    text = resources.files(__package__ or "visionality").joinpath("data/model_limits.json").read_text("utf-8")
    doc = json.loads(text)
    return {p: {k.lower(): int(v) for k, v in doc.get(p, {}).items()} for p in _PROVIDERS}


def _per_token(value: Any) -> tuple[Decimal | None, list[tuple[int, Decimal]]]:
    """genai-prices price (Decimal per MTok, or TieredPrices) -> (base per token, [(start, per token)])."""
    if value is None:
        return None, []
    if isinstance(value, TieredPrices):
        return value.base / _MTOK, [(t.start, t.price / _MTOK) for t in value.tiers]
    if isinstance(value, Decimal):
        return value / _MTOK, []
    return None, []


def _tier_rate(base: Decimal | None, tiers: list[tuple[int, Decimal]], start: int) -> Decimal | None:
    rate = base
    for s, p in tiers:  # ascending
        if s <= start:
            rate = p
    return rate


def _rate(base: Decimal, tiers: list[tuple[int, Decimal]], start: int) -> Decimal:
    rate = _tier_rate(base, tiers, start)
    return base if rate is None else rate


class PriceCatalog:
    """Override file first, then genai-prices; unknown models raise ``PricingError``."""

    def __init__(self, override_path: Path | None = None) -> None:
        self._overrides = _load_overrides(Path(override_path)) if override_path is not None else {}
        self._limits = _load_limits()
        self._cache: dict[tuple[str, str], tuple[float, ModelPrice]] = {}
        self._lock = threading.Lock()

    def price(self, provider: str, model: str) -> ModelPrice:
        provider = provider.lower()
        if provider not in _PROVIDERS:
            raise PricingError(f"no prices for provider {provider!r}")
        name = normalize_model(provider, model or "")
        if not name:
            raise PricingError(f"{provider}: the call names no model, so it cannot be priced")
        key = (provider, name)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        price = self._resolve(provider, name)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + _CACHE_TTL_S, price)
        return price

    def cost(self, provider: str, model: str, usage: Usage) -> Decimal:
        """Exact cost in USD: uncached input, cache reads, cache writes and output, each at its rate."""
        p = self.price(provider, model).for_input(usage.input_tokens)
        cached = usage.cached_tokens
        write = usage.cache_write_tokens
        write_1h = min(usage.cache_write_1h_tokens, write)
        uncached = max(0, usage.input_tokens - cached - write)
        # A rate the catalog lacks falls back to the plain input rate: never 0 for tokens that were used.
        cached_rate = p.cached_input_per_token if p.cached_input_per_token is not None else p.input_per_token
        write_rate = p.cache_write_per_token if p.cache_write_per_token is not None else p.input_per_token
        write_1h_rate = p.cache_write_1h_per_token if p.cache_write_1h_per_token is not None else write_rate
        with localcontext() as ctx:
            ctx.prec = 60  # exact for any realistic token count and price
            return (
                uncached * p.input_per_token
                + cached * cached_rate
                + (write - write_1h) * write_rate
                + write_1h * write_1h_rate
                + usage.output_tokens * p.output_per_token
            )

    # -- lookup ---------------------------------------------------------------------------------------

    def _override(self, provider: str, name: str) -> _Override | None:
        for candidate in (name, _undated(name)):
            o = self._overrides.get(f"{provider}/{candidate}")
            if o is not None:
                return o
        return None

    def _limit(self, provider: str, name: str, override: _Override | None) -> int | None:
        if override is not None and override.has_max_output:
            return override.max_output_tokens
        table = self._limits.get(provider, {})
        for candidate in (name, _undated(name)):
            if candidate in table:
                return table[candidate]
        return None

    def _resolve(self, provider: str, name: str) -> ModelPrice:
        override = self._override(provider, name)
        limit = self._limit(provider, name, override)
        if override is not None and override.input_per_token is not None:
            assert override.output_per_token is not None
            return ModelPrice(
                input_per_token=override.input_per_token,
                output_per_token=override.output_per_token,
                cached_input_per_token=override.cached_input_per_token,
                cache_write_per_token=override.cache_write_per_token,
                max_output_tokens=limit,
                source="override",
                cache_write_1h_per_token=override.cache_write_1h_per_token,
            )
        return self._genai(provider, name, limit)

    def _genai(self, provider: str, name: str, limit: int | None) -> ModelPrice:
        try:
            _, info = data_snapshot.get_snapshot().find_provider_model(name, None, provider, None)
            mp = info.get_prices(datetime.now(tz=UTC))
        except LookupError:
            raise PricingError(
                f"no known price for {provider}/{name}: add it to the price override file "
                f'([models."{provider}/{name}"] input_per_mtok = "...", output_per_mtok = "...")'
            ) from None
        except Exception as e:  # a catalog bug must not become a free call
            raise PricingError(f"price catalog failed for {provider}/{name}: {type(e).__name__}: {e}") from None
        inp, inp_t = _per_token(getattr(mp, "input_mtok", None))
        out, out_t = _per_token(getattr(mp, "output_mtok", None))
        cr, cr_t = _per_token(getattr(mp, "cache_read_mtok", None))
        cw, cw_t = _per_token(getattr(mp, "cache_write_mtok", None))
        cw1, cw1_t = _per_token(getattr(mp, "cache_write_1h_mtok", None))
        if inp is None:
            raise PricingError(
                f"{provider}/{name} has no per-token input price in the catalog; set one in the overrides"
            )
        if out is None:
            # Embedding models have no output price because they produce no output tokens.
            out = Decimal(0)
        starts = sorted({s for s, _ in (*inp_t, *out_t, *cr_t, *cw_t, *cw1_t)})
        tiers = tuple(
            PriceTier(
                above_input_tokens=s,
                input_per_token=_rate(inp, inp_t, s),
                output_per_token=_rate(out, out_t, s),
                cached_input_per_token=_tier_rate(cr, cr_t, s),
                cache_write_per_token=_tier_rate(cw, cw_t, s),
                cache_write_1h_per_token=_tier_rate(cw1, cw1_t, s),
            )
            for s in starts
        )
        return ModelPrice(
            input_per_token=inp,
            output_per_token=out,
            cached_input_per_token=cr,
            cache_write_per_token=cw,
            max_output_tokens=limit,
            source="genai-prices",
            cache_write_1h_per_token=cw1,
            tiers=tiers,
        )
