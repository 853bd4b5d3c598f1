"""The XML file-drop connector.

Each file is one stream.  ``read`` hashes the file first (for the record keys and the cursor),
then streams it with the hardened ``iter_records`` and emits one dict per record element.
Unlike CSV, the bytes are decoded by libxml2 as the XML declaration says, so decoding errors,
a DOCTYPE or a broken document can surface after some batches were already yielded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from connectors.base import RawBatch
from connectors.files import FileConnectorBase, record_batches, resume_row
from connectors.safe_xml import declared_encoding, iter_records
from connectors.text_scan import hash_file
from connectors.xml_file.config import XmlFileConfig


class XmlFileConnector(FileConnectorBase):
    """Reads XML file drops: one stream per ready file, one record per ``record_tag`` element."""

    name: ClassVar[str] = "xml_file"
    config_model: ClassVar[type[XmlFileConfig]] = XmlFileConfig
    config: XmlFileConfig

    def __init__(self, config: XmlFileConfig) -> None:
        super().__init__(config)

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Hash ``stream`` (one file) eagerly, then return its batches after ``cursor``.

        Raises:
            ConfigError: the stream is not a file under the configured path.
            FileTooLargeError: the file exceeds ``max_file_bytes`` (raised here).
            DTDForbiddenError, UnsafeXMLError, EncodingError, ParseError: while iterating.
        """
        path = self._resolve_stream(stream)
        sha256, size = hash_file(path, max_file_bytes=self.config.max_file_bytes)
        skip = resume_row(cursor, sha256)
        if size == 0:
            return iter(())
        return self._batches(stream, path, sha256, skip)

    def _batches(self, stream: str, path: str, sha256: str, skip: int) -> Iterator[RawBatch]:
        cfg = self.config
        explicit = None if cfg.encoding == "auto" else cfg.encoding
        with open(path, "rb") as f:
            prov = {
                "connector": self.name,
                "file": path,
                "sha256": sha256,
                "encoding": explicit or declared_encoding(f.read(1024)),
                "record_tag": cfg.record_tag,
            }
            f.seek(0)
            items = iter_records(
                f,
                cfg.record_tag,
                skip=skip,
                encoding=explicit,
                max_field_bytes=cfg.max_field_bytes,
            )
            yield from record_batches(
                items,
                stream=stream,
                path=path,
                sha256=sha256,
                skip=skip,
                batch_size=cfg.batch_size,
                provenance=prov,
            )
