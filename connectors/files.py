"""Shared helpers for file-drop connectors: config base, discovery and readiness.

A file drop is ready when it has settled (not modified for ``settle_seconds``) and, when asked for,
has a sibling ``<name>.done`` marker.  The scan pass that hashes and strictly decodes a file before
any row is emitted lives in :mod:`connectors.text_scan`.
"""

from __future__ import annotations

import codecs
import glob
import os
import stat
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import PurePath
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.base import Capability, CheckResult, RawBatch, RowError, StreamInfo
from connectors.safe_xml import RecordProblem
from junction.core.errors import ConfigError, JunctionError

_GLOB_CHARS = frozenset("*?[")
DONE_SUFFIX = ".done"


class FileSourceConfig(BaseModel):
    """Settings shared by every file-drop connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        min_length=1,
        description="A file, a directory (its non-hidden files) or a glob of files to ingest.",
        examples=["/data/inbox/*.csv", "/data/inbox"],
    )
    encoding: str = Field(
        "auto",
        description=(
            "Text encoding: 'auto' (BOM, then strict UTF-8, then charset-normalizer's guess) or an "
            "explicit codec such as 'utf-8', 'cp1251' or 'utf-16', which is applied strictly."
        ),
        examples=["auto", "utf-8", "cp1251"],
    )
    batch_size: int = Field(1000, ge=1, le=1_000_000, description="Records per emitted batch.")
    max_file_bytes: int = Field(
        2 * 1024**3, ge=1, description="Files larger than this fail with FileTooLargeError."
    )
    max_field_bytes: int = Field(
        131072, ge=1, description="A value larger than this (UTF-8 bytes) fails its row."
    )
    require_done_marker: bool = Field(
        False, description="Only read files that have a sibling '<name>.done' marker file."
    )
    settle_seconds: float = Field(
        1.0, ge=0, description="A file modified more recently than this is still being written."
    )

    @field_validator("encoding")
    @classmethod
    def _known_text_codec(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "auto":
            return "auto"
        try:
            info = codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"{value!r} is not a text encoding")
        return value


def _is_glob(spec: str) -> bool:
    return any(c in _GLOB_CHARS for c in spec)


def _listable(name: str) -> bool:
    # markers and hidden files (editors, atomic-rename temporaries) are never data
    return not name.startswith(".") and not name.endswith(DONE_SUFFIX)


def list_files(spec: str) -> list[str]:
    """Return the absolute paths of the regular files ``spec`` names, sorted.

    Args:
        spec: a file, a directory (non-recursive) or a glob (``**`` recurses).
    """
    base = os.path.abspath(os.path.expanduser(spec))
    if _is_glob(spec):
        names = [n for n in glob.glob(base, recursive=True) if os.path.isfile(n)]
    elif os.path.isdir(base):
        with os.scandir(base) as it:
            names = [e.path for e in it if e.is_file()]
    elif os.path.isfile(base):
        return [base]
    else:
        return []
    return sorted(n for n in names if _listable(os.path.basename(n)))


def in_scope(spec: str, stream: str) -> bool:
    """Tell whether ``stream`` is a file that ``spec`` designates (never read outside it)."""
    base = os.path.abspath(os.path.expanduser(spec))
    if not os.path.isabs(stream) or os.path.normpath(stream) != stream:
        return False
    name = os.path.basename(stream)
    if _is_glob(spec):
        if not _listable(name):
            return False
        if "**" in spec:  # PurePath.match does not recurse before Python 3.13
            return stream in list_files(spec)
        return PurePath(stream).match(base)
    if os.path.isdir(base):
        return os.path.dirname(stream) == base and _listable(name)
    return stream == base


def is_ready(path: str, *, settle_seconds: float, require_done_marker: bool, now: float) -> bool:
    """Tell whether a file is complete enough to read (settled, and marked when required)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < settle_seconds:
        return False
    return not require_done_marker or os.path.isfile(path + DONE_SUFFIX)


def resume_row(cursor: dict[str, Any] | None, sha256: str) -> int:
    """Return how many leading rows a cursor has already covered for a file with ``sha256``.

    A cursor of another file version (the file was replaced) starts again from row 1.
    """
    if cursor is None or cursor.get("sha256") != sha256:
        return 0
    row = cursor.get("row")
    if type(row) is not int or row < 0:
        raise ConfigError("the stored cursor is invalid", details=f"row={row!r}")
    return row


class FileConnectorBase:
    """``check``, ``discover`` and ``close`` of the file connectors; subclasses add ``read``."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.FILES, Capability.DISCOVER}
    )
    stream_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config

    def check(self) -> CheckResult:
        """Check that the configured path exists and is readable; never raises."""
        spec = self.config.path
        base = os.path.abspath(os.path.expanduser(spec))
        if _is_glob(spec):
            # the longest leading part without wildcards must be an existing directory
            parts = PurePath(base).parts
            stop = next((i for i, p in enumerate(parts) if _is_glob(p)), len(parts))
            base = str(PurePath(*parts[:stop]))
            if not os.path.isdir(base):
                return CheckResult(False, f"no such directory: {base}")
        elif not os.path.exists(base):
            return CheckResult(False, f"no such file or directory: {base}")
        if not os.access(base, os.R_OK):
            return CheckResult(False, f"not readable: {base}")
        try:
            files = list_files(spec)
        except OSError as exc:
            return CheckResult(False, f"cannot list {base}: {exc.strerror}")
        ready = sum(1 for f in files if self._ready(f, time.time()))
        return CheckResult(True, f"{len(files)} file(s), {ready} ready")

    def discover(self) -> list[StreamInfo]:
        """Return one stream per ready file, named by its absolute path, sorted by name."""
        now = time.time()
        return [
            StreamInfo(name=f, json_schema=dict(self.stream_schema))
            for f in list_files(self.config.path)
            if self._ready(f, now)
        ]

    def close(self) -> None:
        """Nothing to release: each ``read`` opens and closes its own file."""

    def _ready(self, path: str, now: float) -> bool:
        cfg = self.config
        return is_ready(
            path,
            settle_seconds=cfg.settle_seconds,
            require_done_marker=cfg.require_done_marker,
            now=now,
        )

    def _resolve_stream(self, stream: str) -> str:
        if not in_scope(self.config.path, stream):
            raise ConfigError(
                "the stream is not a file of this connector's path",
                details=f"stream={stream!r} path={self.config.path!r}",
            )
        if not os.path.isfile(stream):
            raise ConfigError("the file is gone", context={"file": stream})
        return stream


def record_batches(
    items: Iterator[Any],
    *,
    stream: str,
    path: str,
    sha256: str,
    skip: int,
    batch_size: int,
    provenance: dict[str, Any],
) -> Iterator[RawBatch]:
    """Cut a file reader's items into batches with keys ``<sha16>:<row>`` and a resume cursor.

    ``items`` yields record dicts, or ``RecordProblem``s for records that could not be read,
    which become the batch's row errors.  A file-level
    failure raised by ``items`` names the file.
    """
    prefix = f"{sha256[:16]}:"
    n = skip
    while True:
        try:
            chunk = list(islice(items, batch_size))
        except JunctionError as exc:
            exc.context.setdefault("file", path)  # file-level failures name their file
            raise
        if not chunk:
            return
        first, n = n + 1, n + len(chunk)
        positions = list(range(first, n + 1))
        keys = [f"{prefix}{i}" for i in positions]
        records: list[dict[str, Any]] = []
        errors: list[RowError] = []
        if RecordProblem not in map(type, chunk):
            records = cast(list[dict[str, Any]], chunk)
        else:
            kept: list[tuple[str, int]] = []
            for item, key, pos in zip(chunk, keys, positions, strict=True):
                if isinstance(item, RecordProblem):
                    item.error.context.update(file=path)
                    errors.append(RowError(key, pos, item.raw, item.error))
                else:
                    records.append(item)
                    kept.append((key, pos))
            keys, positions = [k for k, _ in kept], [p for _, p in kept]
        yield RawBatch(
            stream=stream,
            records=records,
            keys=keys,
            positions=positions,
            cursor={"sha256": sha256, "row": n},
            errors=errors,
            provenance=dict(provenance),
        )
