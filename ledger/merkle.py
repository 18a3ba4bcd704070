"""Merkle trees as in RFC 6962 / RFC 9162: hashing, the right edge, tiles and proofs.

Pure functions and small classes over bytes; nothing here knows about events or storage.

- A leaf hash is ``SHA-256(0x00 || leaf)``, an interior node ``SHA-256(0x01 || left || right)``;
  the tree over ``n`` leaves splits at the largest power of two below ``n`` (RFC 6962 §2.1).
- ``CompactRange`` keeps the right edge of a growing tree: one hash per set bit of its size,
  so appending costs O(1) amortised hashes and its root O(log n).
- Tiles (as in C2SP tlog-tiles): the hashes of the tree at heights 0, 8, 16, … stored in
  rows of 256. Level 0 tiles hold leaf hashes, level ``L`` tiles the roots of the full
  subtrees of height ``8·L``. Any node is then at most 128 stored hashes away, so a proof
  costs O(log n · 128) hashes whatever the size of the log.
- Inclusion and consistency proofs are generated from any ``HashSource`` and verified with
  the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from operator import methodcaller

_sha256 = hashlib.sha256

#: Tile height: a tile holds 2**TILE_HEIGHT hashes of one level.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
EMPTY_ROOT = _sha256(b"").digest()


class ProofError(ValueError):
    """A proof, or its parameters, do not verify."""


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || leaf)."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree hash of a list of leaf hashes (O(n); for tests and small trees)."""
    cr = CompactRange()
    for h in leaf_hashes:
        cr.append(h)
    return cr.root()


class CompactRange:
    """The right edge of the tree over leaves ``[0, size)``: the roots of its perfect
    subtrees, largest first. ``on_node(height, index, hash)`` (if given) hears of every
    node created at a height that is a multiple of ``TILE_HEIGHT`` (above the leaves)."""

    __slots__ = ("size", "edge")

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()):
        if len(edge) != bin(size).count("1"):
            raise ProofError(f"a compact range of size {size} needs {bin(size).count('1')} "
                             f"hashes, got {len(edge)}")
        self.size = size
        self.edge = list(edge)

    def append(self, h: bytes, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        size = self.size
        edge = self.edge
        height = 0
        while size & 1:
            h = _sha256(b"\x01" + edge.pop() + h).digest()
            size >>= 1
            height += 1
            if on_node is not None and not height & 7:
                on_node(height, size, h)  # the node covering [size << height, ...)
        edge.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        edge = self.edge
        h = edge[-1]
        for left in reversed(edge[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.edge)

    def pack(self) -> bytes:
        return b"".join(self.edge)

    @classmethod
    def unpack(cls, size: int, blob: bytes) -> CompactRange:
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])


class TileWriter:
    """Appends leaf hashes to a compact range and to tiles, remembering which tiles changed.

    ``tiles[level]`` is the rightmost (possibly partial) tile of each level; a tile that
    fills up is moved to ``done`` until the caller has stored it (``take_changes``).
    """

    def __init__(self, cr: CompactRange, partial: dict[int, bytes]):
        self.range = cr
        self.tiles: dict[int, bytearray] = {level: bytearray(b) for level, b in partial.items()}
        self.done: dict[tuple[int, int], bytes] = {}
        self.touched: set[int] = set()
        self._check()

    def _check(self) -> None:
        size = self.range.size
        levels = set(self.tiles)
        level = 0
        while size >> (TILE_HEIGHT * level):
            levels.add(level)
            level += 1
        for level in levels:
            expected = (size >> (TILE_HEIGHT * level)) % TILE_WIDTH
            tile = self.tiles.setdefault(level, bytearray())
            if len(tile) != expected * HASH_SIZE:
                raise ProofError(f"tile level {level} holds {len(tile) // HASH_SIZE} hashes, "
                                 f"a tree of size {self.range.size} needs {expected}")

    def _push(self, level: int, h: bytes, count: int) -> None:
        """Add the hash of node number ``count - 1`` at tile level ``level``."""
        tile = self.tiles.get(level)
        if tile is None:
            tile = self.tiles[level] = bytearray()
        tile += h
        self.touched.add(level)
        if len(tile) == TILE_WIDTH * HASH_SIZE:
            self.done[(level, (count - 1) >> TILE_HEIGHT)] = bytes(tile)
            tile.clear()

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        cr = self.range
        push = self._push

        def on_node(height: int, index: int, h: bytes) -> None:
            push(height >> 3, h, index + 1)

        tile0 = self.tiles.get(0)
        if tile0 is None:
            tile0 = self.tiles[0] = bytearray()
        full = TILE_WIDTH * HASH_SIZE
        self.touched.add(0)
        # CompactRange.append inlined: this loop runs once per record appended; a whole
        # aligned tile of leaves is folded at once (``_fold``: no bytecode per node).
        edge = cr.edge
        size = cr.size
        sha256 = _sha256
        hashes = leaf_hashes if isinstance(leaf_hashes, list) else list(leaf_hashes)
        i, n = 0, len(hashes)
        while i < n:
            if not size & (TILE_WIDTH - 1) and n - i >= TILE_WIDTH:
                block = hashes[i : i + TILE_WIDTH]
                self.done[(0, size >> TILE_HEIGHT)] = b"".join(block)
                h = _fold(block)
                s = size >> TILE_HEIGHT
                height = TILE_HEIGHT
                on_node(height, s, h)
                i += TILE_WIDTH
                size += TILE_WIDTH
            else:
                h = hashes[i]
                tile0 += h
                if len(tile0) == full:
                    self.done[(0, size >> TILE_HEIGHT)] = bytes(tile0)
                    tile0.clear()
                s = size
                height = 0
                i += 1
                size += 1
            while s & 1:
                h = sha256(b"\x01" + edge.pop() + h).digest()
                s >>= 1
                height += 1
                if not height & 7:
                    on_node(height, s, h)
            edge.append(h)
        cr.size = size

    def take_changes(self) -> list[tuple[int, int, bytes]]:
        """(level, tile index, hashes) of every tile written since the last call."""
        out = [(level, index, blob) for (level, index), blob in self.done.items()]
        size = self.range.size
        for level in self.touched:
            count = size >> (TILE_HEIGHT * level)
            if count % TILE_WIDTH:
                out.append((level, count >> TILE_HEIGHT, bytes(self.tiles[level])))
        self.done.clear()
        self.touched.clear()
        return out


#: stored(level, start, count) -> ``count`` hashes of tile level ``level`` (tree height
#: 8·level), node numbers ``start`` .. ``start + count - 1``.
StoredHashes = Callable[[int, int, int], list[bytes]]


class HashSource:
    """Hashes of any subtree of a tree of a given size, from tiles (``stored``)."""

    def __init__(self, stored: StoredHashes):
        self.stored = stored

    @classmethod
    def from_leaves(cls, leaf_hashes: Sequence[bytes]) -> HashSource:
        """A source over leaf hashes held in memory (builds the higher tile levels)."""
        levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(levels[-1]) >= TILE_WIDTH:
            below = levels[-1]
            levels.append([_fold(below[i : i + TILE_WIDTH])
                           for i in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)])
        return cls(lambda level, start, count: levels[level][start : start + count])

    def node(self, height: int, index: int) -> bytes:
        """The root of the perfect subtree of ``height`` over leaves from ``index << height``."""
        level, rest = divmod(height, TILE_HEIGHT)
        width = 1 << rest
        hashes = self.stored(level, index * width, width)
        if len(hashes) != width:
            raise ProofError(f"the tree store lacks hashes at height {height}, node {index}")
        return _fold(hashes)

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for the ranges the RFC's algorithms ask for (``lo`` aligned)."""
        n = hi - lo
        if n <= 0:
            raise ProofError("empty range")
        if n & (n - 1) == 0 and lo % n == 0:
            return self.node(n.bit_length() - 1, lo // n)
        k = _split(n)
        return node_hash(self.range_hash(lo, lo + k), self.range_hash(lo + k, hi))

    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else self.range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 6962 §2.1.1."""
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in a tree of size {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo += k
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """PROOF(size1, D[0:size2]) of RFC 6962 §2.1.2 (empty if either size is 0 or equal)."""
        if not 0 <= size1 <= size2:
            raise ProofError(f"no consistency proof from size {size1} to size {size2}")
        if size1 == 0 or size1 == size2:
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, size2, size1, True
        while True:
            n = hi - lo
            if m == n:
                if not whole:
                    proof.append(self.range_hash(lo, hi))
                break
            k = _split(n)
            if m <= k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        proof.reverse()
        return proof


_digest = methodcaller("digest")
_node_prefix = b"\x01".__add__


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree over ``hashes`` (a power of two of them), a layer at
    a time with C-level maps."""
    layer = list(hashes)
    while len(layer) > 1:
        layer = list(map(_digest, map(_sha256, map(_node_prefix, map(
            bytes.__add__, layer[0::2], layer[1::2])))))
    return layer[0]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf hash ``leaf`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise ProofError("the leaf hash is not 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError("a proof hash is not 32 bytes")
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Raise ``ProofError`` unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    if len(root) != HASH_SIZE:
        raise ProofError("the root is not 32 bytes")
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError(f"the inclusion proof of leaf {index} does not lead to the root of the "
                         f"tree of size {size}")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise ``ProofError`` unless the tree of ``size2`` (``root2``) extends the tree of
    ``size1`` (``root1``) (RFC 9162 §2.1.4.2)."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"size {size1} is larger than size {size2}: the log shrank")
    if size1 == 0:
        # As transparency-dev/merkle: every tree extends the empty one; callers skip it.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise ProofError(f"two different roots for the same size {size1}: the log forked")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("a proof hash is not 32 bytes")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != root1:
        raise ProofError(f"the consistency proof does not lead to the old root (size {size1}): "
                         "history before it was rewritten")
    if sr != root2:
        raise ProofError(f"the consistency proof does not lead to the new root (size {size2})")
