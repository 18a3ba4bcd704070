"""Merkle tree hashing, right edge, tiles and proofs against published vectors and an oracle.

Vectors: tests/data/merkle (transparency-dev/merkle's RFC 6962 tree and its inclusion and
consistency probes, see SOURCE.md). Oracle: pymerkle, an independent implementation.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from ledger.merkle import (
    EMPTY_ROOT,
    TILE_WIDTH,
    CompactRange,
    HashSource,
    ProofError,
    TileWriter,
    leaf_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).parent / "data" / "merkle"
VECTORS = json.loads((DATA / "rfc6962-vectors.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves_hex"]]
HASHES = [leaf_hash(x) for x in LEAVES]


def _b64(items: list[str] | None) -> list[bytes]:
    return [base64.b64decode(x) for x in items or []]


def test_tree_hashes_match_the_rfc6962_roots() -> None:
    assert root_of([]) == EMPTY_ROOT == bytes.fromhex(VECTORS["empty_root_hex"])
    for size, want in enumerate(VECTORS["roots_hex"], 1):
        assert root_of(HASHES[:size]).hex() == want
        assert HashSource.from_leaves(HASHES).root(size).hex() == want


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_index']}@{c['size']}")
def test_inclusion_proofs_match_the_published_paths(case: dict[str, Any]) -> None:
    i, size = case["leaf_index"], case["size"]
    proof = HashSource.from_leaves(HASHES[:size]).inclusion_proof(i, size)
    assert [p.hex() for p in proof] == case["proof"]
    verify_inclusion(i, size, HASHES[i], proof, bytes.fromhex(VECTORS["roots_hex"][size - 1]))


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['size1']}-{c['size2']}")
def test_consistency_proofs_match_the_published_paths(case: dict[str, Any]) -> None:
    s1, s2 = case["size1"], case["size2"]
    proof = HashSource.from_leaves(HASHES[:s2]).consistency_proof(s1, s2)
    assert [p.hex() for p in proof] == case["proof"]
    roots = [bytes.fromhex(r) for r in VECTORS["roots_hex"]]
    verify_consistency(s1, s2, roots[s1 - 1], roots[s2 - 1], proof)


def _probes(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return sorted(json.loads((DATA / f"transparency-dev-{kind}.json").read_text()).items())


@pytest.mark.parametrize("name,probe", _probes("inclusion"), ids=lambda x: x if isinstance(x, str) else "")
def test_transparency_dev_inclusion_probes(name: str, probe: dict[str, Any]) -> None:
    def check() -> None:
        leaf = base64.b64decode(probe["leafHash"] or "")
        root = base64.b64decode(probe["root"] or "")
        verify_inclusion(probe["leafIdx"], probe["treeSize"], leaf, _b64(probe["proof"]), root)

    if probe["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("name,probe", _probes("consistency"), ids=lambda x: x if isinstance(x, str) else "")
def test_transparency_dev_consistency_probes(name: str, probe: dict[str, Any]) -> None:
    def check() -> None:
        verify_consistency(probe["size1"], probe["size2"], base64.b64decode(probe["root1"] or ""),
                           base64.b64decode(probe["root2"] or ""), _b64(probe["proof"]))

    if probe["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def _tiled(leaves: list[bytes], split: int) -> tuple[TileWriter, dict[tuple[int, int], bytes]]:
    """Append in two goes, storing tiles the way the log does, from a reloaded state."""
    store: dict[tuple[int, int], bytes] = {}
    writer = TileWriter(CompactRange(), {})
    writer.extend(leaves[:split])
    for level, index, blob in writer.take_changes():
        store[(level, index)] = blob
    # Reload: the right edge and the partial tiles, as a new process would.
    partial = {}
    for level in range(4):
        count = writer.range.size >> (8 * level)
        if count % TILE_WIDTH:
            partial[level] = store[(level, count // TILE_WIDTH)]
    writer = TileWriter(CompactRange.unpack(writer.range.size, writer.range.pack()), partial)
    writer.extend(leaves[split:])
    for level, index, blob in writer.take_changes():
        store[(level, index)] = blob
    return writer, store


def _source(store: dict[tuple[int, int], bytes]) -> HashSource:
    def stored(level: int, start: int, count: int) -> list[bytes]:
        out = []
        for n in range(start, start + count):
            blob = store.get((level, n // TILE_WIDTH), b"")
            h = blob[(n % TILE_WIDTH) * 32 : (n % TILE_WIDTH) * 32 + 32]
            if h:
                out.append(h)
        return out

    return HashSource(stored)


@settings(max_examples=8, deadline=None)
@given(size=st.integers(1, 300), split=st.integers(0, 1000), seed=st.integers(0, 10))
def test_tiles_and_edge_agree_with_pymerkle(size: int, split: int, seed: int) -> None:
    size = size * 64 + seed  # sizes around tile boundaries, up to two tile levels
    leaves = [bytes([seed]) + n.to_bytes(4, "big") for n in range(size)]
    oracle = InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        oracle.append_entry(leaf)
    writer, store = _tiled([leaf_hash(x) for x in leaves], min(split, size))
    assert writer.range.root() == oracle.get_root(size)
    source = _source(store)
    for old in {1, size // 3, size - 1, size}:
        if old < 1:
            continue
        assert source.root(old) == oracle.get_root(old)
        proof = source.consistency_proof(old, size)
        verify_consistency(old, size, oracle.get_root(old), oracle.get_root(size), proof)
    for index in {0, size // 2, size - 1}:
        proof = source.inclusion_proof(index, size)
        assert root_from_inclusion(index, size, oracle.get_leaf(index + 1), proof) == \
            oracle.get_root(size)


def test_a_rewritten_history_fails_the_consistency_check() -> None:
    leaves = [leaf_hash(n.to_bytes(2, "big")) for n in range(300)]
    old = HashSource.from_leaves(leaves[:200])
    forged = list(leaves)
    forged[17] = leaf_hash(b"changed")
    new = HashSource.from_leaves(forged)
    with pytest.raises(ProofError, match="old root"):
        verify_consistency(200, 300, old.root(200), new.root(300), new.consistency_proof(200, 300))
    with pytest.raises(ProofError, match="shrank"):
        verify_consistency(300, 200, new.root(300), old.root(200), [])


def test_a_compact_range_refuses_a_wrong_edge() -> None:
    with pytest.raises(ProofError):
        CompactRange(3, [EMPTY_ROOT])
