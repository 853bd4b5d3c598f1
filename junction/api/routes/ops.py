"""Routes: read and operate (pipelines, runs, cursors, records, quarantine, deliveries, channels).

Lists page with ``?limit=`` (at most 500) and an opaque ``cursor``: ``{"items", "next"}``.
Unknown names and ids answer 404 problem+json.  Every action is audited.
"""

from __future__ import annotations

from fastapi import APIRouter

from junction.api.routes import outbox, pipelines, quarantine, record_reads, suppressions

router = APIRouter()
for _module in (pipelines, record_reads, quarantine, outbox, suppressions):
    router.include_router(_module.router)
