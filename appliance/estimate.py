"""Worst-case bounds for a reservation: what a call can cost at most, from what it sends.

The reservation is only as good as this bound. LiteLLM reserves nothing when it cannot estimate
(#35524) and reserves an estimate, not a bound (PR #40002: five concurrent 300K-token requests
against a $0.45 key spent $0.60). Every rule here errs upwards, and what cannot be bounded from the
request is refused (:class:`UnboundedInput`) rather than guessed.

``worst_case_cost(input_token_bound(...), output_token_bound(...), ...)`` is the amount to reserve.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal, localcontext
from typing import Any

from .errors import RequestRejected

__all__ = [
    "EstimateError",
    "UnboundedInput",
    "UnpricedFeature",
    "DEFAULT_MEDIA_PART_TOKENS",
    "TOOL_PREAMBLE_TOKENS",
    "PROVIDER_TOOL_TOKENS",
    "media_part_token_bound",
    "check_billing_features",
    "input_token_bound",
    "output_token_bound",
    "worst_case_cost",
]


class EstimateError(RequestRejected, ValueError):
    """A request whose limits are nonsense (negative, non-integer, bool ``max_tokens`` ...): HTTP 400."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(400, code, message)


class UnboundedInput(EstimateError):
    """The request makes the provider read or run more than it sends (server-side tools, stored
    conversations, uploaded files) and no bound was given for that: it cannot be reserved, so it is
    refused, like a model without a price (fail closed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="budget_unbounded")


class UnpricedFeature(EstimateError):
    """The request asks for something billed at a rate the price catalog does not carry (priority
    service tiers, audio) or that the appliance never sees finish (background runs): it can be
    neither reserved nor charged correctly, so it is refused (HTTP 400), like a model without a price."""

    def __init__(self, message: str, code: str = "unpriced_feature") -> None:
        super().__init__(message, code=code)


# -- media ------------------------------------------------------------------------------------------
#
# Per-image worst cases (tokens), highest detail. OpenAI, "Images and vision" guide, "Calculating
# costs": tile models cost base + tile x 512px tiles; an image is fitted into 2048x2048 and its short
# side scaled down to 768, so at most 2 x 4 = 8 tiles. Patch models cost 32px patches capped at 1536,
# times a model multiplier. Anthropic, "Vision" guide: tokens ~ width x height / 750 and images above
# ~1,600 tokens are scaled down first; 2,000 leaves room for that "~".
_TILES = 8
_PATCHES = 1536
_OPENAI_IMAGE_TOKENS: dict[str, int] = {
    "gpt-4o-mini": 2833 + _TILES * 5667,  # cheap per token, so image tokens are multiplied
    "gpt-4o": 85 + _TILES * 170,
    "chatgpt-4o": 85 + _TILES * 170,
    "gpt-4.1": 85 + _TILES * 170,
    "gpt-4.5": 85 + _TILES * 170,
    "gpt-4.1-mini": math.ceil(_PATCHES * 1.62),
    "gpt-4.1-nano": math.ceil(_PATCHES * 2.46),
    "gpt-5": 70 + _TILES * 140,
    "gpt-5-mini": math.ceil(_PATCHES * 1.62),
    "gpt-5-nano": math.ceil(_PATCHES * 2.46),
    "o1": 75 + _TILES * 150,
    "o3": 75 + _TILES * 150,
    "o4-mini": math.ceil(_PATCHES * 1.72),
    "computer-use-preview": 65 + _TILES * 129,
}
_ANTHROPIC_IMAGE_TOKENS = 2000
# Unknown models get the largest known figure: a new model may price images like gpt-4o-mini.
DEFAULT_MEDIA_PART_TOKENS = max(_OPENAI_IMAGE_TOKENS.values())

# A tool-using request carries a provider-written system prompt that is not in the body. Anthropic
# "Tool use" pricing table: 159-530 tokens depending on model and tool_choice (Claude 3 Opus: 530).
TOOL_PREAMBLE_TOKENS = 600
# Provider-defined client tools expand to a definition that is not in the body either. Anthropic:
# text_editor 700, computer use 735 (+ 466-499 system prompt, covered by the preamble), bash 245.
PROVIDER_TOOL_TOKENS = 800

# Uploaded files and documents: a PDF page is billed as text plus a page image, so a few bytes of
# PDF can cost thousands of tokens, and a file_id costs whatever the file holds.
_DOCUMENT_TYPES = frozenset({"document", "file", "input_file", "container_upload", "item_reference"})
# Server-side state the provider prepends (OpenAI Responses): previous turns, a stored prompt.
_SERVER_STATE_KEYS = ("previous_response_id", "conversation", "prompt")
# Tools the provider runs itself, looping model calls inside one request: each turn is billed and
# fetched pages / search results / files enter the context. No bound from the request exists.
_OPENAI_SERVER_TOOLS = ("web_search", "file_search", "code_interpreter", "image_generation", "mcp")
_ANTHROPIC_SERVER_TOOLS = ("web_search_", "web_fetch_", "code_execution_")
_ANTHROPIC_CLIENT_TOOLS = ("computer_", "bash_", "text_editor_", "memory_")


def media_part_token_bound(provider: str, model: str) -> int:
    """Worst-case tokens one image part costs on ``model`` (pass it to :func:`input_token_bound`).

    Matches the model family or a dated snapshot of it (``gpt-4o-2024-08-06``); the longest family
    name wins, so ``gpt-4o-mini`` is not priced as ``gpt-4o``. Unknown: DEFAULT_MEDIA_PART_TOKENS."""
    if provider == "anthropic":
        return _ANTHROPIC_IMAGE_TOKENS
    best = ""
    for family in _OPENAI_IMAGE_TOKENS:
        if (model == family or model.startswith(family + "-")) and len(family) > len(best):
            best = family
    return _OPENAI_IMAGE_TOKENS[best] if best else DEFAULT_MEDIA_PART_TOKENS


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"type": "text", "type": "image_url"} means what the last parser to read it decides; Python
    # keeps the last, another parser may keep the first. A body whose meaning depends on the parser
    # cannot be bounded (nor PII-scanned) with confidence.
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        dup = next(k for k in out if keys.count(k) > 1)
        raise EstimateError(f"request body repeats the JSON key {dup!r}", code="duplicate_json_key")
    return out


def _parts(container: Any, key: str) -> Iterator[dict[str, Any]]:
    """The dict items of ``container[key]`` when it is a list (a content array), else nothing."""
    items = container.get(key) if isinstance(container, dict) else None
    if isinstance(items, list):
        yield from (item for item in items if isinstance(item, dict))


def _kind(node: Mapping[str, Any]) -> str | None:
    """A part's ``type`` when it is a string (a list or object there is nonsense the provider refuses)."""
    kind = node.get("type")
    return kind if isinstance(kind, str) else None


def _content_parts(request: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every content part at a position where a provider reads media, with the API it belongs to.

    Only these positions carry images the provider bills as images (Anthropic "Messages" and "Vision";
    OpenAI chat "messages[].content[]", Responses "input[].content[]" and tool outputs). An object with
    ``"type": "image"`` anywhere else (a ``tool_use.input``, function arguments, metadata) is JSON text
    to the provider and billed as text, byte for byte.
    """
    for message in _parts(request, "messages"):  # OpenAI chat and Anthropic messages
        for part in _parts(message, "content"):
            yield "messages", part
            if _kind(part) == "tool_result":  # Anthropic: a tool result may return images
                for inner in _parts(part, "content"):
                    yield "messages", inner
    for item in _parts(request, "input"):  # OpenAI Responses
        kind = _kind(item)
        if kind in (None, "message"):
            for part in _parts(item, "content"):
                yield "responses", part
        elif kind in ("function_call_output", "custom_tool_call_output"):
            for part in _parts(item, "output"):
                yield "responses", part
        elif kind == "computer_call_output" and isinstance(item.get("output"), dict):
            yield "responses", item["output"]


# Which part types are media at which position, and where each keeps its URL or base64 data.
_MEDIA_AT: dict[str, frozenset[str]] = {
    "messages": frozenset({"image_url", "image"}),  # OpenAI chat image_url; Anthropic image
    "responses": frozenset({"input_image", "computer_screenshot"}),
}
_AUDIO_PART_TYPES = frozenset({"input_audio"})


def _image_payload_chars(part: Mapping[str, Any]) -> int:
    """Characters of the image's URL or base64 data: replaced by the per-image bound.

    Only the fields the providers define for it (OpenAI ``image_url`` / ``image_url.url``, Anthropic
    ``source.data`` / ``source.url``); any other string in the part stays counted as bytes."""
    total = 0
    for holder, key in ((part, "image_url"), (part.get("image_url"), "url"), (part.get("source"), "data")):
        value = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(value, str):
            total += len(value)
    source = part.get("source")
    if isinstance(source, dict) and isinstance(source.get("url"), str):
        total += len(source["url"])
    return total


def input_token_bound(
    body: bytes, *, media_part_tokens: int = DEFAULT_MEDIA_PART_TOKENS, context_limit: int | None = None
) -> int:
    """An upper bound on the input tokens the provider will bill for ``body`` (the bytes sent).

    Why bytes bound tokens: OpenAI (o200k_base, cl100k_base) and Anthropic tokenizers are byte-level
    BPE: every token stands for at least one UTF-8 byte of the text, so a text of N bytes is at most
    N tokens. The chat template adds a few tokens per message (``<|im_start|>user<|message|>`` ...,
    about 3-4 per message and 3 to prime the reply, per OpenAI's token-counting cookbook), but each
    message's own JSON punctuation (``{"role":"user","content":""}``, 28 bytes) is longer than that,
    and the body's envelope (``{"model":..,"messages":[]}``) pays for the reply priming. So the byte
    length of the JSON body bounds prompt tokens including the template.

    Where bytes do *not* bound the cost, and what is done instead:

    * Images: only parts at the positions the providers read media from (see ``_content_parts``); an
      image-typed object elsewhere, e.g. inside Anthropic ``tool_use.input``, is text and keeps its bytes.
      A highly compressible image (a one-colour 2048x2048 WebP is ~100 bytes of base64) or an
      image by URL costs far more than its bytes (gpt-4o high detail: up to 1,445 tokens; gpt-4o-mini:
      48,169). Each image part counts ``media_part_tokens`` (from :func:`media_part_token_bound`) and
      its URL/base64 characters are taken out of the byte count: tighter for large images, sound
      for tiny ones. Audio parts keep their bytes: base64 audio is far larger than its audio tokens
      (about 10 per second).
    * Tools: the provider's tool-use system prompt (``TOOL_PREAMBLE_TOKENS``) and provider-defined
      tools such as Anthropic's computer/bash/text_editor (``PROVIDER_TOOL_TOKENS`` each).
    * Documents, uploaded files, stored conversations and prompts (``previous_response_id``,
      ``conversation``, ``prompt``, ``file_id``): bounded only by the model's context window, so they
      need ``context_limit``; without it :class:`UnboundedInput` is raised.
    * Server-run tools (web search, file search, code execution, MCP, image generation) loop model
      calls inside one request, each billed: :class:`UnboundedInput` always.

    With ``context_limit`` the bound is also capped by it: a prompt larger than the context window is
    rejected by the provider unbilled. A body that is not a JSON object (a multipart audio upload,
    billed per minute) raises UnboundedInput, as does a body that repeats a JSON key (EstimateError).
    """
    _check_tokens(media_part_tokens, "media_part_tokens", minimum=0)
    if context_limit is not None:
        _check_tokens(context_limit, "context_limit", minimum=1)
    bound = len(body)
    try:
        request = json.loads(body, object_pairs_hook=_reject_duplicate_keys)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if isinstance(e, EstimateError):
            raise
        # Multipart uploads (audio, image edits) are billed per minute or per image, not by bytes.
        raise UnboundedInput("the request body is not JSON: its cost cannot be bounded from its bytes") from e
    if not isinstance(request, dict):
        raise UnboundedInput("the request body is not a JSON object: its cost cannot be bounded")
    server_side: str | None = next((k for k in _SERVER_STATE_KEYS if request.get(k)), None)
    if request.get("mcp_servers") or request.get("web_search_options") is not None:
        raise UnboundedInput("the provider runs tools for this request (MCP servers / web search): no cost bound")
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        bound += TOOL_PREAMBLE_TOKENS
        for tool in tools:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if not isinstance(kind, str):
                continue
            if kind.startswith(_OPENAI_SERVER_TOOLS) or kind.startswith(_ANTHROPIC_SERVER_TOOLS):
                raise UnboundedInput(f"the provider runs the {kind!r} tool itself for this request: no cost bound")
            if kind.startswith(_ANTHROPIC_CLIENT_TOOLS) or kind not in ("function", "custom"):
                bound += PROVIDER_TOOL_TOKENS
    media = {id(part): part for api, part in _content_parts(request) if _kind(part) in _MEDIA_AT[api]}
    stack: list[Any] = [request]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = _kind(node)
        if id(node) in media:
            # not descended into: an image by file_id or URL still costs at most one image
            bound += media_part_tokens - _image_payload_chars(node)
            continue
        if kind in _DOCUMENT_TYPES or (kind == "reasoning" and node.get("encrypted_content")):
            server_side = server_side or f"a {kind!r} part"
        elif "file_id" in node:
            server_side = server_side or "a file_id"
        stack.extend(node.values())
    if server_side is not None:
        if context_limit is None:
            raise UnboundedInput(
                f"the provider reads content this request does not carry ({server_side}): "
                "no cost bound without the model's context window"
            )
        return context_limit
    return bound if context_limit is None else min(bound, context_limit)


def _check_tokens(value: object, name: str, *, minimum: int) -> int:
    # bool is an int in Python and JSON true would read as 1: nonsense for a limit.
    if type(value) is not int:
        raise EstimateError(f"{name} must be an integer, got {value!r}", code=f"invalid_{name}")
    if value < minimum:
        raise EstimateError(f"{name} must be at least {minimum}, got {value}", code=f"invalid_{name}")
    return value


# The fields that cap output per endpoint, as the provider reads them.
_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "chat.completions": ("max_completion_tokens", "max_tokens"),  # max_tokens: deprecated alias
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),  # includes reasoning tokens
    "messages": ("max_tokens",),  # Anthropic: required; includes extended thinking
}
_NO_OUTPUT = frozenset({"embeddings", "moderations"})


def output_token_bound(
    provider: str,
    endpoint: str,
    body: Mapping[str, Any],
    *,
    model_limit: int | None,
    default_limit: int | None,
    model: str = "",
) -> int:
    """An upper bound on billed output tokens.

    The request's own cap when it sets one (``max_completion_tokens`` / ``max_tokens`` for chat,
    ``max_output_tokens`` for Responses, ``max_tokens`` for Anthropic, where it is required); if both
    chat fields are given, the larger counts. The provider enforces that cap, so it is the bound even
    above ``model_limit``: a beta can raise a model's limit (Anthropic ``output-128k-2025-02-19`` lets
    Claude 3.7 Sonnet bill 128K where the table says 64K), and a cap the model cannot honour is
    refused by the provider unbilled. Without a cap in the request: ``model_limit``, else the
    operator's ``default_limit``; with neither, the call has no bound and is refused
    (``max_tokens_required``). Chat ``n`` and legacy completions ``best_of`` generate that many
    completions, each billed: the bound multiplies. Predicted outputs (chat ``prediction``) bill
    rejected prediction tokens as output on top of the completion, at most one per byte of the
    prediction. Embeddings and moderations produce no output tokens: 0.
    """
    if default_limit is not None:
        _check_tokens(default_limit, "default_limit", minimum=1)
    if model_limit is not None:
        _check_tokens(model_limit, "model_limit", minimum=1)
    if endpoint in _NO_OUTPUT:
        return 0
    fields = _OUTPUT_FIELDS.get(endpoint, ("max_output_tokens", "max_completion_tokens", "max_tokens"))
    asked = [_check_tokens(body[f], f, minimum=1) for f in fields if body.get(f) is not None]
    if provider == "anthropic" and endpoint == "messages" and not asked:
        raise EstimateError("max_tokens is required for Anthropic messages", code="invalid_max_tokens")
    if asked:
        bound = max(asked)
    elif model_limit is not None:
        bound = model_limit
    elif default_limit is not None:
        bound = default_limit
    else:
        raise EstimateError(
            f"{provider}/{model or '?'} has no known output limit, so this call's cost has no bound: send "
            f"{fields[0]} in the request, or ask the operator to set max_output_tokens for the model in the "
            "price overrides (or [budget] default_output_limit)",
            code="max_tokens_required",
        )
    prediction = body.get("prediction")
    if prediction is not None:
        # OpenAI "Predicted Outputs": rejected prediction tokens are billed at completion rates; each is
        # at least one byte of the prediction (byte-level BPE), and JSON escapes only lengthen the text.
        bound += len(json.dumps(prediction))
    copies = 1
    if endpoint in ("chat.completions", "completions"):
        for f in ("n", "best_of"):
            if body.get(f) is not None:
                copies = max(copies, _check_tokens(body[f], f, minimum=1))
    return bound * copies


# Service tiers billed at the standard rates the catalog carries. OpenAI: "auto" (the project's
# tier, "default" unless the operator changed it) and "default"; "flex" (about half) and "priority"
# (about 2x) are priced differently (openai.com/api/pricing, "Priority processing"). Anthropic:
# "auto" and "standard_only" (Messages API reference, ``service_tier``).
_STANDARD_TIERS: dict[str, frozenset[str]] = {
    "openai": frozenset({"auto", "default"}),
    "anthropic": frozenset({"auto", "standard_only"}),
}


def check_billing_features(provider: str, endpoint: str, body: Mapping[str, Any]) -> None:
    """Refuse what the price catalog cannot price or the appliance cannot meter (:class:`UnpricedFeature`).

    * ``background`` Responses runs (``background: true``): the reply is ``queued`` with no usage and
      the provider bills the run later, on a connection the appliance never sees; the ledger could only
      ever hold a guess. Refused with ``background_unsupported``.
    * ``service_tier`` other than the standard ones: a priority tier bills about 2x the catalog rate.
    * Audio: output audio (``modalities`` with ``"audio"``, the ``audio`` parameter) and input audio
      parts are billed at audio-token rates (gpt-4o-audio: 16x text input), the catalog has text rates.
    """
    if endpoint == "responses" and body.get("background") not in (None, False):
        raise UnpricedFeature(
            "background Responses runs are not supported: the provider bills them after the reply, where the "
            "appliance cannot meter them; send the request without background (stream it for long runs)",
            code="background_unsupported",
        )
    tier = body.get("service_tier")
    if tier is not None and (not isinstance(tier, str) or tier not in _STANDARD_TIERS.get(provider, frozenset())):
        allowed = ", ".join(sorted(_STANDARD_TIERS.get(provider, frozenset()))) or "none"
        raise UnpricedFeature(
            f"service_tier {tier!r} is billed at rates this appliance does not price; allowed: {allowed}"
        )
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise UnpricedFeature("audio output is billed at audio-token rates this appliance does not price")
    for message in _parts(body, "messages"):
        if message.get("audio") is not None:  # a previous audio answer replayed as input
            raise UnpricedFeature("audio input is billed at audio-token rates this appliance does not price")
    if any(_kind(part) in _AUDIO_PART_TYPES for _, part in _content_parts(body)):
        raise UnpricedFeature("audio input is billed at audio-token rates this appliance does not price")


def worst_case_cost(
    input_tokens: int, output_tokens: int, *, input_per_token: Decimal, output_per_token: Decimal
) -> Decimal:
    """``input_tokens x input_per_token + output_tokens x output_per_token``, exact.

    The prices must be the highest that can apply to those tokens: the long-context tier when the
    bound crosses it (priced on the bound, not a guess), and the cache-write price where the body
    asks for caching (Anthropic ``cache_control``: 1.25x or 2x input).
    """
    _check_tokens(input_tokens, "input_tokens", minimum=0)
    _check_tokens(output_tokens, "output_tokens", minimum=0)
    for name, price in (("input_per_token", input_per_token), ("output_per_token", output_per_token)):
        if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
            raise EstimateError(f"{name} must be a Decimal >= 0 (never float), got {price!r}", code="invalid_price")
    with localcontext() as ctx:
        ctx.prec = 60  # tokens x prices stay exact: no rounding before the nano-USD ceiling
        return input_tokens * input_per_token + output_tokens * output_per_token
