"""Digit-run detectors (appliance/pii/numeric.py): cards, SSN, routing, NHS, phones."""

from __future__ import annotations

import time

import pytest
from visionality.pii.numeric import NumericDetector, _card_brand_ok
from visionality.pii.prepass import iter_candidates
from visionality.pii.presidio_validators import PresidioValidators

FLOORS = {e: 0.5 for e in ("CREDIT_CARD", "US_SSN", "US_BANK_ROUTING", "UK_NHS", "PHONE_NUMBER")}


@pytest.fixture(scope="module")
def detector() -> NumericDetector:
    return NumericDetector(PresidioValidators())


def found(detector: NumericDetector, text: str, floor: float = 0.5) -> list[tuple[str, str]]:
    out = []
    for kind, s, e in iter_candidates(text):
        if kind == "num":
            out += [
                (f.entity_type, text[f.start : f.end]) for f in detector.detect(text, s, e, FLOORS) if f.score >= floor
            ]
    return out


@pytest.mark.parametrize(
    "card",
    [
        "5425 2334 3010 9903",  # Mastercard 51-55
        "2223 0031 2200 3222",  # Mastercard 2-series (Mastercard test PAN)
        "4000 0000 0000 0000 006",  # 19-digit Visa
        "4222222222222",  # 13-digit Visa
        "3782 822463 10005",  # Amex 4-6-5
        "6759 6498 2643 8453",  # Maestro
        "501811524492",  # 12-digit Maestro (Faker)
        "213190926685878",  # 15-digit JCB
        "3530-1113-3330-0000",  # JCB, dashes
        "6011000990139424",  # Discover
        "6200 0000 0000 0005",  # UnionPay
        "2200 0000 0000 0004",  # Mir
    ],
)
def test_cards_in_every_range(detector: NumericDetector, card: str) -> None:
    assert found(detector, f"pay with {card} today") == [("CREDIT_CARD", card)]


def test_presidios_regex_gap_is_closed() -> None:
    assert _card_brand_ok("2221000000000009") and _card_brand_ok("4000000000000000006")
    assert not _card_brand_ok("9999999999999995")


def test_luhn_failure_and_odd_grouping_are_not_cards(detector: NumericDetector) -> None:
    assert found(detector, "ref 5425 2334 3010 9904") == []
    assert found(detector, "ref 54 25233 43010 9903") == []


def test_ssn_rules(detector: NumericDetector) -> None:
    assert found(detector, "id 536-22-8726 x") == [("US_SSN", "536-22-8726")]
    assert found(detector, "SSN: 536228726") == [("US_SSN", "536228726")]
    assert found(detector, "id 536228726 x") == []  # bare 9 digits need a label
    for invalid in ("000-12-3456", "666-12-3456", "123-45-6789", "536-00-8726", "912-34-5678", "536-22.8726"):
        assert ("US_SSN", invalid) not in found(detector, f"SSN {invalid}")


def test_routing_needs_checksum_and_label(detector: NumericDetector) -> None:
    assert found(detector, "routing number 021000021") == [("US_BANK_ROUTING", "021000021")]
    assert found(detector, "number 021000021") == []
    assert found(detector, "routing number 021000022") == []


def test_nhs(detector: NumericDetector) -> None:
    assert found(detector, "patient 401 023 2137 seen") == [("UK_NHS", "401 023 2137")]
    assert found(detector, "NHS no 4010232137") == [("UK_NHS", "4010232137")]
    assert found(detector, "ref 4010232137") == []  # bare: as likely a phone or an epoch
    assert found(detector, "NHS no 4010232138") == []  # mod-11 fails


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1-780-563-6083x7783",
        "(591)341-7776",
        "206.269.0743",
        "+33 (0)1 48 08 06 36",
        "06 12 34 56 78",
        "+49(0)3915 00080",
        "07700 900123",
        "+34 884 39 15 00",
    ],
)
def test_phone_layouts(detector: NumericDetector, phone: str) -> None:
    assert ("PHONE_NUMBER", phone) in found(detector, f"reach {phone} later")


def test_phone_needs_label_when_the_layout_is_ambiguous(detector: NumericDetector) -> None:
    assert found(detector, "id 2025550143 x") == []
    assert found(detector, "phone: 2025550143") == [("PHONE_NUMBER", "2025550143")]
    assert found(detector, "case 05955-8574") == []


@pytest.mark.parametrize(
    "lookalike",
    ["2024-01-15", "15/01/2024", "10.0.19045.3693", "3.14159265358979", "978-3-16-148410-0", "1700000000123"],
)
def test_lookalikes_are_not_numbers_of_interest(detector: NumericDetector, lookalike: str) -> None:
    assert found(detector, f"value {lookalike} end") == []


def test_two_numbers_in_one_run_are_both_found(detector: NumericDetector) -> None:
    assert found(detector, "call 555-123-4567 2 times, card 4111111111111111 4 times") == [
        ("PHONE_NUMBER", "555-123-4567"),
        ("CREDIT_CARD", "4111111111111111"),
    ]


def test_threshold_floor_skips_weak_readings(detector: NumericDetector) -> None:
    text = "routing 021000021"
    s, e = next((s, e) for k, s, e in iter_candidates(text) if k == "num")
    assert detector.detect(text, s, e, {"PHONE_NUMBER": 0.5}) == []


def test_attack_card_with_dots_or_mixed_separators(detector: NumericDetector) -> None:
    for card in ("5425.2334.3010.9903", "5425 2334-3010 9903", "5425  2334  3010  9903"):
        assert found(detector, f"pay {card} now") == [("CREDIT_CARD", card)]
    assert found(detector, "build 5425.23343.010.9903") == []  # loose dotted layouts are versions


def test_attack_card_as_an_amount_with_decimals(detector: NumericDetector) -> None:
    assert found(detector, "amount 5425233430109903.00") == [("CREDIT_CARD", "5425233430109903")]
    assert found(detector, "pi 3.14159265358979 and 1700000000.123") == []


def test_epoch_milliseconds_are_not_cards_even_near_a_card_word(detector: NumericDetector) -> None:
    # 1708277712094 passes Luhn; the clean corpus flagged it next to "test card" in a log.
    assert found(detector, "test card 4242 ts_ms=1708277712094") == []


def test_attack_numeric_table_costs_linear_time(detector: NumericDetector) -> None:
    """Every sub-run of a 60-character run used to be classified: a 4 KB table took ~87 ms, 21 KB ~400 ms."""
    tables = [
        "\n".join(" ".join(str(10 + (i * 37 + j * 11) % 90) for j in range(16)) for i in range(90)),
        "12 " * 7000,
        "123 " * 5000,
        " ".join(f"{(i * 7) % 100:02d}" for i in range(7000)),
    ]
    for table in tables:
        t0 = time.perf_counter()
        assert found(detector, table) == []
        assert time.perf_counter() - t0 < 0.1, table[:20]


def test_table_row_of_small_numbers_is_not_a_phone(detector: NumericDetector) -> None:
    assert found(detector, "row 06 12 34 56 78 91 23 45") == []  # eight two-digit groups: a table row
    assert found(detector, "tel 06 12 34 56 78") == [("PHONE_NUMBER", "06 12 34 56 78")]


def test_hex_dumps_and_dates_with_times_are_not_phones(detector: NumericDetector) -> None:
    assert found(detector, "00000000  10 4a 5f 00 12 34 56 78  |.J_..4Vx|") == []
    assert found(detector, "00000010: 0012 3456 7890 1234  ..4Vx..4") == []
    assert found(detector, "meeting 01/15/2024 09:00 AM") == []
    assert found(detector, "2024: call 020 7946 0958") == [("PHONE_NUMBER", "020 7946 0958")]


def test_order_numbers_and_versions_near_a_phone_word_are_not_phones(detector: NumericDetector) -> None:
    # From the clean corpus: lorem words "cell"/"phone" happened to sit near these look-alikes.
    assert found(detector, "cell item, order #70755620.") == []
    assert found(detector, "phone, version 10.22.156 here") == []
    assert found(detector, "cell phone 020 7946 0958") == [("PHONE_NUMBER", "020 7946 0958")]
