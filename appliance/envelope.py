"""Key envelopes: PASETO v4.public tokens that carry who a caller is and what they work on.

Wire format (paseto-standard/paseto-spec ``docs/01-Protocol-Versions/Version4.md``, "Sign" / "Verify")::

    v4.public.<b64url(m || sig)>[.<b64url(f)>]      sig = Ed25519(sk, PAE(h, m, f, i))

- ``h`` = ``"v4.public."``; ``m`` = compact JSON claims; ``f`` = footer ``{"kid": "<k4.pid>"}``;
  ``i`` = implicit assertion = the deployment id, authenticated but never sent, so an envelope issued by
  one deployment fails the signature check on another even if both trusted the same key.
- PAE (``docs/01-Protocol-Versions/Common.md``, "Authentication Padding"): LE64(piece count), then
  LE64(len) || piece for each piece. It makes the signed bytes unambiguous.

The footer kid is read *before* the signature is checked, only to pick the key; it is covered by the
signature (it is inside PAE), so a swapped kid selects a key that then fails to verify. An unknown kid fails
closed. Verification is offline: no I/O, no cache of verified tokens (a cached "valid" would outlive an
expiry or a revocation). Messages never include the token, which is a bearer credential.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal, cast, get_args

import nacl.bindings
import nacl.exceptions
import nacl.signing

from .errors import ConfigError, EnvelopeError
from .paserk import b64url_decode, b64url_encode, k4_pid

__all__ = [
    "Budget",
    "BudgetPeriod",
    "Claims",
    "EnvelopeRejected",
    "EnvelopeSigner",
    "EnvelopeVerifier",
    "MAX_TOKEN_CHARS",
    "Role",
    "format_time",
    "parse_time",
    "sign_v4_public",
    "verify_v4_public",
]

BudgetPeriod = Literal["total", "month"]
Role = Literal["user", "admin"]
_PERIODS: Final = frozenset(get_args(BudgetPeriod))
_ROLES: Final = frozenset(get_args(Role))

_HEADER: Final = "v4.public."
_HEADER_BYTES: Final = _HEADER.encode("ascii")
# Ed25519 signature and key sizes (RFC 8032 section 5.1; libsodium crypto_sign_BYTES etc.).
_SIG_BYTES: Final = 64
_PK_BYTES: Final = 32
_SK_BYTES: Final = 64

# A realistic envelope with every claim set is ~750 chars; 16 KiB leaves room for long memos while bounding
# the work an unauthenticated caller can make us do before the signature check (base64 + JSON of the footer).
MAX_TOKEN_CHARS: Final = 16 * 1024
# Our footer is {"kid":"k4.pid.<44 chars>"} = 61 bytes. The PASETO spec (Version4.md, "Verify", and the
# "Optional Footer" section of Common.md) warns against parsing large/deep untrusted footer JSON; this cap
# keeps the pre-signature JSON parse trivially small.
_MAX_FOOTER_BYTES: Final = 256
# The leeway absorbs clock skew between the issuing host and this appliance (RFC 7519 section 4.1.4 practice).
_MAX_LEEWAY_S: Final = 300.0

_VERSIONED_HEADER_RE = re.compile(r"v[0-9]{1,3}\.(?:local|public)\.")
# RFC 3339 section 5.6 date-time: full-date "T" full-time, time-offset required (Z or +hh:mm/-hh:mm).
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # full-date (month/day ranges are checked by fromisoformat)
    r"([Tt])[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"  # "T" partial-time
    r"(?:([Zz])|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"  # time-offset, mandatory
)
# A budget amount is a plain non-negative decimal string ("25", "25.00"): no sign, exponent, NaN or
# whitespace, so the signed text has one obvious meaning to every reader (and never passes through float).
_AMOUNT_RE = re.compile(r"(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,6})?")


class EnvelopeRejected(EnvelopeError):
    """An envelope failed to parse or verify. ``code`` is a stable machine-readable reason for the ledger.

    Codes: ``malformed``, ``too_large``, ``not_v4_public``, ``bad_base64``, ``truncated``, ``bad_footer``,
    ``unknown_kid``, ``bad_signature``, ``bad_claims``, ``expired``, ``not_yet_valid``.
    """

    def __init__(self, message: str, code: str = "malformed") -> None:
        super().__init__(message)
        self.code = code


class _Base64Rejected(EnvelopeRejected):
    # b64url_decode builds its error from one message; this fixes the code for those errors.
    def __init__(self, message: str) -> None:
        super().__init__(message, "bad_base64")


# --------------------------------------------------------------------------------------------------
# Low level: PASETO v4.public sign / verify


def _le64(n: int) -> bytes:
    # Common.md LE64: unsigned 64-bit little endian with the top bit cleared (interop with signed ints).
    return struct.pack("<Q", n & 0x7FFF_FFFF_FFFF_FFFF)


def _pae(*pieces: bytes) -> bytes:
    out = [_le64(len(pieces))]
    for piece in pieces:
        out.append(_le64(len(piece)))
        out.append(piece)
    return b"".join(out)


def _split_token(token: object) -> tuple[str, str | None]:
    """Structural checks shared by both verifiers: size, header, part count. Returns (body, footer) text."""
    if not isinstance(token, str):
        raise EnvelopeRejected(f"expected the envelope as text, got {type(token).__name__}")
    if not token:
        raise EnvelopeRejected("no envelope: the token is empty")
    # Checked first so an oversized input costs one len() and nothing else.
    if len(token) > MAX_TOKEN_CHARS:
        raise EnvelopeRejected(f"envelope too large: {len(token)} characters, limit {MAX_TOKEN_CHARS}", "too_large")
    if not token.startswith(_HEADER):
        found = _VERSIONED_HEADER_RE.match(token)
        if found is not None:
            raise EnvelopeRejected(
                f"not a v4.public envelope: got a {found.group(0)[:-1]} token (expected v4.public)",
                "not_v4_public",
            )
        raise EnvelopeRejected("not a v4.public envelope: the 'v4.public.' header is missing", "not_v4_public")
    parts = token[len(_HEADER) :].split(".")
    if len(parts) > 2:
        raise EnvelopeRejected(
            f"malformed envelope: expected v4.public.<body>[.<footer>], got {len(parts)} parts after the header"
        )
    if len(parts) == 2 and not parts[1]:
        # Version4.md: an empty footer is sent with no trailing '.', so '<body>.' is a second spelling.
        raise EnvelopeRejected("malformed envelope: empty footer after '.'", "bad_footer")
    return parts[0], parts[1] if len(parts) == 2 else None


def _decode_body(body_text: str) -> tuple[bytes, bytes]:
    body = b64url_decode(body_text, what="envelope body", error=_Base64Rejected)
    if len(body) < _SIG_BYTES:
        raise EnvelopeRejected(
            f"envelope truncated: body is {len(body)} bytes, expected a payload plus a {_SIG_BYTES}-byte signature",
            "truncated",
        )
    return body[:-_SIG_BYTES], body[-_SIG_BYTES:]


def _check_signature(pk: bytes, message: bytes, footer: bytes, implicit: bytes, sig: bytes) -> None:
    signed = _pae(_HEADER_BYTES, message, footer, implicit)
    try:
        # crypto_sign_open (libsodium) is the detached verify with sig prepended; it rejects
        # non-canonical S and small-order points.
        nacl.bindings.crypto_sign_open(sig + signed, pk)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise EnvelopeRejected(
            "bad signature: the envelope was altered, signed by another key, or issued for another deployment",
            "bad_signature",
        ) from e


def sign_v4_public(secret_key64: bytes, message: bytes, footer: bytes = b"", implicit: bytes = b"") -> str:
    """Sign ``message`` as a PASETO v4.public token (Version4.md "Sign").

    ``secret_key64`` is the libsodium/PASERK layout seed || public key; the halves must match.
    """
    if not isinstance(secret_key64, bytes | bytearray) or len(secret_key64) != _SK_BYTES:
        got = len(secret_key64) if isinstance(secret_key64, bytes | bytearray) else type(secret_key64).__name__
        raise ConfigError(f"v4.public secret key: expected {_SK_BYTES} bytes (seed || public key), got {got}")
    for name, value in (("message", message), ("footer", footer), ("implicit assertion", implicit)):
        if not isinstance(value, bytes | bytearray):
            raise EnvelopeRejected(f"v4.public {name}: expected bytes, got {type(value).__name__}")
    try:
        signing_key = nacl.signing.SigningKey(bytes(secret_key64[:32]))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise ConfigError(f"v4.public secret key: invalid Ed25519 seed: {e}") from e
    if bytes(signing_key.verify_key) != bytes(secret_key64[32:]):
        raise ConfigError("v4.public secret key: public half does not match the seed")
    m, f = bytes(message), bytes(footer)
    sig = signing_key.sign(_pae(_HEADER_BYTES, m, f, bytes(implicit))).signature
    token = _HEADER + b64url_encode(m + sig)
    return token + "." + b64url_encode(f) if f else token


def verify_v4_public(public_key32: bytes, token: str, implicit: bytes = b"") -> tuple[bytes, bytes]:
    """Verify a v4.public token (Version4.md "Verify") and return ``(payload, footer)`` as bytes.

    Raises ``EnvelopeRejected`` for anything else: another version or purpose (v4.local, v2.public...),
    bad base64, a truncated body, or a signature that does not verify under ``public_key32`` and ``implicit``.
    """
    if not isinstance(public_key32, bytes | bytearray) or len(public_key32) != _PK_BYTES:
        got = len(public_key32) if isinstance(public_key32, bytes | bytearray) else type(public_key32).__name__
        raise ConfigError(f"v4.public public key: expected {_PK_BYTES} bytes, got {got}")
    body_text, footer_text = _split_token(token)
    footer = b"" if footer_text is None else b64url_decode(footer_text, what="envelope footer", error=_Base64Rejected)
    message, sig = _decode_body(body_text)
    _check_signature(bytes(public_key32), message, footer, bytes(implicit), sig)
    return message, footer


# --------------------------------------------------------------------------------------------------
# Claims


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with 'Z' (``2026-12-03T19:00:00Z``; microseconds only when non-zero)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise EnvelopeRejected("time: expected a timezone-aware datetime, got a naive one", "bad_claims")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def parse_time(text: object, *, what: str = "time") -> datetime:
    """Parse an RFC 3339 date-time with a mandatory offset (section 5.6) into an aware UTC datetime.

    Stricter than ``datetime.fromisoformat``, which also takes ISO 8601 forms RFC 3339 excludes
    (no offset, week dates, basic format): a naive time here would silently mean "local time".
    """
    if not isinstance(text, str):
        raise EnvelopeRejected(f"{what}: expected an RFC 3339 time string, got {type(text).__name__}", "bad_claims")
    found = _RFC3339_RE.fullmatch(text)
    if found is None:
        raise EnvelopeRejected(
            f"{what}: expected an RFC 3339 time with offset such as 2026-12-03T19:00:00Z, got {text[:40]!r}",
            "bad_claims",
        )
    try:
        # The shape is RFC 3339 (checked above); fromisoformat (C, ~20x faster than building the datetime
        # by hand) does the range checks and truncates fractions past microseconds. It wants upper-case T/Z.
        value = datetime.fromisoformat(text if found.group(1) == "T" and found.group(2) != "z" else text.upper())
    except ValueError as e:  # Feb 30, hour 24, leap second 60 (datetime cannot hold it), offset >= 24h
        raise EnvelopeRejected(f"{what}: not a valid RFC 3339 time ({e}), got {text[:40]!r}", "bad_claims") from e
    return value if value.tzinfo is UTC else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending cap signed into the key: ``amount`` USD per ``period`` ("total" or calendar "month").

    JSON form ``{"amount": "25.00", "period": "month"}``; the amount is a decimal string, never a float.
    """

    amount: Decimal
    period: BudgetPeriod

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise EnvelopeRejected(
                f"claim 'budget.amount': expected a Decimal, got {type(self.amount).__name__}", "bad_claims"
            )
        if not self.amount.is_finite() or self.amount < 0:
            raise EnvelopeRejected(
                f"claim 'budget.amount': expected a finite amount >= 0, got {self.amount}", "bad_claims"
            )
        if not isinstance(self.period, str) or self.period not in _PERIODS:
            raise EnvelopeRejected(
                f"claim 'budget.period': expected 'total' or 'month', got {self.period!r}", "bad_claims"
            )

    def to_payload(self) -> dict[str, str]:
        # format "f" never uses exponent notation: Decimal("1E+3") is emitted as "1000".
        return {"amount": format(self.amount, "f"), "period": self.period}

    @classmethod
    def from_payload(cls, value: object) -> Budget:
        if not isinstance(value, dict):
            raise EnvelopeRejected(f"claim 'budget': expected an object, got {_json_type(value)}", "bad_claims")
        extra = set(value) - {"amount", "period"}
        if extra:
            raise EnvelopeRejected(f"claim 'budget': unexpected keys {sorted(extra)}", "bad_claims")
        amount, period = value.get("amount"), value.get("period")
        if not isinstance(amount, str) or _AMOUNT_RE.fullmatch(amount) is None:
            shown = repr(amount[:40]) if isinstance(amount, str) else _json_type(amount)
            raise EnvelopeRejected(
                f"claim 'budget.amount': expected a decimal string such as \"25.00\", got {shown}", "bad_claims"
            )
        if not isinstance(period, str) or period not in _PERIODS:
            raise EnvelopeRejected(
                f"claim 'budget.period': expected 'total' or 'month', got {period!r}"[:120], "bad_claims"
            )
        return cls(Decimal(amount), cast(BudgetPeriod, period))


_REQUIRED_TEXT: Final = ("iss", "sub", "email", "jti")
_OPTIONAL_TEXT: Final = ("project", "task", "memo", "url", "cost_center", "gl_code")
_KNOWN: Final = frozenset((*_REQUIRED_TEXT, *_OPTIONAL_TEXT, "iat", "exp", "nbf", "budget", "role"))


@dataclass(frozen=True, slots=True)
class Claims:
    """What an envelope asserts, after verification. Times are aware datetimes (UTC on the wire)."""

    iss: str
    sub: str  # the SSO subject the key was issued to
    email: str
    jti: str  # the key id: revocation by key names this
    iat: datetime
    exp: datetime | None
    nbf: datetime | None
    project: str | None
    task: str | None
    memo: str | None
    url: str | None
    budget: Budget | None
    role: Role = "user"
    cost_center: str | None = None
    gl_code: str | None = None

    def __post_init__(self) -> None:
        for name in _REQUIRED_TEXT:
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise EnvelopeRejected(
                    f"claim {name!r}: expected a non-empty string, got {_json_type(value)}", "bad_claims"
                )
        if "@" not in self.email:
            raise EnvelopeRejected("claim 'email': expected an email address (no '@' found)", "bad_claims")
        for name in _OPTIONAL_TEXT:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise EnvelopeRejected(f"claim {name!r}: expected a string, got {_json_type(value)}", "bad_claims")
        # Reports render url as a link; only web links, never javascript:/data: URLs.
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise EnvelopeRejected("claim 'url': expected an http(s):// link", "bad_claims")
        for name in ("iat", "exp", "nbf"):
            value = getattr(self, name)
            if value is None and name != "iat":
                continue
            if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
                raise EnvelopeRejected(f"claim {name!r}: expected a timezone-aware datetime", "bad_claims")
        if self.exp is not None and self.exp <= self.iat:
            raise EnvelopeRejected(
                f"claim 'exp': expires at {format_time(self.exp)}, not after iat {format_time(self.iat)}", "bad_claims"
            )
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise EnvelopeRejected(f"claim 'budget': expected a Budget, got {_json_type(self.budget)}", "bad_claims")
        if not isinstance(self.role, str) or self.role not in _ROLES:
            raise EnvelopeRejected(f"claim 'role': expected 'user' or 'admin', got {self.role!r}"[:120], "bad_claims")

    def to_payload(self) -> dict[str, Any]:
        """The JSON object signed into the envelope. Absent optional claims are omitted, not null."""
        out: dict[str, Any] = {"iss": self.iss, "sub": self.sub, "email": self.email, "jti": self.jti}
        out["iat"] = format_time(self.iat)
        if self.exp is not None:
            out["exp"] = format_time(self.exp)
        if self.nbf is not None:
            out["nbf"] = format_time(self.nbf)
        for name in ("project", "task", "memo", "url"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.budget is not None:
            out["budget"] = self.budget.to_payload()
        out["role"] = self.role
        if self.cost_center is not None:
            out["cost_center"] = self.cost_center
        if self.gl_code is not None:
            out["gl_code"] = self.gl_code
        return out

    @classmethod
    def from_payload(cls, payload: object) -> Claims:
        """Strictly rebuild claims from a decoded JSON payload; errors name the offending claim.

        Unknown claims are refused rather than ignored: a claim this version does not understand may be a
        restriction, and silently dropping a restriction would widen what the key can do.
        """
        if not isinstance(payload, dict):
            raise EnvelopeRejected(f"malformed claims: expected a JSON object, got {_json_type(payload)}", "bad_claims")
        unknown = payload.keys() - _KNOWN
        if unknown:
            names = ", ".join(sorted(unknown)[:5])
            raise EnvelopeRejected(f"malformed claims: unknown claim(s) {names[:200]}", "bad_claims")
        for name in (*_REQUIRED_TEXT, "iat"):
            if name not in payload:
                raise EnvelopeRejected(f"malformed claims: required claim {name!r} is missing", "bad_claims")
        role = payload.get("role", "user")
        if not isinstance(role, str) or role not in _ROLES:
            raise EnvelopeRejected(f"claim 'role': expected 'user' or 'admin', got {_json_type(role)}", "bad_claims")
        budget = payload.get("budget")
        return cls(
            iss=payload["iss"],
            sub=payload["sub"],
            email=payload["email"],
            jti=payload["jti"],
            iat=parse_time(payload["iat"], what="claim 'iat'"),
            exp=_optional_time(payload, "exp"),
            nbf=_optional_time(payload, "nbf"),
            project=payload.get("project"),
            task=payload.get("task"),
            memo=payload.get("memo"),
            url=payload.get("url"),
            budget=None if budget is None else Budget.from_payload(budget),
            role=cast(Role, role),
            cost_center=payload.get("cost_center"),
            gl_code=payload.get("gl_code"),
        )


def _optional_time(payload: dict[str, Any], name: str) -> datetime | None:
    value = payload.get(name)
    return None if value is None else parse_time(value, what=f"claim {name!r}")


def _json_type(value: object) -> str:
    # Names the JSON type, never the value: claim values may be personal data.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# High level: issue and verify Visionality envelopes


def _implicit_for(deployment_id: object) -> bytes:
    if not isinstance(deployment_id, str) or not deployment_id.strip():
        raise ConfigError(f"deployment id: expected a non-empty string, got {deployment_id!r}")
    return deployment_id.encode("utf-8")


def _footer_for(kid: str) -> bytes:
    return json.dumps({"kid": kid}, separators=(",", ":")).encode("ascii")


class EnvelopeSigner:
    """Issues envelopes for one deployment with its Ed25519 key (``Home.signing_key()``)."""

    __slots__ = ("_sk64", "_implicit", "_footer", "kid")

    def __init__(self, secret_key: nacl.signing.SigningKey, deployment_id: str) -> None:
        if not isinstance(secret_key, nacl.signing.SigningKey):
            raise ConfigError(f"envelope signer: expected a nacl SigningKey, got {type(secret_key).__name__}")
        pk = bytes(secret_key.verify_key)
        self._sk64 = bytes(secret_key) + pk
        self._implicit = _implicit_for(deployment_id)
        self.kid: str = k4_pid(pk)
        self._footer = _footer_for(self.kid)

    @property
    def public_key(self) -> bytes:
        return self._sk64[32:]

    def issue(self, claims: Claims) -> str:
        """Sign ``claims`` into an envelope bound to this deployment and key."""
        if not isinstance(claims, Claims):
            raise EnvelopeRejected(f"expected Claims, got {type(claims).__name__}", "bad_claims")
        data = claims.to_payload()
        # Refuse to mint what every verifier would refuse to read (e.g. a budget of 25.1234567: more
        # decimals than the claim allows): the verifier's own claim check, on the exact payload.
        Claims.from_payload(data)
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        token = sign_v4_public(self._sk64, payload, self._footer, self._implicit)
        if len(token) > MAX_TOKEN_CHARS:
            # Refuse to mint what every verifier would refuse to read.
            raise EnvelopeRejected(
                f"envelope too large: {len(token)} characters, limit {MAX_TOKEN_CHARS} (shorten the memo)",
                "too_large",
            )
        return token


class EnvelopeVerifier:
    """Verifies envelopes offline against the deployment's public keys (several during a key rotation).

    ``public_keys`` maps k4.pid -> 32-byte Ed25519 public key; each kid is checked against its key at
    construction so a mislabelled map fails at startup, not per request. The map is copied.
    """

    __slots__ = ("_keys", "_canonical_footers", "_implicit", "_leeway", "_clock")

    def __init__(
        self,
        public_keys: Mapping[str, bytes],
        deployment_id: str,
        *,
        leeway_s: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys: dict[str, bytes] = {}
        for kid, pk in public_keys.items():
            expected = k4_pid(pk)  # PaserkError (a ConfigError) on a wrong-sized key
            if kid != expected:
                raise ConfigError(f"envelope verifier: key id {kid!r} does not match its key (expected {expected})")
            keys[kid] = bytes(pk)
        if not keys:
            raise ConfigError("envelope verifier: no public keys configured; every envelope would be refused")
        if not isinstance(leeway_s, int | float) or not 0 <= leeway_s <= _MAX_LEEWAY_S:
            raise ConfigError(f"envelope verifier: leeway must be between 0 and {_MAX_LEEWAY_S:g} s, got {leeway_s!r}")
        self._keys = keys
        # Fast path: the exact footer text our signer emits for each trusted key -> (footer bytes, key).
        # An exact string match on a precomputed value, so it trusts nothing the JSON parse would not.
        footers = {kid: _footer_for(kid) for kid in keys}
        self._canonical_footers = {b64url_encode(footers[kid]): (footers[kid], pk) for kid, pk in keys.items()}
        self._implicit = _implicit_for(deployment_id)
        self._leeway = float(leeway_s)
        self._clock = clock

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, token: str) -> Claims:
        """Return the claims of a valid, current envelope; raise ``EnvelopeRejected`` otherwise."""
        body_text, footer_text = _split_token(token)
        # Truncation is checked before the footer: a token cut short has usually lost its footer too.
        message, sig = _decode_body(body_text)
        if footer_text is None:
            raise EnvelopeRejected(
                'envelope has no footer (truncated, or not issued by Visionality): expected {"kid": "k4.pid..."}',
                "bad_footer",
            )
        pk: bytes | None
        known = self._canonical_footers.get(footer_text)
        if known is not None:
            footer, pk = known
        else:
            footer = b64url_decode(footer_text, what="envelope footer", error=_Base64Rejected)
            pk = self._keys.get(self._kid_of(footer))
        if pk is None:
            raise EnvelopeRejected(
                "unknown kid: the envelope names a signing key this deployment does not trust", "unknown_kid"
            )
        _check_signature(pk, message, footer, self._implicit, sig)
        # Authenticated from here on.
        try:
            payload = json.loads(message)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise EnvelopeRejected("malformed claims: the payload is not UTF-8 JSON", "bad_claims") from e
        claims = Claims.from_payload(payload)
        self.check_times(claims)
        return claims

    @staticmethod
    def _kid_of(footer: bytes) -> str:
        # Untrusted until the signature verifies: used only to choose the key, bounded before parsing.
        if len(footer) > _MAX_FOOTER_BYTES:
            raise EnvelopeRejected(
                f'bad footer: {len(footer)} bytes, expected a small {{"kid": ...}} object (limit {_MAX_FOOTER_BYTES})',
                "bad_footer",
            )
        try:
            parsed = json.loads(footer)
        except (ValueError, RecursionError) as e:
            raise EnvelopeRejected('bad footer: not JSON, expected {"kid": "k4.pid..."}', "bad_footer") from e
        kid = parsed.get("kid") if isinstance(parsed, dict) else None
        if not isinstance(kid, str) or not kid:
            raise EnvelopeRejected('bad footer: no "kid" string, expected {"kid": "k4.pid..."}', "bad_footer")
        return kid

    def check_times(self, claims: Claims) -> None:
        """Refuse claims that are expired, not yet valid or issued in the future, as of now."""
        now = self._clock()
        if claims.exp is not None and now > claims.exp.timestamp() + self._leeway:
            raise EnvelopeRejected(
                f"envelope expired at {format_time(claims.exp)} (now {_fmt_epoch(now)}, leeway {self._leeway:g}s)",
                "expired",
            )
        if claims.nbf is not None and now + self._leeway < claims.nbf.timestamp():
            raise EnvelopeRejected(
                f"envelope not yet valid: usable from {format_time(claims.nbf)} (now {_fmt_epoch(now)})",
                "not_yet_valid",
            )
        if now + self._leeway < claims.iat.timestamp():
            raise EnvelopeRejected(
                f"envelope not yet valid: issued in the future at {format_time(claims.iat)} (now {_fmt_epoch(now)})",
                "not_yet_valid",
            )


def _fmt_epoch(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(int(seconds), UTC))
