"""AES-256-GCM and HMAC-SHA256 over a whole write batch in one call (ADR-0025).

Three functions, each with two implementations that give the same bytes:

* the native accelerator ``junction.store._sealer`` (C over OpenSSL's EVP interface, built at
  install when a compiler and the OpenSSL headers are there): one cipher context per batch;
* the same in Python over ``cryptography``'s ``AESGCM`` and ``hashlib``, used where the
  accelerator was not built, or when ``JUNCTION_SEALER=python`` asks for it.

``SEALER`` names the one in use.  Values sealed by either open with ``cryptography`` (the read
path, rotation and erasure use nothing else), and the test suite compares the two on random
batches.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from types import ModuleType
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32  # AES-256
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _load_native() -> ModuleType | None:
    if os.environ.get("JUNCTION_SEALER", "").strip().lower() == "python":
        return None
    try:
        from junction.store import _sealer
    except ImportError:
        return None
    return _sealer


def py_encrypt_many(
    keys: bytes | list[bytes], nonces: bytes, plaintexts: list[bytes], aads: list[bytes], /
) -> list[bytes]:
    """``nonce + AES-GCM(key, nonce, plaintext, aad)`` of each message (one key, or one each)."""
    n = len(plaintexts)
    _check(n, nonces, aads, keys)
    for key in [keys] if isinstance(keys, bytes) else keys:
        _check_key(key)
    if isinstance(keys, bytes):
        encrypt = AESGCM(keys).encrypt
        return [
            nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            + encrypt(nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES], plaintexts[i], aads[i])
            for i in range(n)
        ]
    ciphers: dict[bytes, AESGCM] = {}
    out = []
    for i in range(n):
        key = keys[i]
        cipher = ciphers.get(key) or ciphers.setdefault(key, AESGCM(key))
        nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
        out.append(nonce + cipher.encrypt(nonce, plaintexts[i], aads[i]))
    return out


def py_seal_payloads(
    keys: list[bytes],
    key_ids: list[int],
    subjects: list[str],
    record_ids: list[str],
    clears: list[str],
    plaintexts: list[bytes],
    nonces: bytes,
    /,
) -> list[str]:
    """Each record's payload JSON with ``"_pii": "JX2:<subject>:<key id>:<base64>"`` last.

    ``clears[i]`` is the record's JSON object without its personal members, ``plaintexts[i]``
    those members' JSON; associated data ``records\\x1f<record id>\\x1f<subject>``.  The sealed
    text needs no JSON escape (base64, digits, ``:`` and a base64url subject), so it is appended
    as it is: what ``orjson.dumps`` of the object with the member added would write.
    """
    n = len(keys)
    _check(n, nonces, key_ids, subjects, record_ids, clears, plaintexts)
    if any(kid < 0 for kid in key_ids):
        raise ValueError("key ids must not be negative")
    if not all(s.isascii() for s in subjects):
        raise ValueError("subjects must be ASCII")
    aads = [
        f"records\x1f{rid}\x1f{subject}".encode()
        for rid, subject in zip(record_ids, subjects, strict=True)
    ]
    blobs = py_encrypt_many(keys, nonces, plaintexts, aads)
    out = []
    for i in range(n):
        clear = clears[i]
        if not clear.endswith("}") or len(clear) < 2:
            raise ValueError("each clear payload must be a JSON object")
        sealed = f'"_pii":"{sealed_text(subjects[i], key_ids[i], blobs[i])}"}}'
        out.append(f"{clear[:-1]},{sealed}" if clear != "{}" else f"{{{sealed}")
    return out


def sealed_text(subject: str, key_id: int, blob: bytes) -> str:
    """A sealed text value: ``JX2:<subject>:<key id>:<base64(nonce + ciphertext + tag)>``."""
    return f"JX2:{subject}:{key_id}:{binascii.b2a_base64(blob, newline=False).decode('ascii')}"


def py_sealed_texts(subjects: list[str], key_ids: list[int], blobs: list[bytes], /) -> list[str]:
    """``sealed_text`` of each value (a batch's outbox rows)."""
    if not len(subjects) == len(key_ids) == len(blobs):
        raise ValueError("the lists of a batch must have the same length")
    if not all(s.isascii() for s in subjects):
        raise ValueError("subjects must be ASCII")
    if any(k < 0 for k in key_ids):
        raise ValueError("key ids must not be negative")
    if any(len(s) > 1024 for s in subjects):
        raise ValueError("a value is too large")
    return [sealed_text(s, k, b) for s, k, b in zip(subjects, key_ids, blobs, strict=True)]


def py_hmac_tokens(key: bytes, messages: list[bytes], prefix: str, size: int, /) -> list[str]:
    """``prefix`` + base64url (unpadded) of HMAC-SHA256(key, message)[:size], per message."""
    if not 1 <= size <= 32:
        raise ValueError("size must be 1 to 32 bytes")
    keyed = hmac.new(key, digestmod=hashlib.sha256)  # the key's pads once, copied per message
    chars = (size * 4 + 2) // 3
    out = []
    for message in messages:
        h = keyed.copy()
        h.update(message)
        token = binascii.b2a_base64(h.digest()[:size], newline=False)[:chars]
        out.append(prefix + token.translate(_URLSAFE).decode("ascii"))
    return out


def _check_key(key: object) -> None:
    if not isinstance(key, bytes):
        raise TypeError("each key must be bytes")
    if len(key) != KEY_BYTES:
        raise ValueError("each key must be 32 bytes")


def _check(n: int, nonces: bytes, *lists: object) -> None:
    if any(isinstance(x, list) and len(x) != n for x in lists):
        raise ValueError("the lists of a batch must have the same length")
    if len(nonces) != n * NONCE_BYTES:
        raise ValueError("nonces must be 12 bytes per message, as bytes")


# the functions the store calls (as ``batch_seal.<name>``): the native ones where built, with
# the Python ones' signatures (``_sealer.pyi`` says the same of the native ones)
encrypt_many = py_encrypt_many
seal_payloads = py_seal_payloads
hmac_tokens = py_hmac_tokens
sealed_texts = py_sealed_texts
_native = _load_native()
if _native is not None:
    encrypt_many = _native.encrypt_many
    seal_payloads = _native.seal_payloads
    hmac_tokens = _native.hmac_tokens
    sealed_texts = _native.sealed_texts
NATIVE: Final = _native is not None
SEALER: Final = (
    f"native ({_native.OPENSSL_VERSION})" if _native is not None else "python (cryptography)"
)
