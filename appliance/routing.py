"""Which provider and endpoint a request is for, in base-URL mode and in explicit-proxy mode.

Base-URL mode serves one origin for every provider, the way Portkey's gateway does:
``/v1/...`` is OpenAI's surface (or the provider named by ``x-portkey-provider``), ``/anthropic/...``
is Anthropic's (the Anthropic SDK's ``base_url``), and ``/v1/messages`` is Anthropic's even without a
header, because only Anthropic serves that path. Proxy mode maps the intercepted host to its provider
and keeps the path. Anything else is not an LLM call and is refused (404), never forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RequestRejected

__all__ = ["Route", "route_base_url", "route_proxy", "METERED_ENDPOINTS"]

# Paths (after the provider prefix) that are billed calls, by provider.
_OPENAI_ENDPOINTS = {
    "/v1/chat/completions": "chat.completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/completions": "completions",
}
_ANTHROPIC_ENDPOINTS = {
    "/v1/messages": "messages",
    # Anthropic's OpenAI SDK compatibility layer (https://docs.anthropic.com/en/api/openai-sdk): what a Portkey
    # user reaches with x-portkey-provider: anthropic and the OpenAI-shaped chat.completions call.
    "/v1/chat/completions": "chat.completions",
}
# Read-only, unbilled surfaces an SDK touches (model listing, token counting): authenticated and
# recorded, never charged.
_FREE_ENDPOINTS = {
    ("openai", "GET", "/v1/models"): "models",
    ("anthropic", "GET", "/v1/models"): "models",
    ("anthropic", "POST", "/v1/messages/count_tokens"): "count_tokens",
}
METERED_ENDPOINTS = frozenset(_OPENAI_ENDPOINTS.values()) | frozenset(_ANTHROPIC_ENDPOINTS.values())

# Portkey's provider header values: "openai", "anthropic", and the "@slug" form of hosted configs.
_PORTKEY_PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}


@dataclass(frozen=True, slots=True)
class Route:
    provider: str  # "openai" | "anthropic"
    endpoint: str  # "chat.completions", "responses", "embeddings", "completions", "messages", "models", …
    upstream_path: str  # the path (with query) to send upstream, below the provider's upstream prefix

    @property
    def metered(self) -> bool:
        return self.endpoint in METERED_ENDPOINTS


def _split(path: str) -> tuple[str, str]:
    base, sep, query = path.partition("?")
    return base.rstrip("/") or "/", (sep + query)


def _endpoint(provider: str, method: str, base: str, query: str) -> Route:
    table = _OPENAI_ENDPOINTS if provider == "openai" else _ANTHROPIC_ENDPOINTS
    if method == "POST" and base in table:
        return Route(provider, table[base], base + query)
    free = _FREE_ENDPOINTS.get((provider, method, base))
    if free is not None:
        return Route(provider, free, base + query)
    if base in table or (provider, "POST", base) in _FREE_ENDPOINTS or (provider, "GET", base) in _FREE_ENDPOINTS:
        raise RequestRejected(405, "method_not_allowed", f"{method} is not allowed on {base}")
    raise RequestRejected(
        404,
        "unknown_path",
        f"{base} is not an LLM endpoint this appliance meters for {provider} (metered: {', '.join(sorted(table))})",
        err_type="not_found_error",
    )


def route_base_url(method: str, path: str, portkey_provider: str | None) -> Route:
    """Route a request that arrived on the base-URL listener."""
    base, query = _split(path)
    if base == "/anthropic" or base.startswith("/anthropic/"):
        return _endpoint("anthropic", method, base[len("/anthropic") :] or "/", query)
    if portkey_provider is not None:
        name = portkey_provider.strip().lower().lstrip("@")
        provider = _PORTKEY_PROVIDERS.get(name)
        if provider is None:
            raise RequestRejected(
                400,
                "unsupported_provider",
                f"x-portkey-provider {portkey_provider!r} is not supported here (supported: openai, anthropic)",
            )
        return _endpoint(provider, method, base, query)
    if base in ("/v1/messages", "/v1/messages/count_tokens"):  # paths only Anthropic serves
        return _endpoint("anthropic", method, base, query)
    return _endpoint("openai", method, base, query)


def route_proxy(host_to_provider: dict[str, str], host: str, method: str, path: str) -> Route:
    """Route a request intercepted in proxy mode; ``host`` is one of the intercepted hosts."""
    provider = host_to_provider.get(host.lower())
    if provider is None:
        raise RequestRejected(403, "host_not_allowed", f"{host} is not an intercepted LLM provider host")
    base, query = _split(path)
    return _endpoint(provider, method, base, query)
