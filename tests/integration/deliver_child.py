"""A delivery worker in its own process, for the kill -9 test.

``python -m tests.integration.deliver_child STORE_URL URL SECRET MODE MARKER [CHANNELS]``:
delivers what is due to one webhook channel (``webhook.crash``), or to the channels of the JSON
file ``CHANNELS`` (name → options), and exits.  In ``hang`` mode the first recording of outcomes
writes ``MARKER`` and blocks forever instead, so the test can SIGKILL the process after the
receiver's 2xx and before the outcome is recorded.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from junction.pipeline.config import DeliveryConfig
from junction.pipeline.deliver import DeliveryWorker, build_channels
from junction.store.repo import Store


class HangingStore(Store):
    """Blocks where the outcomes would be recorded."""

    marker: Path

    def record_attempts(self, outcomes: Any, quarantined: Any, **kw: Any) -> set[str]:
        self.marker.write_text(",".join(o["delivery_id"] for o in outcomes))
        while True:
            time.sleep(60)


def main(argv: list[str]) -> int:
    store_url, url, secret, mode, marker, *more = argv
    store: Store
    if mode == "hang":
        store = HangingStore(Store.open(store_url).engine)
        store.marker = Path(marker)
    else:
        store = Store.open(store_url)
    options = {"webhook.crash": {"url": url, "secret": secret, "timeout_s": 5}}
    if more:
        options = json.loads(Path(more[0]).read_text(encoding="utf-8"))
    channels = build_channels(options)
    policy = DeliveryConfig(lease_s=1.0, schedule_s=[0.05])

    async def go() -> None:
        worker = DeliveryWorker(store, channels, policy)
        try:
            await worker.run(drain_wait_s=5)
        finally:
            await worker.aclose()

    asyncio.run(go())
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
