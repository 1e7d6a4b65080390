"""RFC 6962 hashing and proofs, against the transparency-dev/merkle vectors (tests/vectors/merkle)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from visionality.errors import VerificationError
from visionality.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle"
# RFC 6962 §2.1.3 test tree: the 8 leaves behind the vectors' roots (transparency-dev/merkle testonly).
RFC_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).glob("*/*.json"))


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), [_b64(p) for p in v["proof"] or []], _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), [_b64(p) for p in v["proof"] or []])
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vectors_are_present() -> None:
    assert len(_cases("inclusion")) >= 6 and len(_cases("consistency")) >= 7


def test_rfc_tree_roots_match_the_vectors() -> None:
    leaves = [leaf_hash(d) for d in RFC_LEAVES]
    assert base64.b64encode(root_of(leaves)).decode() == "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    assert base64.b64encode(root_of(leaves[:5])).decode() == "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ="
    assert root_of([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_hash_prefixes() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


def test_generated_proofs_verify_for_every_size_and_index() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(33)]
    for n in range(1, len(leaves) + 1):
        root = root_of(leaves[:n])
        for i in range(n):
            verify_inclusion(i, n, leaves[i], inclusion_proof(leaves[:n], i), root)
        for m in range(0, n + 1):
            verify_consistency(m, n, root_of(leaves[:m]), root, consistency_proof(leaves[:n], m))


def test_generated_proof_matches_vector() -> None:
    leaves = [leaf_hash(d) for d in RFC_LEAVES]
    v = json.loads((VECTORS / "consistency/2/happy-path.json").read_text())
    assert [base64.b64encode(p).decode() for p in consistency_proof(leaves, 6)] == v["proof"]


def test_compact_range_resumes_from_its_state() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(100)]
    cr = CompactRange()
    for i, leaf in enumerate(leaves):
        cr.append(leaf)
        assert cr.root() == root_of(leaves[: i + 1])
        resumed = CompactRange(cr.size, cr.hashes)
        assert resumed.root() == cr.root()
    with pytest.raises(ValueError):
        CompactRange(3, [leaves[0]])


def test_tampered_leaf_fails_inclusion() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(10)]
    proof = inclusion_proof(leaves, 3)
    with pytest.raises(VerificationError, match="root expected"):
        verify_inclusion(3, 10, leaf_hash(b"forged"), proof, root_of(leaves))
