"""Who is calling: the key envelope from the request headers, verified offline, checked for revocation.

The OpenAI SDKs send the key as ``Authorization: Bearer …``; the Anthropic SDK as ``x-api-key``.
Portkey's SDK puts the upstream key in ``Authorization`` too. Either header may carry the envelope.
Verification is pure CPU (Ed25519, ~70 µs) and the revocation check is a set lookup: no I/O per call.

A client sends the same envelope on every call, so the result of a full verification is remembered for
that exact token string (a bounded map, like Envoy's JWT filter ``jwt_cache_config``). A hit trusts only
what an earlier signature check proved for the very same bytes; the time checks (exp, nbf, iat) and the
revocation check still run on every call.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .envelope import Claims, EnvelopeVerifier
from .errors import EnvelopeError, RevokedError
from .revocation import RevocationSet, RevocationUnavailable

__all__ = ["Identity", "Caller", "envelope_from_headers"]

# A PASETO v4.public token with our claims is ~600 characters; anything this large is not a key.
_MAX_TOKEN_CHARS = 16 * 1024
# Verified envelopes remembered, least recently used dropped first: ~1 KB each, so at most a few MiB. A
# company's active keys fit; a flood of distinct (even valid) tokens only evicts, it never grows memory.
_VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Caller:
    claims: Claims
    envelope_digest: str  # sha256 hex of the token: names the envelope in the ledger, cannot be replayed


def envelope_from_headers(headers: Mapping[str, str]) -> str:
    """The envelope string, from ``Authorization: Bearer`` or ``x-api-key``. Header names are lower-case."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
        else:
            raise EnvelopeError("Authorization header must be 'Bearer <Visionality key>'")
    else:
        token = (headers.get("x-api-key") or "").strip()
    if not token:
        raise EnvelopeError(
            "missing Visionality key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>' "
            "(issue one with `visionality key issue`)"
        )
    if len(token) > _MAX_TOKEN_CHARS:
        raise EnvelopeError(f"key is {len(token)} characters long; a Visionality key is under {_MAX_TOKEN_CHARS}")
    if not token.startswith("v4.public."):
        # Most often a provider key pasted where the Visionality key belongs: say so.
        raise EnvelopeError(
            "this is not a Visionality key (expected a 'v4.public.' envelope); provider keys are held by "
            "the appliance, never by clients"
        )
    return token


class Identity:
    def __init__(
        self, verifier: EnvelopeVerifier, revocations: RevocationSet, healthy: Callable[[], bool] = lambda: True
    ) -> None:
        self._verifier = verifier
        self._revocations = revocations
        self._healthy = healthy
        self._verified: OrderedDict[str, Caller] = OrderedDict()

    def identify(self, headers: Mapping[str, str]) -> Caller:
        """Verify the caller's envelope and check revocation. Raises EnvelopeError (401) or RevokedError (403)."""
        caller = self.verify(headers)
        self.check(caller)
        return caller

    def verify(self, headers: Mapping[str, str]) -> Caller:
        """Who is calling, proven by the signature — revocation not yet checked. Raises EnvelopeError (401)."""
        token = envelope_from_headers(headers)
        cache = self._verified
        caller = cache.get(token)
        if caller is not None:
            cache.move_to_end(token)
            self._verifier.check_times(caller.claims)  # an envelope expires while it is remembered
            return caller
        claims = self._verifier.verify(token)  # raises for anything invalid: only valid envelopes are kept
        caller = Caller(claims, hashlib.sha256(token.encode()).hexdigest())
        cache[token] = caller
        if len(cache) > _VERIFIED_CACHE_SIZE:
            cache.popitem(last=False)
        return caller

    def check(self, caller: Caller) -> None:
        """Refuse a revoked key or subject (403), or every key while the revocation feed is stale (503)."""
        claims = caller.claims
        if not self._healthy():
            # A revocation we cannot see must not be bypassed: while the revocation feed is stale, refuse.
            raise RevocationUnavailable("the revocation list cannot be read; refusing until it can (fail closed)")
        if self._revocations.check(claims) is not None:
            # The operator's reason ("left the company") is HR detail: it stays in the revocation log and the
            # events stream, never in an answer to whoever holds the key.
            raise RevokedError(f"key {claims.jti} has been revoked; ask your administrator for a new one")
