from __future__ import annotations

import pytest
from visionality.errors import RequestRejected
from visionality.routing import route_base_url, route_proxy


@pytest.mark.parametrize(
    ("method", "path", "header", "provider", "endpoint", "upstream"),
    [
        ("POST", "/v1/chat/completions", None, "openai", "chat.completions", "/v1/chat/completions"),
        ("POST", "/v1/responses", None, "openai", "responses", "/v1/responses"),
        ("POST", "/v1/embeddings", None, "openai", "embeddings", "/v1/embeddings"),
        ("GET", "/v1/models", None, "openai", "models", "/v1/models"),
        ("POST", "/anthropic/v1/messages", None, "anthropic", "messages", "/v1/messages"),
        ("POST", "/anthropic/v1/messages?beta=true", None, "anthropic", "messages", "/v1/messages?beta=true"),
        ("POST", "/anthropic/v1/messages/count_tokens", None, "anthropic", "count_tokens", "/v1/messages/count_tokens"),
        ("POST", "/v1/messages", None, "anthropic", "messages", "/v1/messages"),
        ("POST", "/v1/chat/completions", "openai", "openai", "chat.completions", "/v1/chat/completions"),
        ("POST", "/v1/messages", "anthropic", "anthropic", "messages", "/v1/messages"),
        ("POST", "/v1/chat/completions", "@openai", "openai", "chat.completions", "/v1/chat/completions"),
        # Portkey's provider=anthropic with the OpenAI-shaped call: Anthropic's OpenAI-compatible endpoint.
        ("POST", "/v1/chat/completions", "anthropic", "anthropic", "chat.completions", "/v1/chat/completions"),
        ("POST", "/anthropic/v1/chat/completions", None, "anthropic", "chat.completions", "/v1/chat/completions"),
    ],
)
def test_base_url_routes(
    method: str, path: str, header: str | None, provider: str, endpoint: str, upstream: str
) -> None:
    r = route_base_url(method, path, header)
    assert (r.provider, r.endpoint, r.upstream_path) == (provider, endpoint, upstream)


def test_metered_flag() -> None:
    assert route_base_url("POST", "/v1/chat/completions", None).metered
    assert not route_base_url("GET", "/v1/models", None).metered


@pytest.mark.parametrize("path", ["/", "/v1/files", "/admin", "/v1/chat/completionsX", "/anthropic/v1/complete"])
def test_unknown_paths_are_refused_not_forwarded(path: str) -> None:
    with pytest.raises(RequestRejected) as e:
        route_base_url("POST", path, None)
    assert e.value.status == 404


def test_wrong_method_is_405() -> None:
    with pytest.raises(RequestRejected) as e:
        route_base_url("GET", "/v1/chat/completions", None)
    assert e.value.status == 405


def test_unsupported_portkey_provider() -> None:
    with pytest.raises(RequestRejected) as e:
        route_base_url("POST", "/v1/chat/completions", "bedrock")
    assert e.value.status == 400 and e.value.code == "unsupported_provider"


def test_proxy_routes_by_host() -> None:
    table = {"api.openai.com": "openai", "api.anthropic.com": "anthropic"}
    assert route_proxy(table, "API.OPENAI.COM", "POST", "/v1/chat/completions").provider == "openai"
    assert route_proxy(table, "api.anthropic.com", "POST", "/v1/messages").endpoint == "messages"
    with pytest.raises(RequestRejected) as e:
        route_proxy(table, "example.com", "POST", "/v1/chat/completions")
    assert e.value.status == 403
