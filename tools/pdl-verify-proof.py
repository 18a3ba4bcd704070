#!/usr/bin/env python3
"""Check a Personal-Data Ledger proof bundle without the ledger installed.

Needs only Python 3.9+ and the ``cryptography`` package (for Ed25519). Usage:

    python3 pdl-verify-proof.py BUNDLE.json --key 'NAME+KEYID+BASE64KEY' [--json]

``--key`` is the log's verifier key, obtained from the log operator out of band (a letter,
their web site, a regulator's register) -- never from the bundle itself. Exit 0: every
proof verified; 1: a check failed (each failure is printed); 2: the bundle is unreadable.

The algorithm (docs/verification.md explains each step):

1. The checkpoint is a C2SP signed note: text lines ``origin``, ``size``, ``base64(root)``,
   a blank line, then signature lines ``— NAME base64(keyid[4] || ed25519 signature[64])``.
   The key id is ``SHA-256(NAME || 0x0A || 0x01 || public key)[:4]``; the signature is over
   the text up to and including its last newline before the blank line.
2. Inclusion bundle: for each entry, ``leaf hash = SHA-256(0x00 || leaf)``; the leaf's own
   index field must equal ``leaf_index``; SHA-256(payload) must equal the leaf's payload
   hash; the RFC 9162 §2.1.3.2 inclusion algorithm over ``proof`` must give the root.
3. Consistency bundle: both checkpoints signed; the RFC 9162 §2.1.4.2 algorithm over
   ``proof`` must give both roots.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DASH = "\u2014 "


class Failed(Exception):
    """A check failed."""


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def parse_key(text: str) -> tuple[str, bytes, bytes]:
    name, hex_id, body = text.strip().split("+", 2)
    raw = base64.b64decode(body, validate=True)
    if len(raw) != 33 or raw[0] != 0x01:
        raise ValueError("not an Ed25519 signed-note verifier key")
    kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if kid.hex() != hex_id.lower():
        raise ValueError("the key id does not match the key")
    return name, kid, raw[1:]


def open_checkpoint(note: str, key: tuple[str, bytes, bytes]) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint signed by ``key``; ``Failed`` otherwise."""
    name, kid, public = key
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Failed("the checkpoint is not a signed note")
    text, block = note[: split + 1], note[split + 2 :]
    signed = False
    for line in block.splitlines():
        if not line.startswith(DASH):
            raise Failed("a signature line of the checkpoint is malformed")
        who, _, b64 = line[len(DASH):].rpartition(" ")
        sig = base64.b64decode(b64)
        if who == name and sig[:4] == kid:
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(sig[4:], text.encode())
                signed = True
            except InvalidSignature:
                pass
    if not signed:
        raise Failed(f"the checkpoint is not signed by {name}+{kid.hex()}")
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if len(root) != 32:
        raise Failed("the checkpoint root is not 32 bytes")
    return origin, size, root


def decode_leaf(raw: bytes) -> dict[str, Any]:
    """Version 1 leaf: see docs/verification.md, "The leaf"."""
    version, n = struct.unpack_from(">BH", raw, 0)
    if version != 1:
        raise Failed(f"leaf version {version} is not known")
    at = 3
    origin = raw[at : at + n].decode()
    at += n
    partition, index, offset = struct.unpack_from(">IQQ", raw, at)
    at += 20
    texts: list[str | None] = []
    for _ in range(4):
        length = int.from_bytes(raw[at : at + 2], "big")
        at += 2
        if length == 0xFFFF:
            texts.append(None)
            continue
        texts.append(raw[at : at + length].decode())
        at += length
    schema_version, recorded_us, size = struct.unpack_from(">Iqq", raw, at)
    at += 20
    digest = raw[at:]
    if len(digest) != 32:
        raise Failed("the leaf has the wrong length")
    return {"origin": origin, "partition": partition, "index": index, "offset": offset,
            "event_id": texts[0], "event_type": texts[1], "subject": texts[2],
            "event_time": texts[3], "schema_version": schema_version,
            "recorded_us": recorded_us, "payload_size": size, "payload_sha256": digest.hex()}


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        raise Failed(f"leaf index {index} is outside the tree of size {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise Failed("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Failed("the inclusion proof is too short")
    return r


def check_consistency(size1: int, size2: int, root1: bytes, root2: bytes,
                      proof: list[bytes]) -> None:
    """RFC 9162 §2.1.4.2."""
    if not 0 < size1 <= size2:
        raise Failed(f"no consistency from size {size1} to size {size2}")
    if size1 == size2:
        if proof or root1 != root2:
            raise Failed("equal sizes with different roots: the log forked")
        return
    path = ([root1] if size1 & (size1 - 1) == 0 else []) + proof
    if not path:
        raise Failed("the consistency proof is empty")
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Failed("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise Failed("the consistency proof does not lead to both roots: history was rewritten")


def hashes(items: list[str]) -> list[bytes]:
    out = [base64.b64decode(h, validate=True) for h in items]
    if any(len(h) != 32 for h in out):
        raise Failed("a proof hash is not 32 bytes")
    return out


def check(bundle: dict[str, Any], key: tuple[str, bytes, bytes]) -> tuple[list[str], list[str]]:
    """(what verified, what failed)."""
    ok: list[str] = []
    failed: list[str] = []
    if bundle.get("format") != "pdl-proof/v1":
        raise ValueError("not a pdl-proof/v1 bundle")
    if bundle["kind"] == "consistency":
        try:
            o1, s1, r1 = open_checkpoint(bundle["old_checkpoint"], key)
            o2, s2, r2 = open_checkpoint(bundle["new_checkpoint"], key)
            if o1 != o2:
                raise Failed("the two checkpoints are of different logs")
            check_consistency(s1, s2, r1, r2, hashes(bundle["proof"]))
            ok.append(f"{o1}: the tree of size {s2} extends the tree of size {s1}: "
                      "consistency proof verified")
        except Failed as exc:
            failed.append(str(exc))
        return ok, failed
    try:
        origin, size, root = open_checkpoint(bundle["checkpoint"], key)
    except Failed as exc:
        return ok, [str(exc)]
    for n, entry in enumerate(bundle["entries"]):
        try:
            leaf = base64.b64decode(entry["leaf"], validate=True)
            fields = decode_leaf(leaf)
            if fields["origin"] != origin:
                raise Failed("the leaf names another log than the checkpoint")
            if fields["index"] != entry["leaf_index"]:
                raise Failed("the leaf's own index differs from the entry's")
            if "payload" in entry:
                payload = base64.b64decode(entry["payload"], validate=True)
                if hashlib.sha256(payload).hexdigest() != fields["payload_sha256"]:
                    raise Failed("the payload's SHA-256 differs from the leaf's")
            got = root_from_inclusion(entry["leaf_index"], size,
                                      hashlib.sha256(b"\x00" + leaf).digest(),
                                      hashes(entry["proof"]))
            if got != root:
                raise Failed("the inclusion proof does not lead to the checkpoint's root")
            ok.append(f"entry {n}: {fields['event_type']} {fields['event_id']} at leaf "
                      f"{fields['index']} of {origin} (size {size})")
        except Failed as exc:
            failed.append(f"entry {n}: {exc}")
    if not failed:
        ok.append(f"{len(bundle['entries'])} inclusion proof(s) verified")
    return ok, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="the proof bundle (JSON), or - for stdin")
    parser.add_argument("--key", required=True, help="the log's verifier key, from its operator")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.bundle == "-" else open(args.bundle).read()
        bundle = json.loads(text)
        key = parse_key(args.key)
        ok, failed = check(bundle, key)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        print(f"error: the bundle or key cannot be read: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": not failed, "verified": ok, "failed": failed}, indent=2))
    else:
        for line in ok:
            print(f"ok: {line}")
        for line in failed:
            print(f"FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
