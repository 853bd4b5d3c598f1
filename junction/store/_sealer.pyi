# the native accelerator of junction.store.batch_seal (junction/store/_sealer.c)
OPENSSL_VERSION: str

def encrypt_many(
    keys: bytes | list[bytes], nonces: bytes, plaintexts: list[bytes], aads: list[bytes], /
) -> list[bytes]: ...
def seal_payloads(
    keys: list[bytes],
    key_ids: list[int],
    subjects: list[str],
    record_ids: list[str],
    clears: list[str],
    plaintexts: list[bytes],
    nonces: bytes,
    /,
) -> list[str]: ...
def hmac_tokens(key: bytes, messages: list[bytes], prefix: str, size: int, /) -> list[str]: ...
def sealed_texts(subjects: list[str], key_ids: list[int], blobs: list[bytes], /) -> list[str]: ...
