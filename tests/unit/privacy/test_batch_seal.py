"""The batch sealer (ADR-0025): the native accelerator and the Python path give the same bytes,
and what either seals opens with ``cryptography`` as every stored value is read.

CI sets ``JUNCTION_REQUIRE_NATIVE_SEALER=1``: there the accelerator must have been built, so
the comparisons below run against it and are never skipped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.core.pseudonym import PREFIX, TOKEN_BYTES, Pseudonymizer, normalize
from junction.store import batch_seal
from junction.store.crypto import open_blob, parse_text

try:
    from junction.store import _sealer as native
except ImportError:  # pragma: no cover - where no compiler or OpenSSL headers were there
    native = None

needs_native = pytest.mark.skipif(
    native is None, reason="the native sealer is not built here (the Python path is tested)"
)
_IMPLS = [pytest.param(batch_seal, id="in-use")] + (
    [] if native is None else [pytest.param(native, id="native")]
)
_IMPLS.append(
    pytest.param(
        SimpleNamespace(
            encrypt_many=batch_seal.py_encrypt_many,
            seal_payloads=batch_seal.py_seal_payloads,
            hmac_tokens=batch_seal.py_hmac_tokens,
            sealed_texts=batch_seal.py_sealed_texts,
        ),
        id="python",
    )
)

keys32 = st.binary(min_size=32, max_size=32)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)


# read at import: the suite's autouse fixture clears JUNCTION_* variables before each test
REQUIRE_NATIVE = os.environ.get("JUNCTION_REQUIRE_NATIVE_SEALER") == "1"


def test_the_native_sealer_is_built_where_ci_requires_it() -> None:
    if not REQUIRE_NATIVE:
        pytest.skip("only CI requires the native sealer (JUNCTION_REQUIRE_NATIVE_SEALER=1)")
    assert native is not None, "junction.store._sealer was not built: is libssl-dev installed?"
    assert batch_seal.NATIVE
    assert batch_seal.SEALER.startswith("native (OpenSSL")


@needs_native
@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(keys32, st.binary(max_size=300), st.binary(max_size=80)), max_size=12),
    one_key=st.booleans(),
)
def test_native_encrypt_many_is_aes_gcm(
    data: list[tuple[bytes, bytes, bytes]], one_key: bool
) -> None:
    assert native is not None
    nonces = os.urandom(12 * len(data))
    keys: bytes | list[bytes] = data[0][0] if one_key and data else [k for k, _, _ in data]
    if one_key and not data:
        keys = bytes(32)
    plaintexts = [p for _, p, _ in data]
    aads = [a for _, _, a in data]
    got = native.encrypt_many(keys, nonces, plaintexts, aads)
    assert got == batch_seal.py_encrypt_many(keys, nonces, plaintexts, aads)
    for i, blob in enumerate(got):
        key = keys if isinstance(keys, bytes) else keys[i]
        assert blob[:12] == nonces[12 * i : 12 * i + 12]
        assert AESGCM(key).decrypt(blob[:12], blob[12:], aads[i]) == plaintexts[i]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            keys32,
            st.integers(min_value=0, max_value=2**63 - 1),
            st.text(alphabet="abcXYZ019-_", min_size=1, max_size=30),
            texts.filter(bool),
            st.one_of(
                st.just("{}"),
                st.builds(
                    lambda t: '{"a":' + f'"{t}"' + "}", st.text(alphabet="xyzé€𝄞 ", max_size=12)
                ),
            ),
            st.binary(max_size=200),
        ),
        max_size=10,
    )
)
def test_sealed_payloads_are_equal_and_open(
    rows: list[tuple[bytes, int, str, str, str, bytes]],
) -> None:
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(6)]
    keys, kids, subjects, rids, clears, plaintexts = cols
    nonces = os.urandom(12 * len(rows))
    python = batch_seal.py_seal_payloads(keys, kids, subjects, rids, clears, plaintexts, nonces)
    if native is not None:
        assert (
            native.seal_payloads(keys, kids, subjects, rids, clears, plaintexts, nonces) == python
        )
    for (key, kid, subject, rid, clear, plaintext), payload in zip(rows, python, strict=True):
        head, sep, tail = payload.rpartition('"_pii":"')
        assert sep
        assert tail.endswith('"}')
        assert head == clear[:-1] + ("," if clear != "{}" else "")
        got_subject, got_kid, blob = parse_text(tail[:-2])
        assert (got_subject, got_kid) == (subject, kid)
        aad = f"records\x1f{rid}\x1f{subject}".encode()
        assert open_blob(AESGCM(key), blob, aad, table="records") == plaintext


@pytest.mark.parametrize("impl", _IMPLS)
def test_hmac_tokens_are_the_pseudonyms(impl: object) -> None:
    key = os.urandom(32)
    values = ["Ada@Example.com ", "", "x" * 500, "Ünïcødé@example.org", "+4930123456"]
    messages = [f"email\x1f{normalize('email', v)}".encode() for v in values]
    tokens = impl.hmac_tokens(key, messages, PREFIX, TOKEN_BYTES)  # type: ignore[attr-defined]
    assert tokens == [Pseudonymizer(key).of("email", v) for v in values]
    for message, token in zip(messages, tokens, strict=True):
        mac = hmac.digest(key, message, hashlib.sha256)[:TOKEN_BYTES]
        assert token == PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    long_key = os.urandom(100)  # longer than SHA-256's block: hashed first, as RFC 2104 says
    [token] = impl.hmac_tokens(long_key, [b"m"], "", 32)  # type: ignore[attr-defined]
    assert token == base64.urlsafe_b64encode(hmac.digest(long_key, b"m", "sha256")).decode().rstrip(
        "="
    )


@pytest.mark.parametrize("impl", _IMPLS)
def test_bad_batches_are_refused_before_anything_is_sealed(impl: object) -> None:
    k = bytes(32)
    encrypt_many = impl.encrypt_many  # type: ignore[attr-defined]
    seal = impl.seal_payloads  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="same length"):
        encrypt_many([k, k], bytes(24), [b"a"], [b""])
    with pytest.raises(ValueError, match="12 bytes per message"):
        encrypt_many(k, bytes(11), [b"a"], [b""])
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_many(bytes(16), bytes(12), [b"a"], [b""])
    with pytest.raises(TypeError):
        encrypt_many([k], bytes(12), ["text, not bytes"], [b""])
    with pytest.raises(ValueError, match="JSON object"):
        seal([k], [1], ["ps_x"], ["r"], ["[1]"], [b"{}"], bytes(12))
    with pytest.raises(ValueError, match="not be negative"):
        seal([k], [-1], ["ps_x"], ["r"], ["{}"], [b"{}"], bytes(12))
    with pytest.raises(ValueError, match="ASCII"):
        seal([k], [1], ["ps_é"], ["r"], ["{}"], [b"{}"], bytes(12))
    with pytest.raises(ValueError, match="1 to 32"):
        impl.hmac_tokens(k, [b""], "", 33)  # type: ignore[attr-defined]
    texts_of = impl.sealed_texts  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="same length"):
        texts_of(["ps_x"], [1, 2], [b""])
    with pytest.raises(ValueError, match="ASCII"):
        texts_of(["ps_é"], [1], [b""])
    with pytest.raises(ValueError, match="not be negative"):
        texts_of(["ps_x"], [-1], [b""])


@needs_native
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_-0123456789", min_size=1, max_size=30),
            st.integers(min_value=0, max_value=2**63 - 1),
            st.binary(min_size=28, max_size=300),
        ),
        max_size=20,
    )
)
def test_native_sealed_texts_are_the_python_ones(values: list[tuple[str, int, bytes]]) -> None:
    subjects = [s for s, _, _ in values]
    kids = [k for _, k, _ in values]
    blobs = [b for _, _, b in values]
    texts = native.sealed_texts(subjects, kids, blobs)  # type: ignore[union-attr]
    assert texts == batch_seal.py_sealed_texts(subjects, kids, blobs)
    for text, value in zip(texts, values, strict=True):
        assert parse_text(text) == value  # what the readers parse it back to
