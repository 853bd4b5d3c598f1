"""Records of a tabular source kept as rows under one header (the CSV connector's batches)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any, overload


def column_index(header: Sequence[str]) -> dict[str, int]:
    """Each column name's index in a row (the last, for a repeated name: as ``dict(zip())``)."""
    return {name: i for i, name in enumerate(header)}


class HeaderRows(Sequence[dict[str, Any]]):
    """Records of a tabular source as its rows under one header, without a dict per row.

    Reading one (``rows[i]``, iterating) gives the record as the dict ``dict(zip(header,
    row))`` (a repeated column name keeps its last value, as that dict does), so every consumer
    of a ``connectors.base.RawBatch`` sees plain dicts; the mapping engine reads the lists
    themselves by column index (``mappings.engine``), which saves building ~18-key dicts it
    would take apart again (~10,000 of the ~230,000 instructions a CSV lead costs end to end).
    Every row is exactly as long as the header.
    """

    __slots__ = ("header", "rows")

    def __init__(self, header: Sequence[str], rows: list[list[str]]) -> None:
        self.header = tuple(header)
        self.rows = rows

    def columns(self) -> dict[str, int]:
        """Each column name's index in a row (the last, for a repeated name)."""
        return column_index(self.header)

    def __repr__(self) -> str:
        return f"HeaderRows({len(self.header)} columns, {len(self.rows)} rows)"

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> HeaderRows: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | HeaderRows:
        if isinstance(i, slice):
            return HeaderRows(self.header, self.rows[i])
        return dict(zip(self.header, self.rows[i], strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(dict, map(zip, repeat(self.header), self.rows))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderRows):
            return self.header == other.header and self.rows == other.rows
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for

    def __reduce__(self) -> tuple[Any, ...]:
        return (HeaderRows, (self.header, self.rows))


class RowRecord(Mapping[str, Any]):
    """One row read as its record (``dict(zip(header, row))``) without building the dict.

    For the few readers of a whole record inside a row-reading mapper (a transform that looks at
    another field, a JMESPath selector): ``get`` is one index lookup.
    """

    __slots__ = ("_columns", "_row")

    def __init__(self, columns: dict[str, int], row: Sequence[Any]) -> None:
        self._columns = columns
        self._row = row

    def get(self, key: str, default: Any = None) -> Any:
        i = self._columns.get(key)
        return default if i is None else self._row[i]

    def __getitem__(self, key: str) -> Any:
        return self._row[self._columns[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)
