"""Leaves, checkpoints, signed notes and cosignatures (ledger.checkpoint).

The signed-note vector is the example of golang.org/x/mod/sumdb/note (package
documentation and note_test.go): Ed25519 is deterministic, so signing its text with its
key must give its note byte for byte, which any Go verifier then accepts.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
    decode_leaf,
    encode_leaf,
    leaf_hashes,
    leaf_prefix,
    open_checkpoint,
    sign_checkpoint,
    sign_note,
)
from ledger.merkle import leaf_hash

GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgY"
           "N1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
PAYLOAD = (b'{"specversion":"1.0","id":"e1","source":"svc/a","type":"data.used",'
           b'"time":"2024-03-01T10:00:00+08:00","schemaversion":2,"data":{"time":"x"}}')


def test_the_go_sumdb_note_example_is_reproduced_byte_for_byte() -> None:
    signer = Signer.parse(GO_SIGNER)
    assert str(signer.verifier) == GO_VERIFIER
    assert str(sign_note(GO_TEXT, signer)) == GO_NOTE
    note = Note.parse(GO_NOTE)
    assert note.signed_by(Verifier.parse(GO_VERIFIER))
    tampered = Note.parse(GO_NOTE.replace("cryptography", "cryptographY"))
    assert not tampered.signed_by(Verifier.parse(GO_VERIFIER))


@pytest.mark.parametrize("bad", ["PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                                 "PeterNeumann+c74f20a3", "Peter Neumann+c74f20a3+AA==", ""])
def test_malformed_or_mismatched_verifier_keys_are_refused(bad: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(bad)


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 2**40), offset=st.integers(0, 2**40),
       subject=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
       recorded=st.integers(0, 2**60), payload=st.binary(max_size=300))
def test_a_leaf_decodes_to_what_was_encoded(index: int, offset: int, subject: str | None,
                                            recorded: int, payload: bytes) -> None:
    prefix = leaf_prefix("pdl.local/log/x", 3)
    raw = encode_leaf(prefix, index, offset, "id-1", "data.used", subject, recorded,
                      PAYLOAD + payload)
    leaf = decode_leaf(raw)
    assert (leaf.origin, leaf.partition, leaf.index, leaf.offset) == ("pdl.local/log/x", 3,
                                                                      index, offset)
    assert (leaf.event_id, leaf.event_type, leaf.subject) == ("id-1", "data.used", subject)
    assert (leaf.event_time, leaf.schema_version) == ("2024-03-01T10:00:00+08:00", 2)
    assert leaf.recorded_us == recorded and leaf.payload_size == len(PAYLOAD + payload)
    # The append path's inlined form gives the same leaf hashes.
    assert leaf_hashes(prefix, index, [("id-1", "data.used", subject, PAYLOAD + payload)],
                       [offset], [recorded]) == [leaf_hash(raw)]
    for odd in (b'"schemaversion":12,', b'"schemaversion":x', b'"schemaversion":',
                b'"time":"' + b"x" * 70_000 + b'"'):
        raw = encode_leaf(prefix, index, offset, "i", "t", subject, recorded, odd + payload)
        assert leaf_hashes(prefix, index, [("i", "t", subject, odd + payload)], [offset],
                           [recorded]) == [leaf_hash(raw)]


def test_a_payload_without_time_or_version_still_has_a_leaf() -> None:
    leaf = decode_leaf(encode_leaf(leaf_prefix("o", 0), 0, 1, "e", "t", None, 0, b"garbage"))
    assert (leaf.event_time, leaf.schema_version, leaf.subject) == ("", 0, None)


def test_checkpoints_round_trip_and_refuse_other_keys_and_origins() -> None:
    signer = Signer.generate("log.example/a")
    cp = Checkpoint("log.example/a", 12, b"\x07" * 32)
    text = str(sign_checkpoint(cp, signer))
    assert text.startswith("log.example/a\n12\nBwcH")
    assert open_checkpoint(text, signer.verifier).checkpoint == cp
    with pytest.raises(NoteError, match="not signed by the pinned key"):
        open_checkpoint(text, Signer.generate("log.example/a").verifier)
    with pytest.raises(NoteError, match="not the pinned origin"):
        open_checkpoint(text, signer.verifier, origin="log.example/b")
    for bad in ("o\n012\nAAAA\n", "o\n1\nAAAA\n", "\n1\n" + "A" * 43 + "=\n"):
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_a_cosignature_follows_c2sp_tlog_cosignature_v1() -> None:
    log = Signer.generate("log.example/a")
    witness = Signer.generate("witness.example/w1", ALG_COSIGNATURE_V1)
    signed = sign_checkpoint(Checkpoint("log.example/a", 5, b"\x01" * 32), log)
    cosigned = cosign(signed.note, witness, timestamp=1_679_315_147)
    again = Note.parse(str(cosigned))
    assert again.signed_by(log.verifier)
    assert again.cosigned_by(witness.verifier) == 1_679_315_147
    # The key id commits to the algorithm byte 0x04, and the signed message to the time.
    assert str(witness.verifier).split("+")[2].startswith("B")
    forged = Note(again.text, tuple((n, s[:4] + (1).to_bytes(8, "big") + s[12:])
                                    if n == witness.name else (n, s)
                                    for n, s in again.signatures))
    assert forged.cosigned_by(witness.verifier) is None
    with pytest.raises(NoteError, match="cosignature/v1 key"):
        cosign(signed.note, log)
