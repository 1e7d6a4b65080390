"""Accuracy harness: recall per detector on the labelled corpus, false-positive rate on the clean corpus.

Fails the build when accuracy drops below issue 5's goals: recall >= 0.99 for the detectors with a checksum or
a fixed prefix, >= 0.95 for the others, and at most 1% of clean prompts flagged. The corpora are generated
(seeded) by tests/pii_corpus.py; the table printed here is the one quoted in docs/pii.md.
"""

from __future__ import annotations

import pytest
from visionality.pii import PiiPolicy, PiiScanner

from .pii_corpus import ENTITY_TYPES, clean_corpus, labelled_corpus

STRICT = ("CREDIT_CARD", "IBAN_CODE", "US_BANK_ROUTING", "UK_NHS", "API_KEY", "AWS_ACCESS_KEY", "PRIVATE_KEY",
          "EMAIL_ADDRESS", "IP_ADDRESS", "UK_NINO")  # fmt: skip
GOAL = {e: (0.99 if e in STRICT else 0.95) for e in ENTITY_TYPES}
MAX_FP_RATE = 0.01
PER_TYPE = 220
CLEAN_PROMPTS = 1000


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    # A generous deadline: CI machines are shared and this measures accuracy, not speed (bench/bench_pii.py).
    return PiiScanner(PiiPolicy(deadline_ms=5_000))


def recall_table(scanner: PiiScanner) -> dict[str, tuple[int, int]]:
    hits = dict.fromkeys(ENTITY_TYPES, 0)
    totals = dict.fromkeys(ENTITY_TYPES, 0)
    for prompt in labelled_corpus(PER_TYPE):
        found = scanner.scan_text(prompt.text)
        for entity, start, end in prompt.spans:
            totals[entity] += 1
            if any(f.entity_type == entity and f.start < end and start < f.end for f in found):
                hits[entity] += 1
    return {e: (hits[e], totals[e]) for e in ENTITY_TYPES}


def fp_prompts(scanner: PiiScanner) -> list[tuple[str, list[str]]]:
    flagged = []
    for text in clean_corpus(CLEAN_PROMPTS):
        found = scanner.scan_text(text)
        if found:
            flagged.append((text, [f"{f.entity_type}:{text[f.start : f.end]!r}" for f in found]))
    return flagged


def test_recall_per_detector_meets_goal(scanner: PiiScanner) -> None:
    table = recall_table(scanner)
    print("\n| detector | found / total | recall | goal |\n|---|---|---|---|")
    for entity, (hit, total) in table.items():
        print(f"| {entity} | {hit} / {total} | {hit / total:.3f} | {GOAL[entity]:.2f} |")
    for entity, (_, total) in table.items():
        assert total >= 200, f"{entity}: only {total} positives generated"
    below = {e: round(h / t, 3) for e, (h, t) in table.items() if h / t < GOAL[e]}
    assert not below, f"recall below goal: {below}"


def test_false_positive_rate_on_clean_prompts(scanner: PiiScanner) -> None:
    flagged = fp_prompts(scanner)
    rate = len(flagged) / CLEAN_PROMPTS
    print(f"\nclean prompts flagged: {len(flagged)} / {CLEAN_PROMPTS} = {rate:.3%}")
    for _, what in flagged[:10]:
        print("  ", what)
    assert rate <= MAX_FP_RATE, f"false-positive rate {rate:.2%} > {MAX_FP_RATE:.0%}: {[w for _, w in flagged[:5]]}"


def test_corpus_is_the_same_on_every_run() -> None:
    """Timestamps used to be drawn relative to the wall clock, so each run scanned (and counted) another corpus."""
    assert clean_corpus(200) == clean_corpus(200)
    assert [p.text for p in labelled_corpus(20)] == [p.text for p in labelled_corpus(20)]
