"""PASERK serialisation of the deployment's Ed25519 keys (version k4).

Spec: paseto-standard/paserk ``types/public.md``, ``types/secret.md``, ``types/pid.md`` and
``operations/ID.md``. Only what Visionality needs is implemented:

- ``k4.public.<b64url(pk)>``            the 32-byte Ed25519 public key
- ``k4.secret.<b64url(seed || pk)>``    the 64-byte Ed25519 secret key (libsodium layout)
- ``k4.pid.<b64url(BLAKE2b-264("k4.pid." || k4.public string))>``  the key id put in envelope footers

Also home of the strict unpadded base64url codec that the envelope shares: PASETO and PASERK both
require base64url *without* ``=`` padding (PASETO spec, "Base64 Encoding"), and a decoder that
accepted padding, the standard alphabet or non-zero trailing bits would let one token have many
spellings, which breaks "one key id, one string" comparisons and log de-duplication.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

import nacl.exceptions
import nacl.signing

from .errors import ConfigError, VisionalityError

__all__ = [
    "PaserkError",
    "k4_public",
    "parse_k4_public",
    "k4_secret",
    "parse_k4_secret",
    "k4_pid",
    "parse_k4_pid",
    "b64url_encode",
    "b64url_decode",
]

# Ed25519 sizes (RFC 8032 section 5.1.5; libsodium crypto_sign_*BYTES).
_PUBLIC_KEY_BYTES = 32
_SECRET_KEY_BYTES = 64  # seed (32) || public key (32), the layout PASERK k4.secret uses
# operations/ID.md "Versions 2 and 4": BLAKE2b-264, i.e. 33 bytes = 44 base64url chars, no padding.
_PID_DIGEST_BYTES = 33

_PUBLIC_PREFIX = "k4.public."
_SECRET_PREFIX = "k4.secret."
_PID_PREFIX = "k4.pid."

_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


class PaserkError(ConfigError):
    """A PASERK string or raw key has the wrong version, type, length or encoding.

    A ``ConfigError`` because keys come from the deployment home or the operator, not from clients.
    """


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5, no ``=``), as PASETO and PASERK require."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, what: str = "value", error: type[VisionalityError] = PaserkError) -> bytes:
    """Decode strict unpadded base64url, raising ``error`` (never binascii/ValueError) on anything else.

    Rejected: padding ``=``, the standard alphabet's ``+`` and ``/``, whitespace, a length that is
    1 mod 4 (no byte string encodes to it), and non-zero unused trailing bits (a second spelling of
    the same bytes; RFC 4648 section 3.5 lets decoders reject it and we do).
    """
    if not isinstance(text, str):
        raise error(f"{what}: expected base64url text, got {type(text).__name__}")
    if _B64URL_RE.fullmatch(text) is None:
        bad = next(c for c in text if c not in _B64URL_VALUE)
        raise error(f"{what}: expected unpadded base64url (A-Z a-z 0-9 - _), got the character {bad!r}")
    rem = len(text) % 4
    if rem == 1:
        raise error(f"{what}: base64url length {len(text)} is impossible (truncated or corrupted)")
    if rem:
        # The last character carries 4 (rem == 2) or 2 (rem == 3) unused bits that must be zero.
        unused_mask = 0x0F if rem == 2 else 0x03
        if _B64URL_VALUE[text[-1]] & unused_mask:
            raise error(f"{what}: non-canonical base64url (unused trailing bits are not zero)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-rem % 4))
    except (binascii.Error, ValueError) as e:  # unreachable after the checks above; kept as a guard
        raise error(f"{what}: invalid base64url: {e}") from e


def _check_raw(key: bytes, expected: int, what: str) -> None:
    if not isinstance(key, bytes | bytearray):
        raise PaserkError(f"{what}: expected {expected} raw bytes, got {type(key).__name__}")
    if len(key) != expected:
        raise PaserkError(f"{what}: expected {expected} bytes, got {len(key)}")


def _split(text: str, prefix: str) -> str:
    """Return the data part after ``prefix``; name the header actually found when it is wrong."""
    if not isinstance(text, str):
        raise PaserkError(f"expected a {prefix[:-1]} PASERK string, got {type(text).__name__}")
    if not text.startswith(prefix):
        head = ".".join(text.split(".", 2)[:2]) if text.count(".") >= 2 else "no k<version>.<type>. header"
        # Only the header is echoed: the data part of a k4.secret must never reach a log.
        raise PaserkError(f"expected a {prefix[:-1]} PASERK, got {head[:24]!r}")
    return text[len(prefix) :]


def k4_public(pk: bytes) -> str:
    """``k4.public.`` + base64url of the 32-byte Ed25519 public key (types/public.md, versions 2 and 4)."""
    _check_raw(pk, _PUBLIC_KEY_BYTES, "k4.public key")
    return _PUBLIC_PREFIX + b64url_encode(bytes(pk))


def parse_k4_public(text: str) -> bytes:
    """The 32-byte public key from a ``k4.public.`` PASERK; wrong version/type/length raise PaserkError."""
    raw = b64url_decode(_split(text, _PUBLIC_PREFIX), what="k4.public data")
    _check_raw(raw, _PUBLIC_KEY_BYTES, "k4.public data")
    return raw


def k4_secret(sk64: bytes) -> str:
    """``k4.secret.`` + base64url(seed || pk) (types/secret.md, versions 2 and 4).

    The public half is checked against the seed so a spliced key can never be serialised.
    """
    _check_raw(sk64, _SECRET_KEY_BYTES, "k4.secret key")
    _check_halves(bytes(sk64), "k4.secret key")
    return _SECRET_PREFIX + b64url_encode(bytes(sk64))


def parse_k4_secret(text: str) -> bytes:
    """The 64-byte seed || pk from a ``k4.secret.`` PASERK, after checking pk is derived from seed."""
    raw = b64url_decode(_split(text, _SECRET_PREFIX), what="k4.secret data")
    _check_raw(raw, _SECRET_KEY_BYTES, "k4.secret data")
    _check_halves(raw, "k4.secret data")
    return raw


def _check_halves(sk64: bytes, what: str) -> None:
    try:
        derived = bytes(nacl.signing.SigningKey(sk64[:32]).verify_key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
        raise PaserkError(f"{what}: invalid Ed25519 seed: {e}") from e
    if not hmac.compare_digest(derived, sk64[32:]):
        raise PaserkError(
            f"{what}: public half does not match the seed (expected {k4_public(derived)}, got {k4_public(sk64[32:])})"
        )


def k4_pid(pk: bytes) -> str:
    """Key id for a public key: ``k4.pid.`` + b64url(BLAKE2b-264(``k4.pid.`` || k4.public string)).

    operations/ID.md, versions 2 and 4: ``d = crypto_generichash(h || p, 33)``, where ``p`` is the
    whole PASERK string (header included), so ids of different key types can never collide.
    """
    paserk = k4_public(pk)
    digest = hashlib.blake2b((_PID_PREFIX + paserk).encode("ascii"), digest_size=_PID_DIGEST_BYTES).digest()
    return _PID_PREFIX + b64url_encode(digest)


def parse_k4_pid(text: str) -> str:
    """Validate the shape of a ``k4.pid.`` id (header, 33-byte canonical base64url) and return it."""
    raw = b64url_decode(_split(text, _PID_PREFIX), what="k4.pid data")
    if len(raw) != _PID_DIGEST_BYTES:
        raise PaserkError(f"k4.pid data: expected {_PID_DIGEST_BYTES} bytes, got {len(raw)}")
    return text
