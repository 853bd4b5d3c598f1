"""Replay quarantined items once their cause is fixed; replaying twice is a no-op."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from connectors.base import RawBatch
from junction.pipeline.runner import RunSummary

if TYPE_CHECKING:
    from junction.pipeline.hub import Hub


def replay(hub: Hub, qid: int) -> str:
    """Replay quarantine entry ``qid``; return what happened, for people."""
    q = hub.store.get_quarantine(qid)
    if q is None:
        return "no such entry"
    if q["status"] != "open":
        return f"already {q['status']}"
    if q["stage"] == "deliver":
        with hub.store.begin() as conn:
            changed = hub.store.requeue_delivery(conn, q["record_key"])
            hub.store.resolve_quarantine(conn, qid, "replayed")
        return "delivery re-queued" if changed else "delivery was not dead; entry closed"
    if q["stage"] in ("normalize", "validate", "score", "route"):
        runner = hub.runner(q["pipeline"])
        record = orjson.loads(q["payload"])
        prov = orjson.loads(q["provenance"])
        key = q["record_key"].split(":", 1)[1]
        summary = RunSummary(q["pipeline"], run_id=0)
        # resolve first: if the record fails again, it lands as a new open entry with the same key
        with hub.store.begin() as conn:
            hub.store.resolve_quarantine(conn, qid, "replayed")
        batch = RawBatch(
            stream=str(prov.get("stream", "replay")),
            records=[record],
            keys=[key],
            positions=[int(prov.get("position") or 0)],
            cursor={},
        )
        runner.process_batch(batch, summary, commit_cursor=False)
        if summary.stored:
            return "record stored"
        return "record failed again; it has a new open quarantine entry"
    return f"stage {q['stage']} cannot be replayed from here; re-drop the file"
