"""The CommerceML 2.x file connector (1C:Enterprise ⇄ web shop exchange files).

Each file is one stream.  ``read`` first proves the whole file decodes strictly in its declared
encoding while hashing it (``connectors.text_scan``: a bad cp1251 byte fails the file before
any record), then tells the document kind from the root's children, then streams the records
with the hardened ``iterparse`` of ``client.py``: one flat dict per product (import), offer
(offers, prices, rests) or order (orders).  Keys and cursors are those of every file connector:
``f"{sha256[:16]}:{n}"`` for the n-th record, ``{"sha256", "row"}``.
"""

from __future__ import annotations

import codecs
import os
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from connectors.base import RawBatch, StreamInfo
from connectors.commerceml.client import Detected, detect_kind, iter_documents
from connectors.commerceml.config import CommerceMLConfig
from connectors.files import FileConnectorBase, list_files, record_batches, resume_row
from connectors.safe_xml import declared_encoding
from connectors.text_scan import TextScan, scan_text_file
from junction.core.errors import ConfigError, EncodingError, JunctionError

STREAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A flattened CommerceML product, offer or order (see the connector README).",
    "properties": {"id": {"type": "string", "description": "The 1C Ид"}},
}


class CommerceMLConnector(FileConnectorBase):
    """Reads CommerceML import, offers (prices, rests) and orders files: one stream per file."""

    name: ClassVar[str] = "commerceml"
    config_model: ClassVar[type[CommerceMLConfig]] = CommerceMLConfig
    stream_schema: ClassVar[dict[str, Any]] = STREAM_SCHEMA
    config: CommerceMLConfig

    def __init__(self, config: CommerceMLConfig) -> None:
        super().__init__(config)

    def discover(self) -> list[StreamInfo]:
        """Return one stream per ready file of the configured document kind, sorted by name.

        A file whose kind cannot be told (broken, hostile) is listed, so that reading it reports
        the error; a file of another kind (offers.xml beside import.xml) is not.
        """
        now = time.time()
        wanted = self.config.document
        out = []
        for f in list_files(self.config.path):
            if not self._ready(f, now):
                continue
            if wanted != "auto" and os.path.getsize(f) > 0:
                try:
                    kind = self._detect(f, self._forced()).kind
                except (JunctionError, OSError):
                    kind = None
                if kind is not None and kind != wanted:
                    continue
            out.append(StreamInfo(name=f, json_schema=dict(self.stream_schema)))
        return out

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Check ``stream`` (one file) eagerly, then return its batches after ``cursor``.

        Raises:
            ConfigError: the stream is outside the configured path, or holds another document
                kind than the configured one.
            FileTooLargeError, EncodingError: from the scan pass (raised here, before any batch).
            DTDForbiddenError, UnsafeXMLError, ParseError: from the scan or while iterating.
        """
        path = self._resolve_stream(stream)
        cfg = self.config
        codec = self._codec(path)
        scan = scan_text_file(
            path, codec, max_file_bytes=cfg.max_file_bytes, max_field_bytes=cfg.max_field_bytes
        )
        skip = resume_row(cursor, scan.sha256)
        if scan.size == 0:
            return iter(())
        detected = self._detect(path, self._forced())
        if cfg.document != "auto" and detected.kind not in (None, cfg.document):
            raise ConfigError(
                f"the file is a CommerceML {detected.kind} document, not {cfg.document}",
                context={"file": path, "document": detected.kind},
            )
        kind = detected.kind if cfg.document == "auto" else cfg.document
        if kind is None:
            return iter(())  # an empty document (no catalogue, package or order)
        return self._batches(stream, path, scan, kind, detected, skip)

    def _forced(self) -> str | None:
        return None if self.config.encoding == "auto" else self.config.encoding

    def _codec(self, path: str) -> str:
        """The codec the scan pass checks: the configured one, else the document's own."""
        forced = self._forced()
        if forced is not None:
            return forced
        with open(path, "rb") as f:
            declared = declared_encoding(f.read(1024))
        try:
            return codecs.lookup(declared).name
        except LookupError:
            raise EncodingError(
                f"the XML declares an unknown encoding {declared!r}",
                context={"file": path, "encoding": declared},
            ) from None

    @staticmethod
    def _detect(path: str, encoding: str | None) -> Detected:
        with open(path, "rb") as f:
            try:
                return detect_kind(f, encoding)
            except JunctionError as exc:
                exc.context.setdefault("file", path)
                raise

    def _batches(
        self, stream: str, path: str, scan: TextScan, kind: str, detected: Detected, skip: int
    ) -> Iterator[RawBatch]:
        cfg = self.config
        prov = {
            "connector": self.name,
            "document": kind,
            "file": path,
            "sha256": scan.sha256,
            "encoding": scan.encoding.name,
            "schema_version": detected.schema_version,
            "generated_at": detected.generated_at,
        }
        with open(path, "rb") as f:
            items = iter_documents(
                f,
                kind,
                skip=skip,
                encoding=self._forced(),
                max_field_bytes=cfg.max_field_bytes,
                decimal_comma=cfg.decimal_comma,
            )
            yield from record_batches(
                items,
                stream=stream,
                path=path,
                sha256=scan.sha256,
                skip=skip,
                batch_size=cfg.batch_size,
                provenance=prov,
            )
