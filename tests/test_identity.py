from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nacl.signing import SigningKey
from visionality.envelope import Claims, EnvelopeSigner, EnvelopeVerifier
from visionality.errors import EnvelopeError, RevokedError
from visionality.identity import Identity, envelope_from_headers
from visionality.paserk import k4_pid
from visionality.revocation import RevocationRecord, RevocationSet, RevocationUnavailable

DEP = "dep_test"


def _claims(**kw: object) -> Claims:
    now = datetime.now(UTC).replace(microsecond=0)
    base: dict[str, object] = dict(
        iss=DEP,
        sub="alice",
        email="a@x",
        jti="key_1",
        iat=now - timedelta(minutes=1),
        exp=now + timedelta(days=1),
        nbf=None,
        project="P",
        task="P-1",
        memo=None,
        url=None,
        budget=None,
    )
    base.update(kw)
    return Claims(**base)  # type: ignore[arg-type]


@pytest.fixture
def parts() -> tuple[EnvelopeSigner, Identity, RevocationSet]:
    sk = SigningKey.generate()
    pk = bytes(sk.verify_key)
    revs = RevocationSet()
    return EnvelopeSigner(sk, DEP), Identity(EnvelopeVerifier({k4_pid(pk): pk}, DEP), revs), revs


def test_bearer_and_x_api_key(parts: tuple[EnvelopeSigner, Identity, RevocationSet]) -> None:
    signer, identity, _ = parts
    token = signer.issue(_claims())
    a = identity.identify({"authorization": f"Bearer {token}"})
    b = identity.identify({"x-api-key": token})
    assert a.claims.sub == b.claims.sub == "alice"
    assert a.envelope_digest == b.envelope_digest and len(a.envelope_digest) == 64
    assert token not in a.envelope_digest


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Visionality key"),
        ({"authorization": "Basic abc"}, "Bearer"),
        ({"authorization": "Bearer sk-proj-abc"}, "provider keys"),
        ({"x-api-key": "v4.public." + "A" * 20000}, "characters long"),
    ],
)
def test_header_errors_are_specific(headers: dict[str, str], message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        envelope_from_headers(headers)


def test_revoked_key_and_subject(parts: tuple[EnvelopeSigner, Identity, RevocationSet]) -> None:
    signer, identity, revs = parts
    token = signer.issue(_claims())
    now = datetime.now(UTC)
    revs.add(RevocationRecord(ts=now, kind="jti", value="key_1", not_before=now, reason="left", by="hr"))
    with pytest.raises(RevokedError, match="key_1 has been revoked") as e:
        identity.identify({"x-api-key": token})
    assert "left" not in str(e.value)  # the operator's reason is HR detail, never told to the key holder


def test_stale_revocation_feed_fails_closed() -> None:
    sk = SigningKey.generate()
    pk = bytes(sk.verify_key)
    identity = Identity(EnvelopeVerifier({k4_pid(pk): pk}, DEP), RevocationSet(), lambda: False)
    with pytest.raises(RevocationUnavailable):
        identity.identify({"x-api-key": EnvelopeSigner(sk, DEP).issue(_claims())})


def test_remembered_envelope_still_expires_and_is_revocable() -> None:
    """A verified envelope is remembered, but exp and revocation are checked on every call."""
    sk = SigningKey.generate()
    pk = bytes(sk.verify_key)
    now = [datetime.now(UTC).timestamp()]
    revs = RevocationSet()
    identity = Identity(EnvelopeVerifier({k4_pid(pk): pk}, DEP, leeway_s=0, clock=lambda: now[0]), revs)
    exp = datetime.fromtimestamp(int(now[0]) + 60, UTC)
    token = EnvelopeSigner(sk, DEP).issue(_claims(exp=exp))
    first = identity.identify({"x-api-key": token})
    assert identity.identify({"x-api-key": token}) is first  # served from the verified map
    now[0] += 120
    with pytest.raises(EnvelopeError, match="expired"):
        identity.identify({"x-api-key": token})
    now[0] -= 120
    t = datetime.now(UTC)
    revs.add(RevocationRecord(ts=t, kind="jti", value="key_1", not_before=t, reason="left", by="hr"))
    with pytest.raises(RevokedError):
        identity.identify({"x-api-key": token})


def test_only_the_exact_verified_bytes_are_remembered(parts: tuple[EnvelopeSigner, Identity, RevocationSet]) -> None:
    signer, identity, _ = parts
    token = signer.issue(_claims())
    identity.identify({"x-api-key": token})
    # Flip one character of the signature part: a different string, so a full verification runs and fails.
    i = len("v4.public.") + 40
    tampered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    with pytest.raises(EnvelopeError):
        identity.identify({"x-api-key": tampered})


def test_verified_map_is_bounded(parts: tuple[EnvelopeSigner, Identity, RevocationSet]) -> None:
    from visionality import identity as identity_module

    signer, identity, _ = parts
    for i in range(identity_module._VERIFIED_CACHE_SIZE + 50):
        identity.identify({"x-api-key": signer.issue(_claims(jti=f"key_{i}"))})
    assert len(identity._verified) == identity_module._VERIFIED_CACHE_SIZE
