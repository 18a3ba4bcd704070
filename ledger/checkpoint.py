"""What the Merkle tree commits to, and how its heads are signed.

- The leaf (``encode_leaf``): one fixed, versioned binary form per record, covering every
  stored field of it (see docs/verification.md for the byte layout).
- Checkpoints in the C2SP ``tlog-checkpoint`` form: origin, size and base64 root, one per
  line, signed as a C2SP ``signed-note`` with Ed25519 (the golang.org/x/mod/sumdb/note
  format: key id = the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)).
- Cosignatures in the C2SP ``tlog-cosignature`` v1 form: a witness signs
  ``cosignature/v1\\ntime <t>\\n`` + the checkpoint body, key id algorithm byte 0x04.

Crypto-shredding destroys a person's data key, never a record: the sealed payload (and so
its SHA-256 in the leaf) does not change when a person is erased.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.merkle import HASH_SIZE

LEAF_VERSION = 1
ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
#: U+2014 EM DASH, then a space: how every signature line of a note starts.
SIG_PREFIX = "\u2014 "
_TIME = b'"time":"'
_VERSION = b'"schemaversion":'
_leaf_head = struct.Struct(">BH")
_leaf_numbers = struct.Struct(">IQQ")
_leaf_tail = struct.Struct(">Iqq")


class NoteError(ValueError):
    """A note, key or checkpoint is malformed, or a signature does not verify."""


# --- leaves ---------------------------------------------------------------------------


def payload_fields(payload: bytes) -> tuple[str, int]:
    """(event time as written, schema version) read from a stored payload without decoding
    it: the first ``"time":"…"`` starting in its first 600 bytes and the digits after the
    first ``"schemaversion":`` starting in its first 800; ("", 0) if absent. The ledger's
    payloads put both before ``data``, and a JSON string cannot hold an unescaped quote,
    so the first match is the envelope's."""
    when, version = _payload_fields(payload)
    return when.decode("utf-8", "replace"), version


def _payload_fields(payload: bytes) -> tuple[bytes, int]:
    when = b""
    start = payload.find(_TIME, 0, 600)
    if start >= 0:
        start += len(_TIME)
        end = payload.find(b'"', start)
        if end > 0:
            when = payload[start:end]
    at = payload.find(_VERSION, 0, 800)
    return when, _version(payload, at + len(_VERSION)) if at >= 0 else 0


def _raw(raw: bytes) -> bytes:
    if len(raw) >= 0xFFFF:
        raw = raw[:0xFFFE]  # never reached by the ledger's ids; keeps the form total
    return len(raw).to_bytes(2, "big") + raw


def _text(value: str | None) -> bytes:
    return b"\xff\xff" if value is None else _raw(value.encode())


def leaf_prefix(origin: str, partition: int) -> bytes:
    """The part of every leaf of one tree that never changes: version and log identity."""
    raw = origin.encode()
    return _leaf_head.pack(LEAF_VERSION, len(raw)) + raw + partition.to_bytes(4, "big")


def encode_leaf(prefix: bytes, index: int, offset: int, event_id: str, event_type: str,
                subject: str | None, recorded_us: int, payload: bytes) -> bytes:
    """The leaf of one record (version 1). ``prefix`` is ``leaf_prefix(origin, partition)``."""
    event_time, version = _payload_fields(payload)
    return b"".join((
        prefix, index.to_bytes(8, "big"), offset.to_bytes(8, "big"),
        _text(event_id), _text(event_type), _text(subject), _raw(event_time),
        _leaf_tail.pack(version, recorded_us, len(payload)),
        hashlib.sha256(payload).digest(),
    ))


_bodies: dict[tuple[int, int, int, int], struct.Struct] = {}


def _body(le: int, lt: int, ls: int, lw: int) -> struct.Struct:
    """The struct of a leaf after its prefix, for these text lengths (cached: ids, types,
    pseudonyms and times come in a handful of lengths). A subject of None is ``ls = -1``."""
    subject = "H" if ls < 0 else f"H{ls}s"
    body = struct.Struct(f">QQH{le}sH{lt}s{subject}H{lw}sIqq32s")
    _bodies[(le, lt, ls, lw)] = body
    return body


def leaf_hashes(prefix: bytes, first_index: int,
                records: Iterable[tuple[str, str, str | None, bytes]],
                offsets: Iterable[int], recorded: Iterable[int]) -> list[bytes]:
    """``leaf_hash(encode_leaf(...))`` of many records at once: ``records`` are (event id,
    type, subject, payload), with their ``offsets`` and recorded times (µs) beside them,
    leaf indexes from ``first_index``. The append path's form: one loop, one ``struct``
    call per leaf (bench/verify.py measured a ``map``-per-step form slower); a test holds
    it to ``encode_leaf``."""
    sha256 = hashlib.sha256
    bodies = _bodies
    zprefix = b"\x00" + prefix
    out = []
    append = out.append
    index = first_index
    for (event_id, event_type, subject, payload), offset, rec_us in zip(records, offsets,
                                                                        recorded):
        start = payload.find(_TIME, 0, 600)
        if start >= 0:
            start += 8
            end = payload.find(b'"', start)
            when = payload[start:end] if end > 0 else b""
        else:
            when = b""
        at = payload.find(_VERSION, 0, 800)
        version = 0
        if at >= 0:
            version = payload[at + 16] - 48 if len(payload) > at + 16 else -1
            if not 0 <= version <= 9 or 48 <= (payload[at + 17:at + 18] or b"x")[0] <= 57:
                version = _version(payload, at + 16)
        eid = event_id.encode()
        etype = event_type.encode()
        if len(eid) > 0xFFFE or len(etype) > 0xFFFE or len(when) > 0xFFFE or (
                subject is not None and len(subject) > 0x3FFF):
            # A foreign record with huge fields (Kafka): the reference form truncates.
            append(sha256(b"\x00" + encode_leaf(prefix, index, offset, event_id, event_type,
                                                 subject, rec_us, payload)).digest())
            index += 1
            continue
        if subject is None:
            key = (len(eid), len(etype), -1, len(when))
            body = bodies.get(key) or _body(*key)
            packed = body.pack(index, offset, key[0], eid, key[1], etype, 0xFFFF, key[3],
                               when, version, rec_us, len(payload), sha256(payload).digest())
        else:
            subj = subject.encode()
            key = (len(eid), len(etype), len(subj), len(when))
            body = bodies.get(key) or _body(*key)
            packed = body.pack(index, offset, key[0], eid, key[1], etype, key[2], subj,
                               key[3], when, version, rec_us, len(payload),
                               sha256(payload).digest())
        append(sha256(zprefix + packed).digest())
        index += 1
    return out


def _version(payload: bytes, at: int) -> int:
    """The digits at ``at`` as a number (0 if none), as ``payload_fields`` reads them."""
    end = at
    while end < len(payload) and end - at < 9 and 48 <= payload[end] <= 57:
        end += 1
    return int(payload[at:end]) if end > at else 0


@dataclass(frozen=True)
class Leaf:
    """A decoded leaf: what a proof shows about one record without its payload."""

    version: int
    origin: str
    partition: int
    index: int
    offset: int
    event_id: str
    event_type: str
    subject: str | None
    event_time: str
    schema_version: int
    recorded_us: int
    payload_size: int
    payload_sha256: bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version, "origin": self.origin, "partition": self.partition,
            "index": self.index, "offset": self.offset, "event_id": self.event_id,
            "event_type": self.event_type, "subject": self.subject,
            "event_time": self.event_time, "schema_version": self.schema_version,
            "recorded_at": _iso_us(self.recorded_us), "payload_size": self.payload_size,
            "payload_sha256": self.payload_sha256.hex(),
        }


def _iso_us(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def decode_leaf(raw: bytes) -> Leaf:
    """Parse a version 1 leaf; ``NoteError`` if it is not one."""
    try:
        version, n = _leaf_head.unpack_from(raw, 0)
        if version != LEAF_VERSION:
            raise NoteError(f"leaf version {version} is not known (expected {LEAF_VERSION})")
        at = _leaf_head.size
        origin = raw[at : at + n].decode()
        at += n
        partition, index, offset = _leaf_numbers.unpack_from(raw, at)
        at += _leaf_numbers.size
        texts: list[str | None] = []
        for _ in range(4):
            length = int.from_bytes(raw[at : at + 2], "big")
            at += 2
            if length == 0xFFFF:
                texts.append(None)
                continue
            texts.append(raw[at : at + length].decode())
            at += length
        schema_version, recorded_us, size = _leaf_tail.unpack_from(raw, at)
        at += _leaf_tail.size
        digest = raw[at : at + HASH_SIZE]
        if len(digest) != HASH_SIZE or at + HASH_SIZE != len(raw):
            raise NoteError("the leaf has the wrong length")
    except (struct.error, UnicodeDecodeError) as exc:
        raise NoteError(f"the leaf is malformed: {exc}") from None
    return Leaf(version, origin, partition, index, offset, texts[0] or "", texts[1] or "",
                texts[2], texts[3] or "", schema_version, recorded_us, size, digest)


def recorded_us(moment: datetime | float) -> int:
    """Microseconds since the epoch of a recorded time: exactly the microseconds of the
    ``datetime`` the log reads back (the SQLite log stores a float and reads it back as
    ``datetime.fromtimestamp``, whose rounding ``round(ts * 1e6)`` would not always match)."""
    if isinstance(moment, datetime):
        return (moment - _EPOCH) // _MICROSECOND
    # What datetime.fromtimestamp does (modf, then the fraction rounded half to even to
    # microseconds), without building a datetime per record.
    whole = math.floor(moment)
    return whole * 1_000_000 + round((moment - whole) * 1e6)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


# --- keys -----------------------------------------------------------------------------

_NAME = re.compile(r"^[^\s+\u2014]+$")


def key_id(name: str, alg: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or not _NAME.match(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class Verifier:
    """A note verifier key: ``<name>+<hex key id>+<base64(alg || public key)>``."""

    name: str
    alg: int
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public)

    def __str__(self) -> str:
        body = base64.b64encode(bytes([self.alg]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{body}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # base64 may hold '+' itself
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<key id>+<base64 key>")
        name, hex_id, body = parts
        _check_name(name)
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise NoteError("the verifier key's key is not base64") from None
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("the verifier key is not an Ed25519 note or cosignature key")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def check(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A note signer key: ``PRIVATE+KEY+<name>+<hex key id>+<base64(alg || seed)>``."""

    name: str
    alg: int
    seed: bytes

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> Signer:
        _check_name(name)
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, alg, seed)

    @property
    def verifier(self) -> Verifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return Verifier(self.name, self.alg, public)

    def __str__(self) -> str:
        body = base64.b64encode(bytes([self.alg]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{body}"

    def __repr__(self) -> str:  # never print the seed by accident
        return f"Signer({self.name!r}, key id {self.verifier.key_id.hex()})"

    @classmethod
    def parse(cls, text: str) -> Signer:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<key id>+<base64 key> "
                            "(`pdl keygen --signing NAME` makes one)")
        name, hex_id, body = parts[2:]
        _check_name(name)
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raise NoteError("the signer key's key is not base64") from None
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise NoteError("the signer key is not an Ed25519 note or cosignature key")
        signer = cls(name, raw[0], raw[1:])
        if signer.verifier.key_id.hex() != hex_id.lower():
            raise NoteError("the signer key's id does not match its name and key")
        return signer

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


# --- signed notes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A signed note: its text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[tuple[str, bytes], ...]  # (key name, key id || signature)

    def __str__(self) -> str:
        lines = "".join(f"{SIG_PREFIX}{name} {base64.b64encode(sig).decode()}\n"
                        for name, sig in self.signatures)
        return f"{self.text}\n{lines}"

    @classmethod
    def parse(cls, raw: str) -> Note:
        if "\r" in raw or not raw.endswith("\n"):
            raise NoteError("a note ends with a newline and has no carriage returns")
        split = raw.rfind("\n\n")
        if split < 0:
            raise NoteError("the note has no signature block")
        text, block = raw[: split + 1], raw[split + 2 :]
        signatures = []
        for line in block.splitlines():
            if not line.startswith(SIG_PREFIX):
                raise NoteError(f"malformed signature line {line[:40]!r}")
            name, _, b64 = line[len(SIG_PREFIX):].rpartition(" ")
            try:
                sig = base64.b64decode(b64, validate=True)
            except ValueError:
                raise NoteError("a signature is not base64") from None
            if len(sig) < 5:
                raise NoteError("a signature is too short")
            signatures.append((name, sig))
        if not signatures:
            raise NoteError("the note has no signatures")
        return cls(text, tuple(signatures))

    def signed_by(self, verifier: Verifier) -> bool:
        """Whether a signature line of ``verifier`` is there and verifies (Ed25519 notes)."""
        kid = verifier.key_id
        for name, sig in self.signatures:
            if name == verifier.name and sig[:4] == kid and verifier.alg == ALG_ED25519:
                if verifier.check(self.text.encode(), sig[4:]):
                    return True
        return False

    def cosigned_by(self, verifier: Verifier) -> int | None:
        """The timestamp of a valid cosignature/v1 by ``verifier``, or None."""
        kid = verifier.key_id
        for name, sig in self.signatures:
            if name == verifier.name and sig[:4] == kid and len(sig) == 4 + 8 + 64:
                ts = int.from_bytes(sig[4:12], "big")
                if verifier.check(cosigned_message(self.text, ts), sig[12:]):
                    return ts
        return None


def sign_note(text: str, signer: Signer) -> Note:
    return Note(text, ((signer.name, signer.verifier.key_id + signer.sign(text.encode())),))


def cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def cosign(note: Note, witness: Signer, timestamp: int | None = None) -> Note:
    """``note`` with a C2SP tlog-cosignature/v1 line by ``witness`` added."""
    if witness.alg != ALG_COSIGNATURE_V1:
        raise NoteError("a cosigner key must be a cosignature/v1 key (`pdl keygen --witness`)")
    ts = int(time.time()) if timestamp is None else timestamp
    sig = witness.sign(cosigned_message(note.text, ts))
    line = (witness.name, witness.verifier.key_id + ts.to_bytes(8, "big") + sig)
    kept = tuple(s for s in note.signatures if s[0] != witness.name)
    return Note(note.text, kept + (line,))


# --- checkpoints ----------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tree head in the C2SP tlog-checkpoint form."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        ext = "".join(line + "\n" for line in self.extensions)
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n{ext}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint is origin, size and root hash, one per line")
        origin, size_text, root_text = lines[:3]
        if not origin:
            raise NoteError("the checkpoint has no origin")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError("the checkpoint size is not a decimal number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except ValueError:
            raise NoteError("the checkpoint root is not base64") from None
        if len(root) != HASH_SIZE:
            raise NoteError("the checkpoint root is not 32 bytes")
        return cls(origin, int(size_text), root, tuple(lines[3:-1]))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint and the note it came in."""

    checkpoint: Checkpoint
    note: Note

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root

    def __str__(self) -> str:
        return str(self.note)


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> SignedCheckpoint:
    return SignedCheckpoint(checkpoint, sign_note(checkpoint.text(), signer))


def open_checkpoint(raw: str, verifier: Verifier, origin: str | None = None) -> SignedCheckpoint:
    """Parse a signed checkpoint and check its signature (and origin, if given)."""
    note = Note.parse(raw)
    checkpoint = Checkpoint.parse(note.text)
    if not note.signed_by(verifier):
        names = ", ".join(sorted({n for n, _ in note.signatures}))
        raise NoteError(f"checkpoint of size {checkpoint.size} is not signed by the pinned key "
                        f"{verifier.name} ({verifier.key_id.hex()}); signed by: {names}")
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not the pinned origin "
                        f"{origin!r}")
    return SignedCheckpoint(checkpoint, note)
