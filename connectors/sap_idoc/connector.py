"""The SAP IDoc file-drop connector.

Each ready file is one stream.  ``read`` hashes the file and then *validates every IDoc in it*
before returning its batches, so a malformed IDoc (or broken XML) rejects the whole file with
its line and reason and nothing of it is stored; only then are the IDocs streamed, one record
each.  IDocs are routed by their control record (``EDI_DC40`` ``MESTYP`` / ``IDOCTYP`` /
``CIMTYP``), never by the root tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from typing import Any, ClassVar

from connectors.base import RawBatch, RowError
from connectors.files import FileConnectorBase, resume_row
from connectors.safe_xml import RecordProblem, declared_encoding
from connectors.sap_idoc.client import CONTROL, iter_idocs, validate_idocs
from connectors.sap_idoc.config import SapIdocConfig
from connectors.text_scan import hash_file
from junction.core.errors import JunctionError, RecordError

_DIGITS8 = re.compile(r"^[0-9]{8}$")
_DIGITS6 = re.compile(r"^[0-9]{6}$")


def idoc_version(control: dict[str, Any]) -> str | None:
    """A sortable version: ``CREDAT`` + ``CRETIM`` + ``/`` + the 16-digit ``DOCNUM``.

    None when the creation date is missing or SAP's empty date ``00000000``.
    """
    credat = str(control.get("CREDAT") or "")
    cretim = str(control.get("CRETIM") or "") or "000000"
    if not _DIGITS8.match(credat) or credat == "00000000" or not _DIGITS6.match(cretim):
        return None
    return f"{credat}{cretim}/{str(control.get('DOCNUM') or '').zfill(16)}"


def idoc_key(control: dict[str, Any]) -> str | None:
    """The IDoc's own identity ``<SNDPOR>/<MANDT>/<DOCNUM>``, or None without a DOCNUM.

    An IDoc sent again (a retransmission, the same IDoc in another file) keeps its key.
    """
    docnum = str(control.get("DOCNUM") or "")
    if not docnum:
        return None
    return f"{control.get('SNDPOR') or '-'}/{control.get('MANDT') or '-'}/{docnum}"


class SapIdocConnector(FileConnectorBase):
    """Reads IDoc XML drops: one stream per ready file, one record per ``IDOC`` element."""

    name: ClassVar[str] = "sap_idoc"
    config_model: ClassVar[type[SapIdocConfig]] = SapIdocConfig
    config: SapIdocConfig

    def __init__(self, config: SapIdocConfig) -> None:
        super().__init__(config)

    def read(self, stream: str, cursor: dict[str, Any] | None) -> Iterator[RawBatch]:
        """Hash and validate ``stream`` (one file) eagerly, then return its batches.

        Raises (from this call, before any batch):
            ConfigError: the stream is not a file under the configured path.
            FileTooLargeError: the file exceeds ``max_file_bytes``.
            DTDForbiddenError, UnsafeXMLError, EncodingError, ParseError: the file is not
                safe, well-formed IDoc XML; ``context["line"]`` and the message say where.
        """
        path = self._resolve_stream(stream)
        sha256, size = hash_file(path, max_file_bytes=self.config.max_file_bytes)
        skip = resume_row(cursor, sha256)
        if size == 0:
            return iter(())
        explicit = None if self.config.encoding == "auto" else self.config.encoding
        with open(path, "rb") as f:
            try:
                validate_idocs(f, encoding=explicit)
            except JunctionError as exc:
                exc.context.setdefault("file", path)
                raise
        return self._batches(stream, path, sha256, skip, explicit)

    def _selected(self, control: dict[str, Any]) -> bool:
        cfg = self.config
        mestyp = str(control.get("MESTYP") or "").upper()
        types = {str(control.get(f) or "").upper() for f in ("IDOCTYP", "CIMTYP")} - {""}
        if cfg.message_types and mestyp not in cfg.message_types:
            return False
        return not cfg.idoc_types or bool(types & set(cfg.idoc_types))

    def _batches(
        self, stream: str, path: str, sha256: str, skip: int, explicit: str | None
    ) -> Iterator[RawBatch]:
        cfg = self.config
        with open(path, "rb") as f:
            prov = {
                "connector": self.name,
                "file": path,
                "sha256": sha256,
                "encoding": explicit or declared_encoding(f.read(1024)),
            }
            f.seek(0)
            items = iter_idocs(f, skip=skip, encoding=explicit, max_field_bytes=cfg.max_field_bytes)
            n = skip
            seen: set[str] = set()
            while True:
                try:
                    chunk = list(islice(items, cfg.batch_size))
                except JunctionError as exc:
                    exc.context.setdefault("file", path)
                    raise
                if not chunk:
                    return
                records: list[dict[str, Any]] = []
                keys: list[str] = []
                positions: list[int] = []
                versions: list[str | None] = []
                errors: list[RowError] = []
                for item in chunk:
                    n += 1
                    fallback = f"{sha256[:16]}:{n}"
                    if isinstance(item, RecordProblem):
                        item.error.context.update(file=path)
                        errors.append(RowError(fallback, n, item.raw, item.error))
                        continue
                    control = item[CONTROL]
                    if not self._selected(control):
                        if cfg.other_types == "quarantine":
                            errors.append(self._not_selected(fallback, n, path, control))
                        continue
                    key = idoc_key(control) or fallback
                    if key in seen:  # the same DOCNUM twice in one file: keep both apart
                        key = fallback
                    seen.add(key)
                    records.append(item)
                    keys.append(key)
                    positions.append(n)
                    versions.append(idoc_version(control))
                yield RawBatch(
                    stream=stream,
                    records=records,
                    keys=keys,
                    positions=positions,
                    cursor={"sha256": sha256, "row": n},
                    errors=errors,
                    provenance=dict(prov),
                    versions=versions,
                )

    def _not_selected(self, key: str, n: int, path: str, control: dict[str, Any]) -> RowError:
        mestyp, idoctyp = control.get("MESTYP"), control.get("IDOCTYP")
        wanted = ", ".join(self.config.message_types or self.config.idoc_types)
        err = RecordError(
            f"IDoc {n} is {mestyp}/{idoctyp}; this reader takes {wanted}",
            context={"file": path, "idoc": n, "mestyp": mestyp, "idoctyp": idoctyp},
            code="idoc_not_selected",
        )
        summary = f"{CONTROL} DOCNUM={control.get('DOCNUM')} MESTYP={mestyp} IDOCTYP={idoctyp}"
        return RowError(key, n, summary.encode(), err)
