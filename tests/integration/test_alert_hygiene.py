"""Alert hygiene through a real pipeline and delivery worker into a signed-webhook receiver.

Dedupe, per-recipient throttling, digests and escalation, on SQLite and PostgreSQL.  Time is
never waited for where the store can say it instead: a window "passes" by ageing the send log,
and the sweeps are called with a later ``now``; only the throttle test lets the worker wait for
its (sub-second) window, as that waiting is what it tests.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from junction.cli.main import app as cli
from junction.core.registry import Registry
from junction.pipeline.config import load_config
from junction.pipeline.hub import Hub
from junction.pipeline.hygiene import RouteTable
from junction.pipeline.hygiene_sweeps import HygieneSweeps, acknowledge, digest_id
from outbound.base import Delivery, Recipient
from outbound.webhook.channel import WebhookChannel
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink, read_sink_file
from scoring.synthetic import CSV_HEADER
from tests.integration.helpers import rows_of, scalar

CONFIG = """\
store: "{store}"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: inbox/*.csv, settle_seconds: 0}}
    mapping: csv.lead
    routes:
{routes}
channels:
  webhook.a: {{url: "{url}a", secret: "{secret}", timeout_s: 5}}
  webhook.b: {{url: "{url}b", secret: "{secret}", timeout_s: 5}}
  webhook.c: {{url: "{url}c", secret: "{secret}", timeout_s: 5}}
  pager.ops: {{url: "{url}pager", secret: "{secret}", timeout_s: 5}}
delivery: {{schedule_s: [0.05, 0.1], lease_s: 30}}
egress: {{allow_networks: ["127.0.0.0/8"]}}
"""


class PagerChannel(WebhookChannel):
    """A webhook that pages a person: the lead's email stands in for the person paged."""

    name = "pager"

    def recipients(self, delivery: Delivery) -> list[Recipient]:
        return [Recipient("email", json.loads(delivery.payload)["record"]["email"])]


REGISTRY = Registry(extra={"channels": {"pager": PagerChannel}})


def execute(store_url: str, sql: str) -> None:
    eng = create_engine(store_url)
    try:
        with eng.begin() as conn:
            conn.execute(text(sql))
    finally:
        eng.dispose()


class Setup:
    """One hub config, its receiver and its inbox."""

    def __init__(self, root: Path, store: str, models: Path, sink: Sink, routes: str) -> None:
        self.root = root
        self.store = store
        self.sink_file = sink.path
        (root / "inbox").mkdir(parents=True, exist_ok=True)
        self.cfg = root / "junction.yaml"
        self.cfg.write_text(
            CONFIG.format(
                store=store, models=models, url=sink.url, secret=sink.secret, routes=routes
            )
        )
        self.files = 0

    def drop(self, *leads: tuple[str, str]) -> None:
        """A new file of leads (id, email)."""
        self.files += 1
        path = self.root / "inbox" / f"leads{self.files}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_HEADER)
            writer.writeheader()
            for lead_id, email in leads:
                writer.writerow({"lead_id": lead_id, "email": email, "company": "Acme"})

    @contextmanager
    def hub(self) -> Iterator[Hub]:
        hub = Hub(load_config(self.cfg), registry=REGISTRY)
        try:
            yield hub
        finally:
            hub.close()

    @contextmanager
    def sweeps(self) -> Iterator[HygieneSweeps]:
        with self.hub() as hub:
            yield HygieneSweeps(hub.store, RouteTable(hub.cfg.pipelines))

    def run(self) -> None:
        with self.hub() as hub:
            hub.run_once()

    def run_and_deliver(self, drain_wait_s: float = 2.0) -> None:
        with self.hub() as hub:
            hub.run_once()
            hub.deliver(drain_wait_s=drain_wait_s)

    def deliver(self, drain_wait_s: float = 2.0) -> None:
        with self.hub() as hub:
            hub.deliver(drain_wait_s=drain_wait_s)

    def escalate_due(self) -> int:
        """Run the escalation sweep now; how many escalations it wrote."""
        with self.sweeps() as sweeps:
            return sweeps.escalate_due(time.time())

    def statuses(self) -> dict[str, str]:
        return dict(rows_of(self.store, "SELECT id, status FROM deliveries"))

    def received(self, channel: str | None = None) -> list[dict[str, Any]]:
        """The events the receiver accepted (for one channel), in arrival order."""
        channels = dict(rows_of(self.store, "SELECT id, channel FROM deliveries"))
        out = []
        for entry in read_sink_file(self.sink_file):
            if channel is not None and channels[entry["webhook_id"]] != channel:
                continue
            body = entry["body"]
            out.append(json.loads(body) if isinstance(body, str) else body)
        return out


@dataclass
class Sink:
    url: str
    secret: str
    path: Path


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    secret = generate_secret()
    with WebhookSink(secret, tmp_path / "sink.jsonl") as s:
        yield Sink(s.url, secret, tmp_path / "sink.jsonl")


# the escalation wait "passes": every pending escalation time moves an hour back
AGE = "UPDATE deliveries SET escalate_at = escalate_at - 3600 WHERE escalate_at IS NOT NULL"


def keys(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["source_key"] for e in events)


def hot_route(hygiene: str) -> str:
    """The routes block: every lead to webhook.a, with one hygiene setting (a YAML line)."""
    return f"""\
      - name: hot
        when: "true"
        to: [webhook.a]
        {hygiene}
"""


ESCALATING = hot_route("escalate: {after_s: 300, to: [webhook.b, webhook.c]}")


def test_dedupe_sends_one_alert_per_lead_per_window(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, hot_route("dedupe: {window_s: 3600}"))
    # the same lead twice in one run (claimed and sent together), and another one
    s.drop(("L-1", "ann@example.com"), ("L-1", "ann@example.com"), ("L-2", "bob@example.com"))
    s.run_and_deliver()
    assert keys(s.received()) == ["L-1", "L-2"]
    # within the window the same lead again is a duplicate; a new lead is not
    s.drop(("L-1", "ann@example.com"), ("L-3", "cy@example.com"))
    s.run_and_deliver()
    assert keys(s.received()) == ["L-1", "L-2", "L-3"]
    statuses = list(s.statuses().values())
    assert statuses.count("skipped") == 2
    assert statuses.count("delivered") == 3
    # the log keeps keyed pseudonyms, never the lead's key
    logged = [k for (k,) in rows_of(store_url, "SELECT key FROM send_log")]
    assert logged
    assert all(k.startswith("ps_") and "L-" not in k for k in logged)
    # once the window has passed (the log aged by an hour), the lead alerts again
    execute(store_url, "UPDATE send_log SET at = at - 3601")
    s.drop(("L-1", "ann@example.com"), ("L-4", "dee@example.com"))
    s.run_and_deliver()
    assert keys(s.received()) == ["L-1", "L-1", "L-2", "L-3", "L-4"]


PAGE_ROUTE = """\
      - name: page
        when: "true"
        to: [pager.ops]
        throttle: {{max: 2, per_s: {per_s}}}
"""
PAGES = (
    ("L-1", "ann@example.com"),
    ("L-2", "ann@example.com"),
    ("L-3", "ann@example.com"),
    ("L-4", "bob@example.com"),
)


def test_throttle_defers_the_third_page_to_a_person_until_the_window_frees(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, PAGE_ROUTE.format(per_s=3600))
    s.drop(*PAGES)
    started = time.time()
    s.run_and_deliver()
    # two pages to ann and one to bob went; ann's third waits for the window, unattempted
    [(waiting, status, attempts, due)] = rows_of(
        store_url,
        "SELECT r.source_key, d.status, d.attempts, d.next_attempt_at FROM deliveries d "
        "JOIN records r ON r.id = d.record_id WHERE d.status <> 'delivered'",
    )
    assert waiting in ("L-1", "L-2", "L-3")
    assert keys(s.received()) == sorted({"L-1", "L-2", "L-3", "L-4"} - {waiting})
    assert (status, attempts) == ("pending", 0)
    assert started + 3600 <= due <= time.time() + 3600
    # an hour later (the log aged, the delivery due) it goes
    execute(store_url, "UPDATE send_log SET at = at - 3600")
    execute(store_url, f"UPDATE deliveries SET next_attempt_at = {time.time()}")
    s.deliver()
    assert keys(s.received()) == ["L-1", "L-2", "L-3", "L-4"]
    assert set(s.statuses().values()) == {"delivered"}


def test_a_throttled_page_goes_when_its_short_window_frees(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, PAGE_ROUTE.format(per_s=0.3))
    s.drop(*PAGES)
    s.run_and_deliver(drain_wait_s=5)  # the worker waits for the window by itself
    # nothing lost, and a deferral is not a failed attempt
    assert keys(s.received()) == ["L-1", "L-2", "L-3", "L-4"]
    assert set(s.statuses().values()) == {"delivered"}
    assert scalar(store_url, "SELECT max(attempts) FROM deliveries") == 1
    assert scalar(store_url, "SELECT count(*) FROM attempts") == 4


def test_digest_sends_ten_hot_leads_as_one_message(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink
) -> None:
    routes = hot_route("digest: {window_s: 3600, max_items: 10, template: hot_digest}")
    s = Setup(tmp_path, store_url, models_dir, sink, routes)
    s.drop(*[(f"L-{n}", f"p{n}@example.com") for n in range(10)])
    s.run()
    # held: none goes out one by one
    assert set(s.statuses().values()) == {"held"}
    first = sorted(rows_of(store_url, "SELECT created_at, id FROM deliveries"))[0][1]
    with s.sweeps() as sweeps:
        assert sweeps.flush_digests(time.time()) == 1  # full: it goes at once
        assert sweeps.flush_digests(time.time()) == 0
    s.deliver()
    [digest] = s.received()
    assert (digest["type"], digest["count"], digest["route"]) == ("digest", 10, "hot")
    assert keys(digest["items"]) == sorted(f"L-{n}" for n in range(10))
    did = digest_id("leads", "hot", "webhook.a", first)
    statuses = s.statuses()
    assert statuses.pop(did) == "delivered"
    assert set(statuses.values()) == {"digested"}
    assert scalar(store_url, f"SELECT count(*) FROM deliveries WHERE group_id = '{did}'") == 10
    # a sweep over the same items again (say its marks were lost) writes no second digest:
    # the id is the same, so the receiver gets one message
    execute(store_url, "UPDATE deliveries SET status = 'held' WHERE status = 'digested'")
    with s.sweeps() as sweeps:
        sweeps.flush_digests(time.time())
    s.deliver()
    assert len(s.received()) == 1
    assert scalar(store_url, "SELECT count(*) FROM deliveries WHERE id LIKE 'digest:%'") == 1


def test_escalation_reaches_the_next_channel_unless_acknowledged(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, ESCALATING)
    s.drop(("L-1", "ann@example.com"), ("L-2", "bob@example.com"))
    s.run_and_deliver()
    assert keys(s.received("webhook.a")) == ["L-1", "L-2"]
    ids = {
        key: did
        for did, key in rows_of(
            store_url,
            "SELECT d.id, r.source_key FROM deliveries d JOIN records r ON r.id = d.record_id",
        )
    }
    assert s.escalate_due() == 0  # not yet
    # L-2 is acknowledged (here with the CLI); L-1 is not
    runner = CliRunner()
    done = runner.invoke(cli, ["deliveries", "ack", ids["L-2"], "--config", str(s.cfg)])
    assert done.exit_code == 0, done.output
    again = runner.invoke(cli, ["deliveries", "ack", ids["L-2"], "--config", str(s.cfg)])
    assert again.exit_code == 1
    execute(store_url, AGE)
    assert s.escalate_due() == 1
    s.deliver()
    [esc] = s.received("webhook.b")
    assert esc["source_key"] == "L-1"
    assert esc["escalated_from"] == ids["L-1"]
    # the escalation, unacknowledged in turn, goes on to the last channel
    execute(store_url, AGE)
    assert s.escalate_due() == 1
    s.deliver()
    [last] = s.received("webhook.c")
    assert last["source_key"] == "L-1"
    assert last["escalated_from"] == f"{ids['L-1']}:esc1"
    with s.hub() as hub, s.sweeps() as sweeps:
        assert acknowledge(hub.store, f"{ids['L-1']}:esc2")[1]
        execute(store_url, AGE)
        assert sweeps.escalate_due(time.time()) == 0
    assert scalar(store_url, "SELECT count(*) FROM deliveries") == 4


def test_an_ack_of_the_alert_stops_a_pending_escalation(
    tmp_path: Path, store_url: str, models_dir: Path, sink: Sink
) -> None:
    s = Setup(tmp_path, store_url, models_dir, sink, ESCALATING)
    s.drop(("L-1", "ann@example.com"))
    s.run_and_deliver()
    [root] = s.statuses()
    execute(store_url, AGE)
    assert s.escalate_due() == 1
    s.deliver()
    # the first person acknowledges late, after the escalation went out: the chain stops
    with s.hub() as hub, s.sweeps() as sweeps:
        assert acknowledge(hub.store, root)[1]
        execute(store_url, AGE)
        assert sweeps.escalate_due(time.time()) == 0
    assert keys(s.received("webhook.b")) == ["L-1"]
    assert s.received("webhook.c") == []
