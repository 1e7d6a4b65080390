"""Price catalog: overrides, genai-prices, dated names, tiers, exact Decimal cost, and refusing unknown models."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from visionality.errors import PricingError
from visionality.metering import Usage
from visionality.pricing import ModelPrice, PriceCatalog


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prices.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o-mini-2024-07-18"),
        ("openai", "GPT-4o-mini"),
        ("openai", "openai/gpt-4o-mini"),
    ],
)
def test_gpt_4o_mini_from_genai_prices(catalog: PriceCatalog, provider: str, model: str) -> None:
    p = catalog.price(provider, model)
    assert p.source == "genai-prices"
    assert p.input_per_token == Decimal("0.15") / 1_000_000
    assert p.output_per_token == Decimal("0.6") / 1_000_000
    assert p.cached_input_per_token == Decimal("0.075") / 1_000_000
    assert p.max_output_tokens == 16384


def test_dated_anthropic_name_and_tiers(catalog: PriceCatalog) -> None:
    p = catalog.price("anthropic", "claude-sonnet-4-5-20250929")
    assert p.input_per_token == Decimal("0.000003")
    assert p.output_per_token == Decimal("0.000015")
    assert p.cached_input_per_token == Decimal("3E-7")
    assert p.cache_write_per_token == Decimal("0.00000375")
    assert p.max_output_tokens == 64000
    # Long-context cliff: past 200K input tokens every token pays the higher rate.
    assert p.for_input(200_000).input_per_token == Decimal("0.000003")
    big = p.for_input(200_001)
    assert big.input_per_token == Decimal("0.000006") and big.output_per_token == Decimal("0.0000225")
    assert big.tiers == ()


def test_cost_exact_decimal(catalog: PriceCatalog) -> None:
    u = Usage(input_tokens=1000, output_tokens=100, cached_tokens=200)
    # 800 * 0.15/M + 200 * 0.075/M + 100 * 0.60/M
    assert catalog.cost("openai", "gpt-4o-mini", u) == Decimal("0.000195")
    assert isinstance(catalog.cost("openai", "gpt-4o-mini", u), Decimal)


def test_cost_anthropic_cache_writes_and_tier(catalog: PriceCatalog) -> None:
    u = Usage(input_tokens=1000, output_tokens=10, cached_tokens=300, cache_write_tokens=200, cache_write_1h_tokens=50)
    # 500*3 + 300*0.30 + 150*3.75 + 50*6 + 10*15, all per million tokens
    want = (Decimal(500 * 3) + Decimal("90") + Decimal("562.5") + Decimal(300) + Decimal(150)) / 1_000_000
    assert catalog.cost("anthropic", "claude-sonnet-4-5", u) == want
    big = Usage(input_tokens=250_000, output_tokens=100)
    assert catalog.cost("anthropic", "claude-sonnet-4-5", big) == Decimal("1.50225")


def test_embeddings_have_no_output_price_but_are_priced(catalog: PriceCatalog) -> None:
    p = catalog.price("openai", "text-embedding-3-small")
    assert p.output_per_token == 0 and p.max_output_tokens == 0
    assert catalog.cost("openai", "text-embedding-3-small", Usage(input_tokens=1_000_000)) == Decimal("0.02")


@pytest.mark.parametrize(("provider", "model"), [("openai", "gpt-nonexistent-9"), ("openai", ""), ("gemini", "x")])
def test_unknown_model_is_refused_never_zero(catalog: PriceCatalog, provider: str, model: str) -> None:
    with pytest.raises(PricingError):
        catalog.price(provider, model)
    with pytest.raises(PricingError):
        catalog.cost(provider, model, Usage(input_tokens=1))


def test_override_wins_and_matches_dated_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[models."openai/gpt-4o-mini"]
input_per_mtok = "0.10"
output_per_mtok = "0.40"
cached_input_per_mtok = "0.05"
max_output_tokens = 1000

[models."openai/my-finetune"]
input_per_mtok = "1"
output_per_mtok = 2

[models."anthropic/claude-sonnet-4-5"]
max_output_tokens = 8000
""",
    )
    c = PriceCatalog(path)
    p = c.price("openai", "gpt-4o-mini-2024-07-18")
    assert p == ModelPrice(
        Decimal("0.10") / 1_000_000, Decimal("0.40") / 1_000_000, Decimal("0.05") / 1_000_000, None, 1000, "override"
    )
    assert c.price("openai", "my-finetune").output_per_token == Decimal("0.000002")
    # A limits-only override keeps the catalog's prices.
    s = c.price("anthropic", "claude-sonnet-4-5-20250929")
    assert s.source == "genai-prices" and s.max_output_tokens == 8000
    # Cache writes without a cache-write price fall back to the input price, never 0.
    assert c.cost("openai", "my-finetune", Usage(input_tokens=10, cache_write_tokens=10)) == Decimal("0.00001")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[models."openai/x"]\ninput_per_mtok = 0.15\noutput_per_mtok = "1"\n', 'input_per_mtok = "0.15"'),
        ('[models."openai/x"]\ninput_per_mtok = "abc"\noutput_per_mtok = "1"\n', "not a decimal"),
        ('[models."openai/x"]\ninput_per_mtok = "-1"\noutput_per_mtok = "1"\n', "non-negative"),
        ('[models."openai/x"]\ninput_per_mtok = "NaN"\noutput_per_mtok = "1"\n', "finite"),
        ('[models."openai/x"]\ninput_per_mtok = "1"\n', "both"),
        ('[models."openai/x"]\ninput_per_mtk = "1"\n', "unknown keys"),
        ('[models."x"]\ninput_per_mtok = "1"\noutput_per_mtok = "1"\n', "openai/<model>"),
        ('[models."openai/x"]\nmax_output_tokens = "10"\n', "integer"),
        ('[models."openai/x"]\ncached_input_per_mtok = "1"\n', "need"),
        ("[pricing]\nx = 1\n", "unknown top-level"),
        ("not = [valid\n", "not valid TOML"),
    ],
)
def test_bad_override_files(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(PricingError) as ei:
        PriceCatalog(_write(tmp_path, text))
    assert needle in str(ei.value)


def test_missing_override_file(tmp_path: Path) -> None:
    with pytest.raises(PricingError):
        PriceCatalog(tmp_path / "nope.toml")


def test_worst_input_rate(catalog: PriceCatalog) -> None:
    p = catalog.price("anthropic", "claude-haiku-4-5")
    assert p.worst_input_per_token == max(
        p.input_per_token, p.cache_write_per_token or 0, p.cache_write_1h_per_token or 0
    )
    assert p.worst_input_per_token > p.input_per_token


def test_limits_table_exact_and_undated_only(catalog: PriceCatalog) -> None:
    assert catalog.price("openai", "gpt-4o-2024-05-13").max_output_tokens == 4096
    assert catalog.price("openai", "gpt-4o-2024-08-06").max_output_tokens == 16384
    assert catalog.price("anthropic", "claude-3-5-haiku-latest").max_output_tokens == 8192
    # A model the limits table does not know is None (the caller falls back to its configured default).
    assert catalog.price("openai", "gpt-5.4").max_output_tokens is None
