"""Channel contract fixture: ``file`` (CSV exports in the test's own folder).

There is no remote: the "fake" is the folder, and ``seen_ids`` reads the ``delivery_id`` column
back from every file written there.  The checks that need a remote answering with errors or not
at all are waived; disk failures are covered by tests/unit/outbound/test_file_channel.py.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from outbound.base import Delivery
from tests.contract.channel_support import SHORT_SCORE, ChannelContract, lead_delivery

NO_REMOTE = (
    "the file channel has no remote to answer with errors or hang; disk failures are "
    "unit-tested (issue #6)"
)


RECORD = {"external_id": "L-1001", "email": "ada@example.com", "company": "=cmd|' /C calc'!A0"}


def _delivery(delivery_id: str) -> Delivery:
    return lead_delivery(delivery_id, "file.exports", RECORD, SHORT_SCORE)


def read_ids(folder: Path) -> list[str]:
    """The delivery_id column of every CSV file under ``folder``, in file then row order."""
    ids: list[str] = []
    for path in sorted(folder.rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f)
            ids.extend(row["delivery_id"] for row in rows)
    return ids


@contextmanager
def contract(tmp_path: Path) -> Iterator[ChannelContract]:
    """The file channel's contract inputs: a folder under ``tmp_path``."""
    folder = tmp_path / "exports"
    yield ChannelContract(
        options={"folder": str(folder), "format": "csv"},
        delivery=_delivery,
        seen_ids=lambda: read_ids(folder),
        fail_next=None,
        secrets=["file-channel-has-no-secrets"],
        waivers={
            "client_error": NO_REMOTE,
            "server_error": NO_REMOTE,
            "timeout": NO_REMOTE,
        },
        bad_options=[
            {"folder": str(folder), "path": "../{date}.csv"},
            {"folder": str(folder), "path": "{date}-{secret}.csv"},
            {"folder": str(folder), "fields": {"email": "record.[email"}},
            {"folder": str(folder), "format": "xlsx"},
        ],
    )
