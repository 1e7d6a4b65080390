"""Worst-case bounds: every rule errs upwards, and what cannot be bounded is refused."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from visionality.errors import RequestRejected
from visionality.estimate import (
    DEFAULT_MEDIA_PART_TOKENS,
    PROVIDER_TOOL_TOKENS,
    TOOL_PREAMBLE_TOKENS,
    EstimateError,
    UnboundedInput,
    UnpricedFeature,
    check_billing_features,
    input_token_bound,
    media_part_token_bound,
    output_token_bound,
    worst_case_cost,
)

D = Decimal


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello in French, please."}]}


# -- input -----------------------------------------------------------------------------------------


def test_text_is_bounded_by_its_utf8_bytes() -> None:
    raw = body(CHAT)
    assert input_token_bound(raw) == len(raw)
    # multi-byte text counts bytes, not characters: each token covers at least one byte
    cjk = json.dumps({"model": "m", "messages": [{"role": "user", "content": "予算" * 50}]}, ensure_ascii=False)
    assert input_token_bound(cjk.encode()) == len(cjk.encode()) > len(cjk)


def test_template_overhead_is_covered_by_json_punctuation() -> None:
    """OpenAI's cookbook: ~3 tokens per message plus 3 to prime the reply. Even empty messages carry
    more JSON bytes than that."""
    messages = [{"role": "user", "content": ""} for _ in range(100)]
    raw = body({"model": "m", "messages": messages})
    assert input_token_bound(raw) >= 100 * 4 + 3


def test_context_limit_caps_the_bound() -> None:
    raw = body({"model": "m", "messages": [{"role": "user", "content": "x" * 10_000}]})
    assert input_token_bound(raw, context_limit=4096) == 4096
    assert input_token_bound(body(CHAT), context_limit=4096) == len(body(CHAT))


def test_tiny_image_costs_the_per_image_bound_not_its_bytes() -> None:
    """Counter-example to "base64 is larger than its tokens": a one-colour image compresses to a
    few dozen bytes and still costs up to 1,445 tokens on gpt-4o (48,169 on gpt-4o-mini)."""
    tiny = "data:image/webp;base64," + base64.b64encode(b"RIFF\x1a\x00\x00\x00WEBPVP8L" + bytes(14)).decode()
    part = {"type": "image_url", "image_url": {"url": tiny, "detail": "high"}}
    raw = body({"model": "gpt-4o", "messages": [{"role": "user", "content": [part]}]})
    per_image = media_part_token_bound("openai", "gpt-4o")
    assert per_image == 1445
    assert len(raw) < per_image
    assert input_token_bound(raw, media_part_tokens=per_image) == len(raw) - len(tiny) + per_image


def test_large_image_bytes_are_replaced_not_added() -> None:
    """A 1 MB base64 image would otherwise reserve a million input tokens."""
    big = "data:image/png;base64," + "A" * 1_000_000
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": big}}]
    raw = body({"model": "gpt-4o", "messages": [{"role": "user", "content": parts}]})
    assert input_token_bound(raw, media_part_tokens=1445) == len(raw) - len(big) + 1445 < 2000


@pytest.mark.parametrize(
    ("container", "part"),
    [
        ("input", {"type": "input_image", "image_url": "https://example.com/cat.png"}),  # OpenAI Responses
        ("messages", {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}),  # OpenAI chat
        ("messages", {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}),  # Anthropic
        ("messages", {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}),
        ("messages", {"type": "image", "source": {"type": "file", "file_id": "file_abc"}}),  # still one image
    ],
)
def test_every_image_shape_is_counted(container: str, part: dict[str, Any]) -> None:
    raw = body({"model": "m", container: [{"role": "user", "content": [part]}]})
    assert input_token_bound(raw, media_part_tokens=2000) >= 2000


@pytest.mark.parametrize(
    "wrapped",
    [
        # Anthropic tool_use.input takes any object and bills it as JSON text (audit finding 3).
        {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "P"}]}]},
        # OpenAI chat function-call arguments and Responses function calls are text too.
        {"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"arguments": "P"}}]}]},
        {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "P"}]},
        {"metadata": "P"},
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "parameters": "P"}]},
    ],
)
def test_image_typed_object_outside_a_content_part_is_billed_as_text(wrapped: dict[str, Any]) -> None:
    """``{"type":"image","data":"word "*40000}`` inside tool_use.input is ~50K text tokens: its bytes stay
    in the bound, they are not swapped for one image's 2,000 tokens."""
    payload = {"type": "image", "source": {"type": "base64", "data": "word " * 40_000}, "url": "x", "data": "y"}
    text = json.dumps(wrapped).replace('"P"', json.dumps(payload))
    raw = body({"model": "claude-sonnet-4-5", "max_tokens": 10, **json.loads(text)})
    assert input_token_bound(raw, media_part_tokens=2000) >= len(raw) > 200_000


def test_tool_results_and_tool_outputs_carry_real_images() -> None:
    big = "A" * 500_000
    anthropic = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big}}
    result = {"type": "tool_result", "tool_use_id": "t", "content": [anthropic]}
    raw = body({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [result]}]})
    assert input_token_bound(raw, media_part_tokens=2000) == len(raw) - len(big) + 2000
    output = {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": big}]}
    shot = {"type": "computer_call_output", "call_id": "d", "output": {"type": "computer_screenshot", "image_url": big}}
    raw = body({"model": "m", "input": [output, shot]})
    assert input_token_bound(raw, media_part_tokens=1445) == len(raw) - 2 * len(big) + 2 * 1445


def test_screenshot_by_short_url_costs_an_image_not_its_bytes() -> None:
    shot = {"type": "computer_screenshot", "image_url": "https://example.com/s.png"}
    raw = body({"model": "computer-use-preview", "input": [{"type": "computer_call_output", "output": shot}]})
    assert input_token_bound(raw, media_part_tokens=1097) > 1097


def test_image_hidden_behind_json_escapes_is_still_counted() -> None:
    raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"\\u0069mage_url",' + (
        b'"image_url":{"url":"https://example.com/a.png"}}]}]}'
    )
    assert input_token_bound(raw, media_part_tokens=1445) > 1445


def test_duplicate_json_keys_are_refused() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","type":"text","text":"hi"}]}]}'
    with pytest.raises(EstimateError, match="repeats the JSON key 'type'") as ei:
        input_token_bound(raw)
    assert ei.value.code == "duplicate_json_key"


def test_tools_add_the_providers_hidden_prompt() -> None:
    function = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    raw = body({**CHAT, "tools": [function]})
    assert input_token_bound(raw) == len(raw) + TOOL_PREAMBLE_TOKENS
    anthropic = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": CHAT["messages"]}
    tools = [{"type": "computer_20250124", "name": "computer"}, {"type": "bash_20250124", "name": "bash"}]
    raw = body({**anthropic, "tools": tools})
    assert input_token_bound(raw) == len(raw) + TOOL_PREAMBLE_TOKENS + 2 * PROVIDER_TOOL_TOKENS


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "web_search"}]},
        {"tools": [{"type": "web_search_preview"}]},
        {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
        {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
        {"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://x"}]},
        {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
        {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]},
        {"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]},
        {"web_search_options": {}},
    ],
)
def test_server_run_tools_cannot_be_bounded(extra: dict[str, Any]) -> None:
    with pytest.raises(UnboundedInput) as ei:
        input_token_bound(body({**CHAT, **extra}), context_limit=128_000)
    assert (ei.value.status, ei.value.code) == (400, "budget_unbounded")


@pytest.mark.parametrize(
    "extra",
    [
        {"previous_response_id": "resp_123"},
        {"conversation": "conv_123"},
        {"prompt": {"id": "pmpt_123"}},
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "JVBERi0x"}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64"}}]}]},
        {"input": [{"type": "reasoning", "encrypted_content": "gAAAA", "summary": []}]},
    ],
)
def test_server_side_content_needs_the_context_window(extra: dict[str, Any]) -> None:
    raw = body({**CHAT, **extra})
    with pytest.raises(UnboundedInput, match="context window"):
        input_token_bound(raw)
    assert input_token_bound(raw, context_limit=200_000) == 200_000


@pytest.mark.parametrize("raw", [b"--boundary\r\nContent-Disposition: form-data", b"[1, 2]", b"\xff\xfe{"])
def test_non_json_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(UnboundedInput):
        input_token_bound(raw)


def test_deeply_nested_body_is_refused() -> None:
    with pytest.raises(UnboundedInput):
        input_token_bound(b"[" * 100_000 + b"]" * 100_000)


def test_media_bound_per_model() -> None:
    assert media_part_token_bound("openai", "gpt-4o-mini") == 48_169
    assert media_part_token_bound("openai", "gpt-4o-mini-2024-07-18") == 48_169  # not gpt-4o's 1,445
    assert media_part_token_bound("openai", "gpt-4o-2024-08-06") == 1_445
    assert media_part_token_bound("openai", "gpt-4.1-nano") == 3_779
    assert media_part_token_bound("openai", "o3") == 1_275
    assert media_part_token_bound("anthropic", "claude-opus-4-1") == 2_000
    assert media_part_token_bound("openai", "gpt-9-turbo") == DEFAULT_MEDIA_PART_TOKENS == 48_169
    assert media_part_token_bound("openai", "gpt-4o1") == DEFAULT_MEDIA_PART_TOKENS  # no loose prefixes


# -- output ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "endpoint", "req", "expected"),
    [
        ("openai", "chat.completions", {"max_tokens": 100}, 100),
        ("openai", "chat.completions", {"max_completion_tokens": 300}, 300),
        ("openai", "chat.completions", {"max_completion_tokens": 300, "max_tokens": 500}, 500),  # larger counts
        ("openai", "chat.completions", {"max_tokens": 100, "n": 3}, 300),
        ("openai", "chat.completions", {"max_tokens": None}, 16_384),  # null is absent: the model limit
        ("openai", "chat.completions", {}, 16_384),
        # The request's cap is the bound even above the table: the provider enforces it (or refuses, unbilled).
        ("openai", "chat.completions", {"max_tokens": 10**9}, 10**9),
        ("openai", "completions", {"max_tokens": 50, "n": 2, "best_of": 5}, 250),
        ("openai", "responses", {"max_output_tokens": 2048}, 2048),
        ("openai", "responses", {"max_tokens": 5}, 16_384),  # not a Responses field
        ("anthropic", "messages", {"max_tokens": 1024}, 1024),
        ("anthropic", "messages", {"max_tokens": 8000, "thinking": {"budget_tokens": 6000}}, 8000),
        ("openai", "embeddings", {"max_tokens": 100}, 0),
        ("openai", "moderations", {}, 0),
    ],
)
def test_output_bound(provider: str, endpoint: str, req: dict[str, Any], expected: int) -> None:
    assert output_token_bound(provider, endpoint, req, model_limit=16_384, default_limit=4096) == expected


def test_output_bound_without_model_limit() -> None:
    assert output_token_bound("openai", "chat.completions", {}, model_limit=None, default_limit=4096) == 4096
    req = {"max_tokens": 100_000}
    assert output_token_bound("openai", "chat.completions", req, model_limit=None, default_limit=4096) == 100_000
    assert output_token_bound("openai", "chat.completions", req, model_limit=None, default_limit=None) == 100_000


def test_claude_3_7_output_128k_beta_max_tokens_is_the_bound() -> None:
    """With ``anthropic-beta: output-128k-2025-02-19`` Claude 3.7 Sonnet bills up to 128K output while
    the table says 64K: the client's own max_tokens is reserved, never lowered to the table's figure."""
    req = {"max_tokens": 128_000}
    assert output_token_bound("anthropic", "messages", req, model_limit=64_000, default_limit=None) == 128_000


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [("chat.completions", "max_completion_tokens"), ("responses", "max_output_tokens"), ("completions", "max_tokens")],
)
def test_unknown_output_limit_without_max_tokens_is_refused(endpoint: str, field: str) -> None:
    """gpt-5-pro bills up to 272K output: a silent 32K default is not a bound. No limit, no cap: refuse."""
    with pytest.raises(EstimateError) as ei:
        output_token_bound("openai", endpoint, {}, model_limit=None, default_limit=None, model="gpt-9-pro")
    assert (ei.value.status, ei.value.code) == (400, "max_tokens_required")
    assert "openai/gpt-9-pro" in str(ei.value) and field in str(ei.value)
    assert output_token_bound("openai", endpoint, {}, model_limit=None, default_limit=5000) == 5000  # operator's


def test_rejected_prediction_tokens_are_reserved_as_output() -> None:
    """Predicted Outputs bill rejected prediction tokens at the output rate on top of the completion."""
    prediction = {"type": "content", "content": "def f():\n    return 1\n" * 1000}
    req = {"max_completion_tokens": 100, "prediction": prediction}
    bound = output_token_bound("openai", "chat.completions", req, model_limit=16_384, default_limit=None)
    assert bound >= 100 + len(prediction["content"].encode())


@pytest.mark.parametrize(
    ("provider", "endpoint", "req", "code"),
    [
        ("openai", "responses", {"background": True}, "background_unsupported"),
        ("openai", "chat.completions", {"service_tier": "priority"}, "unpriced_feature"),
        ("openai", "responses", {"service_tier": "priority"}, "unpriced_feature"),
        ("openai", "chat.completions", {"service_tier": "flex"}, "unpriced_feature"),
        ("openai", "chat.completions", {"service_tier": "scale"}, "unpriced_feature"),
        ("anthropic", "messages", {"service_tier": "priority"}, "unpriced_feature"),
        ("openai", "chat.completions", {"modalities": ["text", "audio"]}, "unpriced_feature"),
        ("openai", "chat.completions", {"audio": {"voice": "alloy", "format": "wav"}}, "unpriced_feature"),
        (
            "openai",
            "chat.completions",
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG"}}]}]},
            "unpriced_feature",
        ),
        (
            "openai",
            "chat.completions",
            {"messages": [{"role": "assistant", "audio": {"id": "a_1"}}]},
            "unpriced_feature",
        ),
    ],
)
def test_unpriced_features_are_refused(provider: str, endpoint: str, req: dict[str, Any], code: str) -> None:
    with pytest.raises(UnpricedFeature) as ei:
        check_billing_features(provider, endpoint, req)
    assert (ei.value.status, ei.value.code) == (400, code)


@pytest.mark.parametrize(
    ("provider", "endpoint", "req"),
    [
        ("openai", "chat.completions", {"service_tier": "auto"}),
        ("openai", "chat.completions", {"service_tier": "default", "modalities": ["text"]}),
        ("openai", "responses", {"background": False, "service_tier": None}),
        ("anthropic", "messages", {"service_tier": "standard_only"}),
        ("openai", "chat.completions", {"messages": [{"role": "user", "content": "audio"}]}),
    ],
)
def test_standard_billing_passes(provider: str, endpoint: str, req: dict[str, Any]) -> None:
    check_billing_features(provider, endpoint, req)


@pytest.mark.parametrize(
    ("endpoint", "req", "code"),
    [
        ("chat.completions", {"max_tokens": -1}, "invalid_max_tokens"),
        ("chat.completions", {"max_tokens": 0}, "invalid_max_tokens"),
        ("chat.completions", {"max_tokens": 10.0}, "invalid_max_tokens"),
        ("chat.completions", {"max_tokens": "100"}, "invalid_max_tokens"),
        ("chat.completions", {"max_tokens": True}, "invalid_max_tokens"),
        ("chat.completions", {"max_completion_tokens": False}, "invalid_max_completion_tokens"),
        ("chat.completions", {"max_tokens": 10, "n": 0}, "invalid_n"),
        ("chat.completions", {"max_tokens": 10, "n": True}, "invalid_n"),
        ("responses", {"max_output_tokens": -5}, "invalid_max_output_tokens"),
    ],
)
def test_output_bound_rejects_nonsense(endpoint: str, req: dict[str, Any], code: str) -> None:
    with pytest.raises(EstimateError) as ei:
        output_token_bound("openai", endpoint, req, model_limit=None, default_limit=4096)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, RequestRejected)
    assert (ei.value.status, ei.value.code) == (400, code)


def test_anthropic_requires_max_tokens() -> None:
    with pytest.raises(EstimateError, match="required"):
        output_token_bound("anthropic", "messages", {}, model_limit=64_000, default_limit=4096)


def test_limits_themselves_are_checked() -> None:
    with pytest.raises(EstimateError):
        output_token_bound("openai", "chat.completions", {}, model_limit=0, default_limit=4096)
    with pytest.raises(EstimateError):
        output_token_bound("openai", "chat.completions", {}, model_limit=None, default_limit=True)
    with pytest.raises(EstimateError):
        input_token_bound(b"{}", context_limit=-1)


# -- cost ------------------------------------------------------------------------------------------


def test_worst_case_cost_is_exact_decimal() -> None:
    # gpt-4o: $2.50 / $10.00 per million tokens
    cost = worst_case_cost(1_234, 4_096, input_per_token=D("0.0000025"), output_per_token=D("0.00001"))
    assert cost == D("0.044045")
    # a price with sub-nano digits (cached input at $0.01875/M) stays exact: no float, no rounding
    assert worst_case_cost(3, 0, input_per_token=D("0.00000001875"), output_per_token=D(0)) == D("0.00000005625")
    assert worst_case_cost(0, 0, input_per_token=D(1), output_per_token=D(1)) == 0


@pytest.mark.parametrize(
    ("args", "kw"),
    [
        ((-1, 0), {}),
        ((True, 0), {}),
        ((1.5, 0), {}),
        ((1, 0), {"input_per_token": 0.0000025}),
        ((1, 0), {"input_per_token": D("-1")}),
        ((1, 0), {"output_per_token": D("NaN")}),
    ],
)
def test_worst_case_cost_rejects_nonsense(args: tuple[Any, Any], kw: dict[str, Any]) -> None:
    prices = {"input_per_token": D("0.000001"), "output_per_token": D("0.000002"), **kw}
    with pytest.raises(EstimateError):
        worst_case_cost(*args, **prices)


def test_non_string_types_are_text_not_a_crash() -> None:
    """``"type": ["image"]`` is nonsense the provider refuses; here it must neither crash nor count as media."""
    part = {"type": ["image_url"], "image_url": {"url": "x" * 5000}}
    raw = body({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    assert input_token_bound(raw, media_part_tokens=10) == len(raw)
    with pytest.raises(UnpricedFeature):
        check_billing_features("openai", "chat.completions", {"service_tier": {"tier": "priority"}})
    check_billing_features("openai", "chat.completions", {"messages": [{"content": [{"type": {"a": 1}}]}]})
