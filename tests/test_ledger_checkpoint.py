"""C2SP signed-note / tlog-checkpoint encoding, signing and verification."""

from __future__ import annotations

import base64
import hashlib

import pytest
from nacl.signing import SigningKey
from visionality.errors import VerificationError
from visionality.ledger.checkpoint import Checkpoint, key_id, parse_note, sign_checkpoint, vkey

KEY = SigningKey(bytes(range(32)))
ORIGIN = "visionality.ledger/node-1/commits"
ROOT = hashlib.sha256(b"root").digest()


def test_note_format_matches_c2sp() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), KEY)
    body, sigs = note.split("\n\n")
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert sigs.startswith(f"\u2014 {ORIGIN} ") and sigs.endswith("\n")
    blob = base64.b64decode(sigs.split(" ")[2])
    want_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + bytes(KEY.verify_key)).digest()[:4]
    assert blob[:4] == want_id == key_id(ORIGIN, KEY.verify_key)
    KEY.verify_key.verify((body + "\n").encode(), blob[4:])


def test_round_trip_and_vkey() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), KEY)
    cp = parse_note(note).verify(ORIGIN, KEY.verify_key)
    assert cp == Checkpoint(ORIGIN, 7, ROOT)
    name, kid, pub = vkey(ORIGIN, KEY.verify_key).split("+", 2)
    assert name == ORIGIN and bytes.fromhex(kid) == key_id(ORIGIN, KEY.verify_key)
    assert base64.b64decode(pub) == b"\x01" + bytes(KEY.verify_key)


@pytest.mark.parametrize(
    "edit",
    [
        lambda n: n.replace("\n7\n", "\n8\n"),  # tree size changed
        lambda n: n.replace(ORIGIN + "\n", "evil.example/log\n", 1),  # origin changed
        lambda n: n.split("\n\n")[0] + "\n\n",  # signature removed
        lambda n: n.replace("\u2014", "-"),  # not a signature line
    ],
    ids=["size-edited", "origin-edited", "signature-stripped", "malformed-signature-line"],
)
def test_tampered_notes_fail(edit) -> None:  # type: ignore[no-untyped-def]
    note = edit(sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), KEY))
    with pytest.raises(VerificationError):
        parse_note(note).verify(ORIGIN, KEY.verify_key)


def test_other_key_fails() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), KEY)
    with pytest.raises(VerificationError, match="expected a signature by"):
        parse_note(note).verify(ORIGIN, SigningKey.generate().verify_key)


def test_bad_key_name_refused() -> None:
    with pytest.raises(ValueError):
        sign_checkpoint(Checkpoint("has space", 1, ROOT), KEY)
