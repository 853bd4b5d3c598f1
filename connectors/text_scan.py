"""The scan pass of file drops: size limit, SHA-256 and strict decoding in one streaming read.

Before any row of a file is emitted, :func:`scan_text_file` proves that every byte decodes strictly
in the chosen encoding (so a bad byte fails the whole file instead of a silent U+FFFD) and computes
the file's SHA-256, from which record keys are derived.  Encoding detection: BOM, then strict UTF-8,
then the code pages Russian and Western exports use, then charset-normalizer.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import sys
from dataclasses import dataclass

from charset_normalizer import from_bytes

from junction.core.errors import EncodingError, FileTooLargeError

HEAD_BYTES = 64 * 1024
_CHUNK = 1 << 17
# the code pages of Russian and Western Excel exports and of 1C DOS exports, by preference
_PREFERRED = ("cp1251", "cp1252", "cp866")


@dataclass(frozen=True, slots=True)
class TextEncoding:
    """How a text file decodes: ``name`` goes to provenance, ``codec`` applies after the BOM."""

    name: str
    codec: str
    bom_len: int = 0


@dataclass(frozen=True, slots=True)
class TextScan:
    """What the scan pass learnt about a file (no content beyond the sniffing head)."""

    path: str
    size: int
    sha256: str
    encoding: TextEncoding
    head: bytes
    has_nul: bool
    short_lines: bool  # no physical line is long enough to hold an oversized field


_BOMS = (
    (codecs.BOM_UTF8, TextEncoding("utf-8-sig", "utf-8", 3)),
    (codecs.BOM_UTF16_LE, TextEncoding("utf-16-le", "utf-16-le", 2)),
    (codecs.BOM_UTF16_BE, TextEncoding("utf-16-be", "utf-16-be", 2)),
)


def sniff_bom(head: bytes) -> TextEncoding | None:
    """Return the encoding a byte order mark at the start of ``head`` announces, if any."""
    for bom, enc in _BOMS:
        if head.startswith(bom):
            return enc
    return None


def guess_encoding(sample: bytes) -> str | None:
    """Guess a single encoding for ``sample`` with charset-normalizer; None when it cannot.

    charset-normalizer is unreliable on short samples (ptcp154 for cp1251 text, cp932 for one
    latin-1 byte), so a common Windows code page wins when it decodes the sample and either the
    guess found no language in it or both read the sample (almost) the same.
    """
    best = from_bytes(sample).best()
    if best is None:
        return None
    guess = codecs.lookup(best.encoding).name
    if guess in _PREFERRED:
        return guess
    text = str(best)
    non_ascii = sum(1 for c in text if c >= "\x80")
    for pref in _PREFERRED:
        try:
            alt = sample.decode(pref)
        except UnicodeDecodeError:
            continue
        if not best.percent_coherence:
            return pref
        differ = (
            sum(a != b for a, b in zip(alt, text, strict=True)) if len(alt) == len(text) else -1
        )
        if 0 <= differ * 3 <= non_ascii:
            return pref
    return guess


def resolve_encoding(configured: str, head: bytes, *, complete: bool) -> TextEncoding:
    """Choose how to decode a file from its first bytes and the configured encoding.

    Args:
        configured: ``"auto"`` or a codec name.
        head: the first bytes of the file.
        complete: whether ``head`` is the whole file.

    Raises:
        EncodingError: no encoding can be detected, or a BOM contradicts the configured one.
    """
    bom = sniff_bom(head)
    if configured == "auto":
        if bom is not None:
            return bom
        if _looks_utf8(head, complete):
            return TextEncoding("utf-8", "utf-8")
        guessed = guess_encoding(head)
        if guessed is None:
            raise EncodingError(
                "cannot detect the text encoding; set `encoding` explicitly",
                context={"encoding": "auto"},
            )
        return TextEncoding(guessed, guessed)
    codec = codecs.lookup(configured).name
    if codec == "utf-8-sig":
        codec = "utf-8"
    if bom is None or codec.startswith("utf-32"):
        return TextEncoding(codec, codec)
    # a BOM is optional for a file declared UTF-8 or UTF-16 (Excel adds one, others do not)
    if bom.codec == codec or (codec == "utf-16" and bom.codec.startswith("utf-16")):
        return bom
    raise EncodingError(
        f"the file starts with a {bom.name} byte order mark but the encoding is {codec}",
        context={"byte_offset": 0, "line": 1, "encoding": codec},
    )


def _looks_utf8(head: bytes, complete: bool) -> bool:
    if head.count(0) > len(head) // 4:
        return False  # UTF-16 text without a BOM is valid UTF-8 full of NULs
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


class _DecodeFailure(Exception):
    def __init__(self, offset: int, saw_non_ascii: bool) -> None:
        super().__init__(offset)
        self.offset = offset
        self.saw_non_ascii = saw_non_ascii


def _decoding_table(codec: str) -> str | None:
    decoder = codecs.lookup(codec).incrementaldecoder
    module = sys.modules.get(decoder.__module__) if decoder is not None else None
    table = getattr(module, "decoding_table", None)
    return table if isinstance(table, str) and len(table) == 256 else None


_ASCII = "".join(map(chr, range(128)))


class _Validator:
    """Strictly decodes a byte stream chunk by chunk; raises ``_DecodeFailure`` at a bad byte."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.decoder = codecs.getincrementaldecoder(codec)("strict")
        table = _decoding_table(codec)
        # single-byte table codecs fail only on their few undefined bytes: find them with memchr
        table_chars = table or ""
        self.undefined = [bytes([b]) for b, ch in enumerate(table_chars) if ch == "\ufffe"]
        self.table = table is not None
        self.utf8 = codec == "utf-8"
        self.ascii_compatible = (
            self.utf8
            or codec in ("ascii", "iso8859-1")
            or (table is not None and table[:128] == _ASCII)
        )
        self.saw_non_ascii = False

    def feed(self, data: bytes, at: int) -> bool:
        """Check ``data`` (starting at file offset ``at``); return whether it holds a NUL."""
        if self.table:
            bad = [i for i in map(data.find, self.undefined) if i >= 0]
            if bad:
                raise _DecodeFailure(at + min(bad), True)
            return b"\x00" in data
        pending = len(self.decoder.getstate()[0])
        if self.utf8 and not pending and data.isascii():
            return b"\x00" in data
        try:
            text = self.decoder.decode(data)
        except UnicodeDecodeError as exc:
            seen = self.saw_non_ascii or not data[: exc.start].isascii()
            raise _DecodeFailure(at - pending + exc.start, seen) from None
        self.saw_non_ascii = True
        return "\x00" in text

    def finish(self, end: int) -> None:
        """Fail when the file ends inside a multi-byte character."""
        pending = len(self.decoder.getstate()[0])
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise _DecodeFailure(end - pending + exc.start, self.saw_non_ascii) from None


class _LineWindows:
    """Proves that no physical line is longer than ``2 * width - 2`` bytes.

    Every run of bytes without CR/LF that is ``2 * width - 1`` long covers a whole aligned window
    of ``width`` bytes, so finding a line break in every aligned window is enough; that costs two
    ``find`` calls per window instead of a look at every field of every row.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.window_end = width
        self.seen_break = False
        self.ok = True

    def feed(self, chunk: bytes, start: int) -> None:
        end = start + len(chunk)
        pos = start
        while self.ok and pos < end:
            seg_end = min(self.window_end, end)
            if not self.seen_break:
                s, e = pos - start, seg_end - start
                self.seen_break = chunk.find(b"\n", s, e) >= 0 or chunk.find(b"\r", s, e) >= 0
            if seg_end == self.window_end:
                self.ok = self.seen_break
                self.window_end += self.width
                self.seen_break = False
            pos = seg_end


def _checked_size(path: str, size: int, limit: int) -> None:
    if size > limit:
        raise FileTooLargeError(
            "the file is larger than max_file_bytes",
            context={"file": path, "size": size, "limit": limit},
        )


def hash_file(path: str, *, max_file_bytes: int) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of a file in one streaming read.

    Raises:
        FileTooLargeError: the file is (or grows) larger than ``max_file_bytes``.
    """
    _checked_size(path, os.stat(path).st_size, max_file_bytes)
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            size += len(chunk)
            _checked_size(path, size, max_file_bytes)
            digest.update(chunk)
    return digest.hexdigest(), size


def probe_text_file(path: str, encoding: str, *, max_file_bytes: int) -> TextScan:
    """What a text file's head says before its scan: its size and encoding, not its hash.

    The result has ``sha256 = ""`` and claims no NUL and no short lines; what only the whole
    file can prove (strict decoding, the hash) is :func:`scan_text_file`'s, which starts with
    this same probe.

    Raises:
        FileTooLargeError: the file is larger than ``max_file_bytes``.
        EncodingError: the head names no usable encoding (context: file).
    """
    size = os.stat(path).st_size
    _checked_size(path, size, max_file_bytes)
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        enc = resolve_encoding(encoding, head, complete=len(head) >= size)
    except EncodingError as exc:
        exc.context.setdefault("file", path)
        raise
    return TextScan(
        path=path, size=size, sha256="", encoding=enc, head=head, has_nul=False, short_lines=False
    )


def scan_text_file(
    path: str,
    encoding: str,
    *,
    max_file_bytes: int,
    max_field_bytes: int,
    probe: TextScan | None = None,
) -> TextScan:
    """Hash a text file and prove it decodes strictly, in one streaming pass, before any row.

    Args:
        path: the file.
        encoding: ``"auto"`` or a codec name.
        max_file_bytes: size limit of the file.
        max_field_bytes: size limit of one value (decides ``TextScan.short_lines``).
        probe: this file's :func:`probe_text_file` with the same ``encoding``, when the caller
            has it already (else the scan makes it).

    Raises:
        FileTooLargeError: the file is larger than ``max_file_bytes``.
        EncodingError: a byte does not decode (context: file, byte_offset, line, encoding).
    """
    if probe is None:
        probe = probe_text_file(path, encoding, max_file_bytes=max_file_bytes)
    head, enc = probe.head, probe.encoding
    try:
        return _scan(path, head, enc, max_file_bytes, max_field_bytes)
    except _DecodeFailure as failure:
        fallback = None
        if encoding == "auto" and enc.name == "utf-8" and not failure.saw_non_ascii:
            # ASCII so far was no evidence of UTF-8: guess from the bytes around the failure
            with open(path, "rb") as f:
                f.seek(max(0, failure.offset - HEAD_BYTES // 2))
                fallback = guess_encoding(f.read(HEAD_BYTES))
        if fallback is None or fallback == "utf-8":
            raise _encoding_error(path, enc, failure.offset) from None
        enc = TextEncoding(fallback, fallback)
        try:
            return _scan(path, head, enc, max_file_bytes, max_field_bytes)
        except _DecodeFailure as again:
            raise _encoding_error(path, enc, again.offset) from None


def _scan(
    path: str, head: bytes, enc: TextEncoding, max_file_bytes: int, max_field_bytes: int
) -> TextScan:
    digest = hashlib.sha256()
    validator = _Validator(enc.codec)
    # a field inside a line of L bytes has at most L UTF-8 bytes when the source is UTF-8 or
    # ASCII, and at most 3 * L when each source byte is one BMP character
    limit = max_field_bytes if enc.codec in ("utf-8", "ascii") else max_field_bytes // 3
    windows = _LineWindows(limit // 2) if validator.ascii_compatible and limit >= 8192 else None
    has_nul = False
    pos = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            end = pos + len(chunk)
            _checked_size(path, end, max_file_bytes)
            digest.update(chunk)
            skip = max(0, enc.bom_len - pos)
            has_nul = validator.feed(chunk[skip:] if skip else chunk, pos + skip) or has_nul
            if windows is not None:
                windows.feed(chunk, pos)
            pos = end
    validator.finish(pos)
    return TextScan(
        path=path,
        size=pos,
        sha256=digest.hexdigest(),
        encoding=enc,
        head=head,
        has_nul=has_nul,
        short_lines=windows is not None and windows.ok,
    )


def _encoding_error(path: str, enc: TextEncoding, offset: int) -> EncodingError:
    line = _line_at(path, enc, offset)
    return EncodingError(
        f"the file is not valid {enc.name} text: undecodable byte at offset {offset} (line {line})",
        context={"file": path, "byte_offset": offset, "line": line, "encoding": enc.name},
    )


def _line_at(path: str, enc: TextEncoding, offset: int) -> int:
    """Return the 1-based line holding byte ``offset`` (CRLF, CR and LF all end a line)."""
    decoder = io.IncrementalNewlineDecoder(
        codecs.getincrementaldecoder(enc.codec)("strict"), translate=True
    )
    lines = 0
    pos = enc.bom_len
    with open(path, "rb") as f:
        f.seek(pos)
        while pos < offset and (chunk := f.read(min(_CHUNK, offset - pos))):
            lines += decoder.decode(chunk).count("\n")
            pos += len(chunk)
    lines += decoder.decode(b"", final=True).count("\n")
    return lines + 1
