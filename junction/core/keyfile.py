"""Secret key files: created once, atomically, readable by the owner only (0600).

Several processes may start at once against the same state folder, so a key file is written in
full under a temporary name and then hard-linked into place: a reader never sees a half-written
key, and exactly one creator wins while the others read the winner's key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from junction.core.errors import ConfigError
from junction.core.logging import get_logger

MIN_KEY_BYTES = 32


def read_or_create_key(path: Path, *, nbytes: int = 48) -> bytes:
    """The key stored in ``path``, creating it with ``nbytes`` random bytes when absent."""
    if not path.exists():
        _create(path, nbytes)
    key = path.read_text(encoding="utf-8").strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        # an empty or truncated key would sign with (almost) nothing: refuse to start instead
        raise ConfigError(
            f"the key file {path.name} is shorter than {MIN_KEY_BYTES} bytes; "
            "delete it to have a new one made"
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        # warn, not refuse: mounted secrets (Kubernetes volumes) are often 0644 inside a pod
        get_logger(__name__).warning("key file readable by others; chmod 600 it", file=path.name)
    return key


def _create(path: Path, nbytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(nbytes))
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
