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


# --- red-team evasions (audit 2026-12), each named after the attack -------------------------------------------


SSN_TOOL_INPUT = {"ssn": "536221234", "notes": "n" * 150}


def entities(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(f.entity_type, text[f.start : f.end]) for f in scanner.scan_text(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("SSN:536-22-1234", "US_SSN", "536-22-1234"),
        ("SSN:536221234", "US_SSN", "536221234"),
        ("card:5425233430109903", "CREDIT_CARD", "5425233430109903"),
        ("cc:5425233430109903", "CREDIT_CARD", "5425233430109903"),
        ("NHS:6982597911", "UK_NHS", "6982597911"),
        ("NHS:698 259 7911", "UK_NHS", "698 259 7911"),
        ("routing:011000015", "US_BANK_ROUTING", "011000015"),
        ("phone:07911123456", "PHONE_NUMBER", "07911123456"),
        ("tel:+442079460958", "PHONE_NUMBER", "+442079460958"),
        ('{"card":5425233430109903}', "CREDIT_CARD", "5425233430109903"),
        ('{"ssn":536221234,"name":"Bob"}', "US_SSN", "536221234"),
    ],
)
def test_attack_label_glued_to_value_by_a_colon(scanner: PiiScanner, text: str, entity: str, value: str) -> None:
    assert (entity, value) in entities(scanner, text)


def test_clock_times_after_a_colon_stay_clean(scanner: PiiScanner) -> None:
    assert scanner.scan_text("at 10:23:45 and 2001:4860:1234:5678 and ratio 16:9 sha256:8d1f") == []


@pytest.mark.parametrize(
    ("text", "entity"),
    [("5425233430109903@example.com", "CREDIT_CARD"), ("536-22-1234@example.org", "US_SSN")],
)
def test_attack_allow_listed_email_wrapped_around_a_number(scanner: PiiScanner, text: str, entity: str) -> None:
    assert [e for e, _ in entities(scanner, text)] == [entity]


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("card 4539148815550123", "CREDIT_CARD"),  # Luhn-valid, ends in 55501xx
        ("call +44 20 7555 0123", "PHONE_NUMBER"),  # London, not NANP fiction
    ],
)
def test_attack_fiction_phone_glob_allows_other_types(scanner: PiiScanner, text: str, entity: str) -> None:
    assert [e for e, _ in entities(scanner, text)] == [entity]
    assert scanner.scan_text("call (212) 555-0123 or +1 212 555 0199") == []  # NANP fiction still passes


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("card 5425\u00a02334 3010 9903", "CREDIT_CARD"),  # no-break space
        ("card 5425\u200b2334\u200b3010\u200b9903", "CREDIT_CARD"),  # zero-width space
        ("card 5425\u00ad2334\u00ad3010\u00ad9903", "CREDIT_CARD"),  # soft hyphen
        ("card 5425\u20602334\ufeff3010 9903", "CREDIT_CARD"),  # word joiner, BOM
        ("card " + "".join(chr(0xFF10 + int(d)) for d in "5425233430109903"), "CREDIT_CARD"),  # full-width
        ("NHS 698\u00a0259\u00a07911", "UK_NHS"),
        ("SSN 536\u201322\u20131234", "US_SSN"),  # en dashes
        ("mail jane\u200b@acme-corp.com", "EMAIL_ADDRESS"),
        ("mail jane\uff20acme-corp.com", "EMAIL_ADDRESS"),  # full-width @
    ],
)
def test_attack_invisible_and_look_alike_characters(scanner: PiiScanner, text: str, entity: str) -> None:
    found = scanner.scan_text(text)
    assert [f.entity_type for f in found] == [entity]
    # Spans point into the original text, invisible characters included.
    (f,) = found
    assert text[f.start].isalnum() and text[f.end - 1].isalnum() and f.end == len(text)


@pytest.mark.parametrize(
    "text",
    [
        "5425.2334.3010.9903",
        "5425 2334-3010 9903",
        "5425  2334  3010  9903",
        "5425 - 2334 - 3010 - 9903",
        "5425\t2334\t3010\t9903",
    ],
)
def test_attack_card_with_dots_or_mixed_separators(scanner: PiiScanner, text: str) -> None:
    assert entities(scanner, f"card {text} ok") == [("CREDIT_CARD", text)]


def test_attack_card_split_by_padding_digits(scanner: PiiScanner) -> None:
    for pad in ("7 " * 40, "123 " * 30, "12 " * 1000):
        assert entities(scanner, f"ids {pad}5425 2334 3010 9903 end") == [("CREDIT_CARD", "5425 2334 3010 9903")]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": SSN_TOOL_INPUT}]}]},
        {"input": {"routing_number": "011000015", "notes": "word " * 30}},
        {"input": {"nhs_number": "6982597911", "notes": "word " * 30}},
        {"input": {"phone": "4155552671", "notes": "word " * 30}},
    ],
)  # fmt: skip
def test_attack_json_key_separated_from_its_value(scanner: PiiScanner, body: dict[str, object]) -> None:
    assert sum(scanner.scan_request("anthropic", "messages", body, None).values()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"card": 5425233430109903.0},
        {"card": 5.425233430109903e15},
        {"card": -5425233430109903},
        {"arguments": '{"card": 5425233430109903.0}'},
        {"input": "card -5425233430109903"},
        {"input": "amount 5425233430109903.00"},
    ],
)
def test_attack_card_sent_as_float_or_negative(scanner: PiiScanner, body: dict[str, object]) -> None:
    assert scanner.scan_request("openai", "responses", body, None) == {"CREDIT_CARD": 1}


@pytest.mark.parametrize(
    ("arguments", "entity"),
    [
        ('{"e":"bob\\u0040acme.io"}', "EMAIL_ADDRESS"),
        ('{"c":"\\u0035425233430109903"}', "CREDIT_CARD"),
        (json.dumps({"inner": '{"e":"bob\\u0040acme.io"}'}), "EMAIL_ADDRESS"),  # JSON in JSON in JSON
    ],
)
def test_attack_unicode_escapes_in_tool_call_arguments(scanner: PiiScanner, arguments: str, entity: str) -> None:
    body = {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]}]}
    assert scanner.scan_request("openai", "chat.completions", body, None) == {entity: 1}


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(" ".join(str(10 + (i * 37 + j * 11) % 90) for j in range(16)) for i in range(90))[:4096],
        "12 " * 7000,
        "\n".join(" ".join(f"{(i * 7 + j) % 100:02d}" for j in range(12)) for i in range(400))[:16_384],
    ],
    ids=["matrix-4k", "12x7000", "zero-padded-matrix-16k"],
)
def test_attack_numeric_table_is_not_refused_by_the_deadline(text: str) -> None:
    """A 4 KB table of two-digit numbers took 87 ms (sub-runs of every length); 16-21 KB hit the deadline."""
    strict = PiiScanner(PiiPolicy(deadline_ms=250))
    assert strict.scan_text(text) == []


def test_attack_zero_width_space_instead_of_one_separator(scanner: PiiScanner) -> None:
    text = "ids 1234 card 5425\u200b2334 3010 9903"
    assert [f.entity_type for f in scanner.scan_text(text)] == ["CREDIT_CARD"]
