"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes, Ed25519.

Checkpoint body (C2SP tlog-checkpoint): three lines, each ending in a newline::

    <origin>
    <tree size, decimal>
    <root hash, standard base64>

Signed note (C2SP signed-note): the body, a blank line, then one line per signature:
``— <key name> <base64(key id || signature)>`` where the key id is the first 4 bytes of
``SHA-256(key name || 0x0A || 0x01 || public key)`` (0x01 = Ed25519 signature type) and the signature is
Ed25519 over the body bytes. The key name here is the checkpoint origin. A witness can verify it with the
vkey string ``<name>+<hex key id>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..errors import VerificationError  # noqa: TID252

__all__ = ["Checkpoint", "key_id", "vkey", "sign_checkpoint", "parse_note", "SignedNote"]

_ED25519_TYPE = b"\x01"  # C2SP signed-note: signature type byte for Ed25519
_EM_DASH = "\u2014"  # C2SP signed-note: signature lines start with an em dash and a space
_KEY_ID_SIZE = 4  # C2SP signed-note: key id = first 4 bytes of the key hash
_ED25519_SIG_SIZE = 64  # RFC 8032 §5.1.6


def key_id(name: str, key: VerifyKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519_TYPE + bytes(key)).digest()[:_KEY_ID_SIZE]


def vkey(name: str, key: VerifyKey) -> str:
    """The verifier key string (C2SP signed-note) a witness configures to check our checkpoints."""
    return f"{name}+{key_id(name, key).hex()}+{base64.b64encode(_ED25519_TYPE + bytes(key)).decode()}"


def _check_name(name: str) -> None:
    # C2SP signed-note: key names are non-empty and contain no Unicode spaces or plus signs.
    if not name or "+" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid signed-note key name {name!r}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    tree_size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root).decode()}\n"


@dataclass(frozen=True, slots=True)
class SignedNote:
    text: str  # the checkpoint body, final newline included
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (key name, key id, signature)

    def checkpoint(self) -> Checkpoint:
        lines = self.text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise VerificationError(f"checkpoint: expected origin, size and root lines, got {self.text!r}")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise VerificationError(f"checkpoint: tree size expected a decimal number, got {size_text!r}")
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerificationError(f"checkpoint: root expected base64, got {root_text!r}") from e
        if len(root) != 32:
            raise VerificationError(f"checkpoint: root expected 32 bytes, got {len(root)}")
        return Checkpoint(origin, int(size_text), root)

    def verify(self, name: str, key: VerifyKey) -> Checkpoint:
        """Check the signature by ``name``/``key`` and return the checkpoint it covers."""
        want_id = key_id(name, key)
        candidates = [s for s in self.signatures if s[0] == name and s[1] == want_id]
        if not candidates:
            got = ", ".join(f"{n} {i.hex()}" for n, i, _ in self.signatures) or "none"
            raise VerificationError(f"checkpoint: expected a signature by {name} key id {want_id.hex()}, got {got}")
        try:
            key.verify(self.text.encode(), candidates[0][2])
        except BadSignatureError as e:
            raise VerificationError(f"checkpoint: signature by {name} does not verify over the note text") from e
        return self.checkpoint()


def sign_checkpoint(cp: Checkpoint, key: SigningKey, name: str | None = None) -> str:
    name = name or cp.origin
    _check_name(name)
    body = cp.body()
    sig = key.sign(body.encode()).signature
    blob = base64.b64encode(key_id(name, key.verify_key) + sig).decode()
    return f"{body}\n{_EM_DASH} {name} {blob}\n"


def parse_note(note: str) -> SignedNote:
    """Split a signed note into text and signature lines (C2SP signed-note "Format")."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerificationError("signed note: expected no control characters other than newline")
    sep = note.rfind("\n\n")
    if sep < 0 or not note.endswith("\n"):
        raise VerificationError("signed note: expected text, a blank line and signature lines")
    text, sig_block = note[: sep + 1], note[sep + 2 :]
    sigs: list[tuple[str, bytes, bytes]] = []
    for line in sig_block.rstrip("\n").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _EM_DASH:
            raise VerificationError(f"signed note: expected '— <name> <signature>', got {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerificationError(f"signed note: signature expected base64, got {parts[2]!r}") from e
        if len(blob) != _KEY_ID_SIZE + _ED25519_SIG_SIZE:
            # Other signature types (e.g. witness cosignatures) are allowed by the spec: keep, never match.
            sigs.append((parts[1], blob[:_KEY_ID_SIZE], b""))
            continue
        sigs.append((parts[1], blob[:_KEY_ID_SIZE], blob[_KEY_ID_SIZE:]))
    if not sigs:
        raise VerificationError("signed note: expected at least one signature line, got none")
    return SignedNote(text, tuple(sigs))
