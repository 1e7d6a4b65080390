"""Presidio glue: pre-checks agree with Presidio, tldextract offline, swallowed-timeout guard."""

from __future__ import annotations

import logging
import random
import socket
import string
from collections.abc import Iterator

import pytest
import tldextract.tldextract
from presidio_analyzer.predefined_recognizers import (
    AbaRoutingRecognizer,
    CreditCardRecognizer,
    IbanRecognizer,
    NhsRecognizer,
)
from visionality.errors import PiiScanError
from visionality.pii import presidio_validators as pv


@pytest.fixture(scope="module")
def validators() -> pv.PresidioValidators:
    return pv.PresidioValidators()


def test_precheck_never_rejects_what_presidio_accepts() -> None:
    rng = random.Random(7)
    card, aba, nhs, iban = CreditCardRecognizer(), AbaRoutingRecognizer(), NhsRecognizer(), IbanRecognizer()
    for _ in range(4000):
        d = "".join(rng.choice(string.digits) for _ in range(rng.randint(12, 19)))
        assert pv._luhn(d) == bool(card.validate_result(d))
        d9 = d[:9]
        assert pv._aba(d9) == bool(aba.validate_result(d9))
        d10 = d[:10]
        assert pv._mod11(d10) or not nhs.validate_result(d10)
    for value in (
        "GB82WEST12345698765432",
        "DE89370400440532013000",
        "NL91ABNA0417164300",
        "FR7630006000011234567890189",
    ):
        assert pv._mod97(value) and iban.validate_result(value) is True
        broken = value[:2] + f"{(int(value[2:4]) + 1) % 100:02d}" + value[4:]
        assert not pv._mod97(broken) and not iban.validate_result(broken)


def test_iban_check_agrees_with_presidio(validators: pv.PresidioValidators) -> None:
    from faker import Faker

    reference = IbanRecognizer()
    rng = random.Random(3)
    for locale in ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_PT"):
        fake = Faker(locale)
        fake.seed_instance(1)
        for _ in range(60):
            value = str(fake.iban())
            mutated = value[:-1] + rng.choice(string.digits)
            spaced = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
            for candidate in (value, mutated, spaced, value.lower(), value[:-2]):
                assert validators.iban_ok(candidate) == (reference.validate_result(candidate) is True), candidate


def test_tldextract_is_offline(validators: pv.PresidioValidators, monkeypatch: pytest.MonkeyPatch) -> None:
    extractor = tldextract.tldextract.TLD_EXTRACTOR
    assert extractor.suffix_list_urls == ()

    def no_network(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    # A fresh extractor built the way we build it must answer from the bundled snapshot alone.
    fresh = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    assert fresh("mail.example.co.uk").suffix == "co.uk"
    assert validators.email_ok("ann@firm.co.uk")
    assert not validators.email_ok("ann@host.internal")


@pytest.fixture
def guard() -> Iterator[pv.SwallowedTimeoutGuard]:
    g = pv.SwallowedTimeoutGuard.install()
    g.reset()
    yield g
    g.reset()


def test_guard_turns_presidios_skip_warning_into_an_error(guard: pv.SwallowedTimeoutGuard) -> None:
    guard.raise_if_tripped()  # nothing yet
    # The exact message PatternRecognizer logs before skipping a timed-out pattern.
    logging.getLogger("presidio-analyzer").warning("Regex pattern '%s' timed out after %s seconds, skipping.", "p", 60)
    with pytest.raises(PiiScanError, match="timed out"):
        guard.raise_if_tripped()
    guard.raise_if_tripped()  # reset after raising


def test_guard_is_installed_once_and_sees_warnings() -> None:
    a = pv.SwallowedTimeoutGuard.install()
    b = pv.SwallowedTimeoutGuard.install()
    logger = logging.getLogger("presidio-analyzer")
    assert a is b
    assert sum(isinstance(h, pv.SwallowedTimeoutGuard) for h in logger.handlers) == 1
    assert logger.getEffectiveLevel() <= logging.WARNING
