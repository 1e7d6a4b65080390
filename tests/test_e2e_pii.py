"""End to end, issue 5: personal data in any field a provider would receive is blocked before it leaves —
400 pii_blocked naming types and counts, a commit row, and no upstream call."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .harness import Appliance, FakeProviderProc
from .test_e2e_wire import wait_rows

pytestmark = pytest.mark.e2e

CARD = "5425 2334 3010 9903"  # Mastercard 2-series test-range-shaped, Luhn-valid
EMAIL = "jane.doe@acme-corp.com"

CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "chat user string",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"card {CARD} please"}]},
    ),
    (
        "chat system",
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": f"mail {EMAIL}"}, {"role": "user", "content": "hi"}],
        },
    ),
    (
        "chat content parts",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": f"to {EMAIL}"}]}]},
    ),
    (
        "chat tool result",
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": "look up"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "crm", "arguments": '{"q": "x"}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": f"customer email {EMAIL}"},
            ],
        },
    ),
    (
        "chat tool call arguments",
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "pay", "arguments": f'{{"card": "{CARD}"}}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
        },
    ),
    ("responses input", "/v1/responses", {"model": "gpt-4o-mini", "input": f"email {EMAIL}"}),
    ("responses instructions", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "instructions": f"cc {CARD}"}),
    ("embeddings list", "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["fine", f"{EMAIL}"]}),
    (
        "anthropic system blocks",
        "/anthropic/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "system": [{"type": "text", "text": f"user {EMAIL}"}],
            "messages": [{"role": "user", "content": "hi"}],
        },
    ),
    (
        "anthropic tool_result",
        "/anthropic/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": f"card {CARD}"}],
                        }
                    ],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize(("name", "path", "body"), CASES, ids=[c[0] for c in CASES])
def test_pii_in_any_field_is_blocked_before_upstream(
    appliance: Appliance, provider: FakeProviderProc, name: str, path: str, body: dict[str, Any]
) -> None:
    key = appliance.key(task="PII-1")
    with httpx.Client(base_url=appliance.base_url, timeout=30) as c:
        r = c.post(path, json=body, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "pii_blocked" and err["entities"]
    assert EMAIL not in r.text and CARD not in r.text and CARD.replace(" ", "") not in r.text
    assert provider.requests() == []
    assert provider.connections() == 0  # not even a TCP connection (connection_strategy lazy)
    (row,) = wait_rows(appliance, "task = 'PII-1'", 1)
    assert row["decision"] == "blocked_pii" and row["http_status"] == 400
    stored = appliance.query("SELECT * FROM commits")
    assert EMAIL not in str(stored) and CARD.replace(" ", "") not in str(stored).replace(" ", "")


def test_clean_prompt_and_allow_listed_test_values_pass(appliance: Appliance, provider: FakeProviderProc) -> None:
    client = appliance.openai(appliance.key())
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": "Test card 4111 1111 1111 1111, docs at help@example.com, "
                "build 1.2.3 on 2026-12-03, order #48213",
            }
        ],
        max_tokens=5,
    )
    assert len(provider.requests()) == 1
