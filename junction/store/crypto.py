"""AES-256-GCM sealing for the store, and the key-encryption keys (KEKs) that wrap data keys.

A sealed value is ``JX2:<subject>:<key id>:<nonce (12 bytes) + ciphertext + tag (16 bytes)>``,
as text (base64, for JSON and text columns) or as bytes (binary columns).  The subject (a keyed
pseudonym, not personal data) and the key id (decimal) name the data key (a slot of a key
page, ADR-0026, or a ``subject_keys`` row, ADR-0024); values sealed before migration 0011 (and
the channel secrets) are ``JX1:<subject>:<...>`` and find their key by subject (``data_keys``).
The associated data binds the ciphertext to the table, the row's id and the subject, so a
ciphertext copied to another row, a flipped bit in the nonce, ciphertext or tag, or a wrong key
all fail with :class:`DecryptionError`, never with garbage (cryptography's ``InvalidTag``;
NIST SP 800-38D).

KEKs come from the environment (``env:NAME``), a key file (``file:/path``, made once, 0600) or
a plugin (``plugin:NAME``, an entry point in the ``junction.kek_providers`` group returning an
object with ``key_id``, ``wrap`` and ``unwrap``: the shape of a cloud KMS's encrypt/decrypt).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from junction.core.errors import (
    ConfigError,
    DecryptionError,
    KeyUnavailableError,
)
from junction.core.keyfile import MIN_KEY_BYTES, read_or_create_key
from junction.store.batch_seal import KEY_BYTES as KEY_BYTES  # re-exported: the formats
from junction.store.batch_seal import NONCE_BYTES as NONCE_BYTES

TAG_BYTES = 16
TEXT_PREFIX = "JX1:"
BYTES_PREFIX = b"JX1:"
TEXT_PREFIX_ID = "JX2:"
BYTES_PREFIX_ID = b"JX2:"
PLUGIN_GROUP = "junction.kek_providers"
_DEK_AAD = b"junction dek\x1f"  # a wrapped data key's associated data: this, then its context


@runtime_checkable
class KekProvider(Protocol):
    """A key-encryption key: wraps and unwraps data keys (a KMS's encrypt/decrypt).

    ``context`` is associated data that must be given again to unwrap (the subject).
    ``unwrap`` raises :class:`KeyUnavailableError` when this KEK cannot open ``wrapped``.
    """

    @property
    def key_id(self) -> str:
        """A stable, non-secret identifier of this KEK (stored beside each wrapped key)."""
        ...

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """``key`` sealed under this KEK."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The key ``wrap`` sealed."""
        ...


class LocalKek:
    """A KEK held in this process: AES-256-GCM under a key derived (HKDF) from a secret."""

    def __init__(self, secret: bytes, source: str) -> None:
        """``secret``: at least 32 bytes; ``source`` says where it came from (for messages)."""
        if len(secret) < MIN_KEY_BYTES:
            raise KeyUnavailableError(
                f"the key-encryption key from {source} must be at least {MIN_KEY_BYTES} bytes"
            )
        key = HKDF(SHA256(), KEY_BYTES, salt=None, info=b"junction kek v1").derive(secret)
        self._key = key
        self._aead = AESGCM(key)
        self.source = source
        self._id = hmac.digest(key, b"junction kek id", hashlib.sha256)[:8].hex()

    def __repr__(self) -> str:
        return f"LocalKek(source={self.source!r}, key_id={self._id!r})"

    @property
    def key_id(self) -> str:
        """The first 64 bits of an HMAC of the derived key, in hex."""
        return self._id

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """``nonce + AES-GCM(key)``, bound to ``context``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, _DEK_AAD + context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Open a wrapped key; a wrong KEK or a tampered key raises KeyUnavailableError."""
        try:
            return self._aead.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _DEK_AAD + context
            )
        except (InvalidTag, ValueError):
            raise KeyUnavailableError(
                "a data key does not open under the key-encryption key "
                f"from {self.source}: the KEK is wrong or was rotated, or the key row is damaged"
            ) from None


def env_kek(name: str) -> LocalKek:
    """The KEK in environment variable ``name``."""
    value = os.environ.get(name)
    if not value:
        raise KeyUnavailableError(
            f"the key-encryption key is not set: export {name} (32+ random bytes, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    return LocalKek(value.encode("utf-8"), f"env:{name}")


def file_kek(path: Path, *, create: bool = True) -> LocalKek:
    """The KEK in a key file (made once, 0600, when ``create`` and it is absent)."""
    if not create and not path.exists():
        raise KeyUnavailableError(f"the key-encryption key file {path} does not exist")
    try:
        secret = read_or_create_key(path)
    except OSError as exc:
        raise KeyUnavailableError(
            f"the key-encryption key file {path} cannot be read", details=type(exc).__name__
        ) from exc
    except ConfigError as exc:
        raise KeyUnavailableError(exc.user_message) from exc
    return LocalKek(secret, f"file:{path}")


def load_kek(source: str, *, create: bool = True) -> KekProvider:
    """The KEK named by ``source``: ``env:NAME``, ``file:/path`` or ``plugin:NAME``."""
    kind, _, ref = source.partition(":")
    if kind == "env" and ref:
        return env_kek(ref)
    if kind == "file" and ref:
        return file_kek(Path(ref).expanduser(), create=create)
    if kind == "plugin" and ref:
        found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == ref]
        if not found:
            raise KeyUnavailableError(
                f"no key-encryption key plugin {ref!r} is installed "
                f"(an entry point in the {PLUGIN_GROUP} group)"
            )
        provider = found[0].load()()
        if not isinstance(provider, KekProvider):
            raise KeyUnavailableError(f"the plugin {ref!r} is not a key-encryption key provider")
        return provider
    raise KeyUnavailableError(
        f"unknown key-encryption key source {source!r}: use env:NAME, file:/path or plugin:NAME"
    )


def associated(table: str, row: str, subject: str) -> bytes:
    """The associated data of a sealed value: which table, row and subject it belongs to."""
    return f"{table}\x1f{row}\x1f{subject}".encode()


def seal_text(aead: AESGCM, subject: str, nonce: bytes, plaintext: bytes, aad: bytes) -> str:
    """``JX1:<subject>:<base64(nonce + ciphertext + tag)>``."""
    blob = nonce + aead.encrypt(nonce, plaintext, aad)
    return f"{TEXT_PREFIX}{subject}:{binascii.b2a_base64(blob, newline=False).decode('ascii')}"


def seal_bytes(aead: AESGCM, subject: str, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """``JX1:<subject>:`` + nonce + ciphertext + tag."""
    return (
        BYTES_PREFIX + subject.encode("ascii") + b":" + nonce + aead.encrypt(nonce, plaintext, aad)
    )


def split_text(sealed: str) -> tuple[str, bytes]:
    """The subject and the raw ``nonce + ciphertext + tag`` of a sealed text value."""
    if not sealed.startswith(TEXT_PREFIX):
        raise DecryptionError("a sealed value is malformed (no JX1 prefix)")
    subject, sep, body = sealed[len(TEXT_PREFIX) :].partition(":")
    try:
        blob = binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DecryptionError("a sealed value is malformed (bad base64)") from None
    if not sep or not subject or len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("a sealed value is malformed (truncated)")
    return subject, blob


def split_bytes(sealed: bytes) -> tuple[str, bytes]:
    """The subject and the raw ``nonce + ciphertext + tag`` of a sealed binary value."""
    if not sealed.startswith(BYTES_PREFIX):
        raise DecryptionError("a sealed value is malformed (no JX1 prefix)")
    subject, sep, blob = sealed[len(BYTES_PREFIX) :].partition(b":")
    if not sep or not subject or len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("a sealed value is malformed (truncated)")
    try:
        return subject.decode("ascii"), blob
    except UnicodeDecodeError:
        raise DecryptionError("a sealed value is malformed (subject)") from None


def is_sealed_text(value: str) -> bool:
    """Whether ``value`` looks like a sealed text value (either form)."""
    return value.startswith((TEXT_PREFIX_ID, TEXT_PREFIX))


def is_sealed_bytes(value: bytes) -> bool:
    """Whether ``value`` looks like a sealed binary value (either form)."""
    return value.startswith((BYTES_PREFIX_ID, BYTES_PREFIX))


def seal_bytes_id(
    aead: AESGCM, subject: str, key_id: int, nonce: bytes, plaintext: bytes, aad: bytes
) -> bytes:
    """``JX2:<subject>:<key id>:`` + nonce + ciphertext + tag."""
    head = f"{TEXT_PREFIX_ID}{subject}:{key_id}:".encode("ascii")
    return head + nonce + aead.encrypt(nonce, plaintext, aad)


def _key_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise DecryptionError("a sealed value is malformed (key id)")
    return int(text)


def parse_text(sealed: str) -> tuple[str, int | None, bytes]:
    """The subject, the key id (None: a value sealed before key ids) and the raw
    ``nonce + ciphertext + tag`` of a sealed text value."""
    if sealed.startswith(TEXT_PREFIX):
        subject, blob = split_text(sealed)
        return subject, None, blob
    if not sealed.startswith(TEXT_PREFIX_ID):
        raise DecryptionError("a sealed value is malformed (no JX prefix)")
    subject, sep, rest = sealed[len(TEXT_PREFIX_ID) :].partition(":")
    kid, sep2, body = rest.partition(":")
    if not sep or not sep2 or not subject:
        raise DecryptionError("a sealed value is malformed (truncated)")
    try:
        blob = binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise DecryptionError("a sealed value is malformed (bad base64)") from None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("a sealed value is malformed (truncated)")
    return subject, _key_id(kid), blob


def parse_bytes(sealed: bytes) -> tuple[str, int | None, bytes]:
    """``parse_text`` for a sealed binary value."""
    if sealed.startswith(BYTES_PREFIX):
        subject, blob = split_bytes(sealed)
        return subject, None, blob
    if not sealed.startswith(BYTES_PREFIX_ID):
        raise DecryptionError("a sealed value is malformed (no JX prefix)")
    subject_b, sep, rest = sealed[len(BYTES_PREFIX_ID) :].partition(b":")
    kid_b, sep2, blob = rest.partition(b":")
    if not sep or not sep2 or not subject_b or len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("a sealed value is malformed (truncated)")
    try:
        subject, kid = subject_b.decode("ascii"), kid_b.decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("a sealed value is malformed (subject)") from None
    return subject, _key_id(kid), blob


def open_blob(aead: AESGCM, blob: bytes, aad: bytes, *, table: str) -> bytes:
    """Decrypt ``nonce + ciphertext + tag``; any mismatch raises DecryptionError."""
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError(
            "stored personal data failed its integrity check (tampered, moved to another row, "
            "or under another key); nothing was returned",
            context={"table": table},
        ) from None
