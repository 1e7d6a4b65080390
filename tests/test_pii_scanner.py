"""PiiScanner, the wire path's entry point (appliance/pii/scanner.py): coverage, policy, fail-closed."""

from __future__ import annotations

import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from visionality.errors import PiiScanError
from visionality.pii import DetectorPolicy, PiiPolicy, PiiScanner
from visionality.pii.presidio_validators import PresidioValidators

EMAIL = "ann.lee@firm.co.uk"
CARD = "5425 2334 3010 9903"


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(PiiPolicy(deadline_ms=5_000))


@pytest.mark.parametrize(
    ("provider", "endpoint", "body"),
    [
        ("openai", "chat.completions", {"messages": [{"role": "user", "content": f"mail {EMAIL}"}]}),
        ("openai", "chat.completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": EMAIL}]}]}),
        ("openai", "chat.completions", {"messages": [{"role": "developer", "content": EMAIL}]}),
        (
            "openai",
            "chat.completions",
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"function": {"arguments": json.dumps({"to": EMAIL})}}]}
                ]
            },
        ),
        ("openai", "chat.completions", {"messages": [{"role": "tool", "content": f"found {EMAIL}"}]}),
        ("openai", "responses", {"input": EMAIL}),
        ("openai", "responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": EMAIL}]}]}),
        ("openai", "responses", {"input": "hi", "instructions": f"cc {EMAIL}"}),
        ("openai", "embeddings", {"input": ["a", EMAIL]}),
        ("anthropic", "messages", {"system": f"owner {EMAIL}", "messages": []}),
        ("anthropic", "messages", {"system": [{"type": "text", "text": EMAIL}], "messages": []}),
        (
            "anthropic",
            "messages",
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": {"e": EMAIL}}]}]},
        ),
        (
            "anthropic",
            "messages",
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": EMAIL}]}]},
        ),
        ("openai", "v1/some/future/endpoint", {"deeply": {"nested": [{"field": EMAIL}]}}),
    ],
)
def test_nothing_the_provider_receives_escapes(scanner: PiiScanner, provider: str, endpoint: str, body: object) -> None:
    assert scanner.scan_request(provider, endpoint, body, None) == {"EMAIL_ADDRESS": 1}


def test_counts_per_type_and_clean_is_empty(scanner: PiiScanner) -> None:
    body = {"messages": [{"role": "user", "content": f"{EMAIL}, card {CARD}, again {EMAIL}"}]}
    assert scanner.scan_request("openai", "chat.completions", body, None) == {"EMAIL_ADDRESS": 2, "CREDIT_CARD": 1}
    clean = {"messages": [{"role": "user", "content": "Refactor build 10.0.19045 at 2024-01-15T10:00:00Z"}]}
    assert scanner.scan_request("openai", "chat.completions", clean, None) == {}


def test_images_and_audio_are_not_scanned_as_text(scanner: PiiScanner) -> None:
    import base64
    import random

    blob = base64.b64encode(random.Random(1).randbytes(30_000)).decode()
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{blob}"}}]},
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": blob}}]},
        ]
    }
    assert scanner.scan_request("anthropic", "messages", body, None) == {}


def test_allow_listed_values_pass(scanner: PiiScanner) -> None:
    text = "use 4111 1111 1111 1111, AKIAIOSFODNN7EXAMPLE and bob@example.com"
    assert scanner.scan_text(text) == []


def test_action_allow_detects_but_does_not_block() -> None:
    detectors = {**PiiPolicy.default().detectors, "EMAIL_ADDRESS": DetectorPolicy(action="allow")}
    s = PiiScanner(PiiPolicy(detectors=detectors))
    assert s.scan_request("openai", "responses", {"input": EMAIL}, None) == {}
    assert [f.entity_type for f in s.scan_text(EMAIL)] == ["EMAIL_ADDRESS"]


def test_project_override_and_disabled_detector() -> None:
    s = PiiScanner(PiiPolicy.from_mapping({"projects": {"crm": {"EMAIL_ADDRESS": {"enabled": False}}}}))
    body = {"input": f"{EMAIL} {CARD}"}
    assert s.scan_request("openai", "responses", body, "crm") == {"CREDIT_CARD": 1}
    assert s.scan_request("openai", "responses", body, "other") == {"EMAIL_ADDRESS": 1, "CREDIT_CARD": 1}


def test_threshold_per_detector() -> None:
    text = "ip 10.1.2.3"  # private: scored 0.4
    assert PiiScanner(PiiPolicy.default()).scan_text(text) == []
    low = PiiPolicy.from_mapping({"detectors": {"IP_ADDRESS": {"threshold": 0.4}}})
    assert [f.entity_type for f in PiiScanner(low).scan_text(text)] == ["IP_ADDRESS"]


def test_deadline_fails_closed() -> None:
    s = PiiScanner(PiiPolicy(deadline_ms=0.001))
    with pytest.raises(PiiScanError, match="deadline"):
        s.scan_request("openai", "responses", {"input": f"{EMAIL} " * 20_000}, None)


def test_detector_exception_fails_closed(scanner: PiiScanner, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: PresidioValidators, candidate: str) -> bool:
        raise RuntimeError("validator broke")

    monkeypatch.setattr(PresidioValidators, "email_ok", boom)
    with pytest.raises(PiiScanError, match="detector error RuntimeError") as e:
        scanner.scan_text(f"mail {EMAIL}")
    assert EMAIL not in str(e.value)


def test_presidio_skipping_a_timed_out_pattern_fails_closed(
    scanner: PiiScanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def skipped(self: PresidioValidators, candidate: str) -> bool:
        # What Presidio's IbanRecognizer does on a regex TimeoutError: log, then answer "not valid".
        logging.getLogger("presidio-analyzer").warning("IBAN format validation regex timed out after %s seconds.", 60)
        return False

    monkeypatch.setattr(PresidioValidators, "iban_ok", skipped)
    with pytest.raises(PiiScanError, match="timed out"):
        scanner.scan_text("pay GB33BUKB20201555555555 now")
    assert scanner.scan_text("clean text") == []  # the guard resets per scan


def test_no_network_at_scan_time(scanner: PiiScanner, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert [f.entity_type for f in scanner.scan_text(f"{EMAIL} at +44 20 7946 0958")] == [
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
    ]


def test_values_never_logged(scanner: PiiScanner, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        scanner.scan_text(f"{EMAIL} {CARD}")
    assert EMAIL not in caplog.text and "5425" not in caplog.text


def test_thread_safe_scans(scanner: PiiScanner) -> None:
    texts = [f"user{i}@firm.co.uk card {CARD} ip 8.8.{i}.1" for i in range(40)]
    expected = [scanner.scan_text(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(scanner.scan_text, texts)) == expected


def test_scan_text_rejects_non_text(scanner: PiiScanner) -> None:
    with pytest.raises(PiiScanError):
        scanner.scan_text(b"bytes")  # type: ignore[arg-type]
