"""IBAN and NINO (appliance/pii/identifiers.py)."""

from __future__ import annotations

import pytest
from visionality.pii import PiiPolicy, PiiScanner
from visionality.pii.identifiers import iban_end, nino_score
from visionality.pii.presidio_validators import PresidioValidators


@pytest.fixture(scope="module")
def validators() -> PresidioValidators:
    return PresidioValidators()


def test_iban_trailing_group_of_the_next_word_is_dropped(validators: PresidioValidators) -> None:
    text = "pay DE89 3704 0044 0532 0130 00 2024 ok"
    start = text.index("DE89")
    assert text[start : iban_end(text, start, text.index(" ok"), validators)] == "DE89 3704 0044 0532 0130 00"


@pytest.mark.parametrize("iban", ["GB33BUKB20201555555555", "NL91 ABNA 0417 1643 00", "FR7630006000011234567890189"])
def test_iban_valid(validators: PresidioValidators, iban: str) -> None:
    assert iban_end(iban, 0, len(iban), validators) == len(iban)


def test_iban_bad_checksum(validators: PresidioValidators) -> None:
    assert iban_end("GB34BUKB20201555555555", 0, 22, validators) == -1


NINOS = [("AB123456C", True), ("AB 12 34 56 C", True), ("GB123456A", False), ("DA123456A", False)]
NINOS += [("AO123456A", False), ("AB 1234 56 C", False)]


@pytest.mark.parametrize(("nino", "ok"), NINOS)
def test_nino_prefix_rules(nino: str, ok: bool) -> None:
    assert (nino_score(nino, 0, len(nino)) >= 0.5) is ok


def test_nino_label_raises_score() -> None:
    text = "National Insurance number AB123456C"
    assert nino_score(text, text.index("AB"), len(text)) == 1.0


def test_attack_lower_case_iban() -> None:
    scanner = PiiScanner(PiiPolicy())
    for iban in ("gb33bukb20201555555555", "gb33 bukb 2020 1555 5555 55"):
        assert [(f.entity_type, f.end - f.start) for f in scanner.scan_text(f"pay {iban} now")] == [
            ("IBAN_CODE", len(iban))
        ]
    assert scanner.scan_text("example de89370400440532013000") == []  # the registry example, allow-listed
    assert scanner.scan_text("hash de89370400440532013001") == []  # fails mod 97
