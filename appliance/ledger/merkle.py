"""RFC 6962 / RFC 9162 Merkle tree hashing, a compact range for appending, and proof checks.

Leaf hash ``SHA-256(0x00 || data)`` and node hash ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1);
the hash of the empty tree is ``SHA-256("")``. Proof verification follows the algorithms of RFC 9162
§2.1.3.2 (inclusion) and §2.1.4.2 (consistency) and is tested against the transparency-dev/merkle
vectors vendored in ``tests/vectors/merkle``. Verifiers return ``None`` and raise ``VerificationError``
saying expected vs got (pattern: sigstore ``_internal/merkle.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from ..errors import VerificationError  # noqa: TID252

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "CompactRange",
    "root_of",
    "inclusion_proof",
    "consistency_proof",
    "verify_inclusion",
    "verify_consistency",
]

HASH_SIZE = 32  # SHA-256 output, RFC 9162 §2.1.1
_LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1: domain separation of leaves ...
_NODE_PREFIX = b"\x01"  # ... and interior nodes (second-preimage resistance)
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256() (RFC 9162 §2.1.1)


def leaf_hash(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class CompactRange:
    """The roots of the perfect subtrees covering leaves ``[0, size)``: enough to append and to get the root.

    At most 64 hashes whatever the size, so the writer keeps the tree in O(log n) memory and the
    state can be stored in a manifest entry and resumed after a restart.
    """

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if bin(size).count("1") != len(hashes):
            raise ValueError(f"compact range of size {size} needs {bin(size).count('1')} hashes, got {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def append(self, leaf: bytes) -> None:
        h = leaf
        size = self.size
        stack = self.hashes
        # Each trailing 1 bit of the size is a perfect subtree the new leaf completes (a binary carry).
        while size & 1:
            h = node_hash(stack.pop(), h)
            size >>= 1
        stack.append(h)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaves: whole aligned perfect subtrees are hashed level by level (verify's bulk path)."""
        batch = leaves if isinstance(leaves, list) else list(leaves)
        i, n = 0, len(batch)
        while i < n:
            k = (n - i).bit_length() - 1  # the largest power of two that fits in what is left ...
            if self.size:
                k = min(k, (self.size & -self.size).bit_length() - 1)  # ... and keeps the subtree aligned
            self._append_subtree(_perfect_root(batch[i : i + (1 << k)]), k)
            i += 1 << k

    def _append_subtree(self, h: bytes, height: int) -> None:
        size = self.size >> height
        while size & 1:
            h = node_hash(self.hashes.pop(), h)
            size >>= 1
        self.hashes.append(h)
        self.size += 1 << height

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r


def _perfect_root(level: list[bytes]) -> bytes:
    sha, prefix = hashlib.sha256, _NODE_PREFIX
    while len(level) > 1:
        level = [sha(prefix + level[j] + level[j + 1]).digest() for j in range(0, len(level), 2)]
    return level[0]


def root_of(leaves: Sequence[bytes]) -> bytes:
    cr = CompactRange()
    cr.extend(list(leaves))
    return cr.root()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (RFC 9162 §2.1.1, k < n <= 2k)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, over leaf hashes."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(leaves[:k], index) + [root_of(leaves[k:])]
    return inclusion_proof(leaves[k:], index - k) + [root_of(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1, over leaf hashes."""
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} outside tree of size {n}")
    if old_size in (0, n):
        return []
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [root_of(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [root_of(leaves[:k])]


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise VerificationError(f"{what}[{i}]: expected a {HASH_SIZE}-byte hash, got {len(h)} bytes")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: check that ``leaf`` is at ``index`` in the tree of ``size`` with ``root``."""
    if not 0 <= index < size:
        raise VerificationError(f"inclusion: leaf index {index} outside tree size {size}")
    _check_hashes("inclusion leaf", [leaf])
    _check_hashes("inclusion root", [root])
    _check_hashes("inclusion proof", proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError(f"inclusion: proof has {len(proof)} hashes, more than the path needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(f"inclusion: proof has {len(proof)} hashes, fewer than the path needs")
    if r != root:
        raise VerificationError(f"inclusion: root expected {root.hex()} got {r.hex()}")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: check that the tree (size1, root1) is a prefix of (size2, root2)."""
    _check_hashes("consistency root", [root1, root2])
    _check_hashes("consistency proof", proof)
    if size1 > size2:
        raise VerificationError(f"consistency: old size {size1} is larger than new size {size2}")
    if size1 == size2:
        if proof:
            raise VerificationError("consistency: expected an empty proof for equal sizes, got hashes")
        if root1 != root2:
            raise VerificationError(f"consistency: equal sizes, root expected {root1.hex()} got {root2.hex()}")
        return
    if size1 == 0:
        if proof:
            raise VerificationError("consistency: expected an empty proof from the empty tree, got hashes")
        return
    if not proof:
        raise VerificationError("consistency: expected a proof, got none")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node of the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(f"consistency: proof has {len(proof)} hashes, more than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(f"consistency: proof has {len(proof)} hashes, fewer than needed")
    if fr != root1:
        raise VerificationError(f"consistency: old root expected {root1.hex()} got {fr.hex()}")
    if sr != root2:
        raise VerificationError(f"consistency: new root expected {root2.hex()} got {sr.hex()}")
