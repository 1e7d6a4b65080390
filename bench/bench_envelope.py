"""Envelope verify cost on this machine: p50/p99 per call, against raw Ed25519 verify.

Run: ``.venv/bin/python bench/bench_envelope.py [--n 20000]``. Not a test: numbers depend on the box
(the target is < 200 us per EnvelopeVerifier.verify; DESIGN.md request path step 2).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import nacl.bindings
import nacl.signing
from visionality.envelope import Budget, Claims, EnvelopeSigner, EnvelopeVerifier
from visionality.paserk import b64url_decode
from visionality.revocation import RevocationRecord, RevocationSet

DEPLOYMENT = "acme-prod"


def _timings_us(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(1000, n)):  # warm caches, regex compilation, allocator
        fn()
    out = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1000)
    finally:
        gc.enable()
    return out


def _interleaved_us(a: Callable[[], object], b: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    for _ in range(min(1000, n)):
        a()
        b()
    out_a, out_b = [], []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            a()
            t1 = clock()
            b()
            t2 = clock()
            out_a.append((t1 - t0) / 1000)
            out_b.append((t2 - t1) / 1000)
    finally:
        gc.enable()
    return out_a, out_b


def _summary(name: str, samples: list[float]) -> float:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    # min approximates the cost on an idle core; p50/p99 include whatever else shares the machine.
    print(f"{name:<34} min {samples[0]:7.2f} us   p50 {p50:8.2f} us   p99 {p99:8.2f} us")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="verifications per measurement")
    args = parser.parse_args()

    key = nacl.signing.SigningKey.generate()
    now = datetime.now(UTC).replace(microsecond=0)
    claims = Claims(
        iss="https://visionality.acme.example",
        sub="00u1a2b3c4d5e6f7g8h9",
        email="ada.lovelace@acme.example",
        jti="key_01JEXAMPLE7Q8R9S0T1U2V3W4",
        iat=now - timedelta(hours=1),
        exp=now + timedelta(days=30),
        nbf=None,
        project="checkout-redesign",
        task="PROJ-128",
        memo="Sprint 14 checkout",
        url="https://jira.acme.example/browse/PROJ-128",
        budget=Budget(Decimal("25.00"), "month"),
        role="user",
        cost_center="CC-4410",
        gl_code="6120-AI",
    )
    signer = EnvelopeSigner(key, DEPLOYMENT)
    token = signer.issue(claims)
    verifier = EnvelopeVerifier({signer.kid: signer.public_key}, DEPLOYMENT)
    assert verifier.verify(token) == claims

    revocations = RevocationSet()
    for i in range(10_000):  # a deployment with a long history of leavers and lost keys
        revocations.add(
            RevocationRecord(
                ts=now, kind="jti" if i % 2 else "sub", value=f"v{i}", not_before=now, reason="r", by="admin"
            )
        )

    # Raw libsodium verify of the very bytes the envelope signs (PASETO PAE, rebuilt here), as the floor.
    _, _, body_text, footer_text = token.split(".")
    body, footer = b64url_decode(body_text), b64url_decode(footer_text)
    pieces = (b"v4.public.", body[:-64], footer, DEPLOYMENT.encode())
    pae = struct.pack("<Q", len(pieces)) + b"".join(struct.pack("<Q", len(p)) + p for p in pieces)
    signed, pk = body[-64:] + pae, signer.public_key
    nacl.bindings.crypto_sign_open(signed, pk)  # proves the floor checks the same signature

    print(f"token length: {len(token)} chars, n = {args.n}")
    # Raw and full verify are interleaved call by call so both see the same load from other processes on
    # a shared box; the ratio is then meaningful even when absolute numbers are noisy.
    raw_samples, full_samples = _interleaved_us(
        lambda: nacl.bindings.crypto_sign_open(signed, pk), lambda: verifier.verify(token), args.n
    )
    raw = _summary("raw nacl crypto_sign_open", raw_samples)
    full = _summary("EnvelopeVerifier.verify", full_samples)
    rev = _summary("RevocationSet.check (10k entries)", _timings_us(lambda: revocations.check(claims), args.n))
    print(f"verify / raw nacl verify (p50): {full / raw:.2f}x; overhead over raw verify (p50): {full - raw:.1f} us")
    print(f"verify + revocation check (p50): {full + rev:.1f} us")


if __name__ == "__main__":
    main()
