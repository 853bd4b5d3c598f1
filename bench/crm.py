"""``bench crm``: a 100,000-record initial sync from each CRM fake, beside the raw SDK.

For each CRM, in the same run and against the same fake (served from another process):

* raw SDK: the vendor SDK paging through every record at the API's page size, nothing else;
* Junction read: the connector's ``read`` of the stream from no cursor (keys, versions, cursors);
* Junction sync: the whole pipeline, ``junction run`` style: read → map → score → route →
  records, scores and outbox on SQLite, cursor committed per page.

It prints records/s for each, the ratio of Junction's sync to the raw SDK, and the share of the
sync's wall time spent in Junction (this process's CPU time) versus waiting on the fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import crm_fakes
from bench.procs import work_folder

HUBSPOT_PROPS = [
    "email",
    "firstname",
    "lastname",
    "company",
    "industry",
    "numemployees",
    "hs_analytics_num_page_views",
    "hs_analytics_num_visits",
]

CONFIG = """\
store: "sqlite:///{db}"
models_dir: {models}
pipelines:
  sync:
    source: {source}
    mapping: {mapping}
    batch_size: {batch}
    workers: 0
    scoring: {{model: lead-score}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
channels:
  webhook.sales: {{url: "http://127.0.0.1:9/never-called", secret: "{secret}"}}
"""


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(records, wall seconds, this process's CPU seconds) of ``fn``."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0, time.process_time() - c0


def _raw_hubspot(base: str, token: str) -> int:
    from hubspot import HubSpot

    api = HubSpot(access_token=token, host=base)
    n, after = 0, None
    while True:
        page = api.crm.contacts.basic_api.get_page(
            limit=100, after=after, properties=HUBSPOT_PROPS, archived=False
        )
        n += len(page.results)
        if page.paging is None or page.paging.next is None:
            return n
        after = page.paging.next.after


def _hubspot_source(base: str, token: str) -> dict[str, Any]:
    return {
        "connector": "hubspot",
        "base_url": base,
        "access_token": token,
        "objects": ["contacts"],
        "streams": ["contacts"],
        "properties": {"contacts": HUBSPOT_PROPS},
        "page_size": 100,
        "timeout_s": 60,
    }


SALESFORCE_FIELDS = [
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "Company",
    "Title",
    "Industry",
    "LeadSource",
    "Status",
    "Country",
    "City",
    "NumberOfEmployees",
    "AnnualRevenue",
    "Website",
    "CreatedDate",
]


def _raw_salesforce(base: str, secrets: dict[str, Any]) -> int:
    """simple-salesforce's own REST paging (2,000 a page) through the URL-rewriting session."""
    from urllib.parse import urlsplit, urlunsplit

    import requests
    from simple_salesforce import Salesforce

    class Redirect(requests.Session):  # CLIENTS.md recipe B: the SDK always builds https URLs
        def request(self, method: str, url: Any, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
            p = urlsplit(str(url))
            return super().request(
                method, base + urlunsplit(("", "", p.path, p.query, "")), *a, **kw
            )

    session = Redirect()
    session.trust_env = False
    sf = Salesforce(
        consumer_key=secrets["client_id"],
        consumer_secret=secrets["client_secret"],
        domain="acme.my",
        session=session,
        version=secrets["version"],
    )
    fields = ", ".join(["Id", "SystemModstamp", *SALESFORCE_FIELDS])
    return sum(1 for _ in sf.query_all_iter(f"SELECT {fields} FROM Lead"))


def _salesforce_source(base: str, secrets: dict[str, Any], bulk: bool) -> dict[str, Any]:
    return {
        "connector": "salesforce",
        "auth": "client_credentials",
        "domain": "acme.my",
        "client_id": secrets["client_id"],
        "client_secret": secrets["client_secret"],
        "base_url": base,
        "objects": ["Lead"],
        "streams": ["Lead"],
        "fields": {"Lead": SALESFORCE_FIELDS},
        "page_size": 2000,
        "bulk_threshold": 50_000 if bulk else 10**9,
        "bulk_poll_s": 0.05,
        "timeout_s": 60,
    }


SYSTEMS: dict[str, dict[str, Any]] = {
    "salesforce": {
        "raw": _raw_salesforce,
        "source": lambda base, s: _salesforce_source(base, s, bulk=False),
        "mapping": "salesforce.lead",
        "stream": "Lead",
        "batch": 2000,
    },
    "salesforce-bulk": {
        "fake": "salesforce",
        "raw": _raw_salesforce,
        "source": lambda base, s: _salesforce_source(base, s, bulk=True),
        "mapping": "salesforce.lead",
        "stream": "Lead",
        "batch": 2000,
    },
    "hubspot": {
        "raw": lambda base, s: _raw_hubspot(base, s["access_token"]),
        "source": lambda base, s: _hubspot_source(base, s["access_token"]),
        "mapping": "hubspot.lead",
        "stream": "contacts",
        "batch": 100,
    },
}


def _connector_read(source: dict[str, Any], stream: str) -> int:
    from junction.core.registry import default_registry

    cls = default_registry.get("connectors", source["connector"])
    options = {k: v for k, v in source.items() if k not in ("connector", "streams")}
    conn = cls(cls.config_model.model_validate(options))
    try:
        return sum(len(b) for b in conn.read(stream, None))
    finally:
        conn.close()


def _sync(work: Path, source: dict[str, Any], mapping: str, batch: int) -> tuple[int, Any]:
    import orjson

    from junction.pipeline.hub import Hub
    from outbound.webhook.config import generate_secret

    cfg = work / "junction.yaml"
    db = work / "sync.db"
    db.unlink(missing_ok=True)
    cfg.write_text(
        CONFIG.format(
            db=db,
            models=work / "models",
            source=orjson.dumps(source).decode(),
            mapping=mapping,
            batch=batch,
            secret=generate_secret(),
        )
    )
    hub = Hub.from_file(cfg)
    try:
        hub.runner("sync")  # compile the pipeline and load the model before the clock
        holder: dict[str, Any] = {}

        def go() -> int:
            [summary] = hub.run_once()
            holder["summary"] = summary
            return summary.read

        n, wall, cpu = _timed(go)
        return n, (wall, cpu, holder["summary"], hub.store.counts())
    finally:
        hub.close()


def _bench(system: str, records: int, work: Path) -> dict[str, float]:
    spec = SYSTEMS[system]
    t0 = time.perf_counter()
    proc, base, secrets = crm_fakes.start(spec.get("fake", system), records)
    print(f"{system}: fake with {records:,} records ready in {time.perf_counter() - t0:.1f}s")
    try:
        source = spec["source"](base, secrets)
        raw_n, raw_wall, raw_cpu = _timed(lambda: spec["raw"](base, secrets))
        read_n, read_wall, _ = _timed(lambda: _connector_read(source, spec["stream"]))
        n, (wall, cpu, _summary, counts) = _sync(work, source, spec["mapping"], spec["batch"])
    finally:
        proc.terminate()
        proc.join(10)
    assert raw_n == read_n == n == records, (raw_n, read_n, n, records)
    assert counts["records"] + counts["quarantined"] == records, "records were lost"
    raw_rate, read_rate, sync_rate = raw_n / raw_wall, read_n / read_wall, n / wall
    print(f"  raw SDK paging            : {raw_rate:>9,.0f} records/s ({raw_wall:.1f}s)")
    print(
        f"  Junction connector read   : {read_rate:>9,.0f} records/s "
        f"({read_wall:.1f}s; ratio to raw {read_rate / raw_rate:.2f})"
    )
    print(
        f"  Junction sync → SQLite    : {sync_rate:>9,.0f} records/s "
        f"({wall:.1f}s; ratio to raw {sync_rate / raw_rate:.2f})"
    )
    share = min(1.0, cpu / wall)
    print(
        f"  time in Junction / waiting on the fake: {share:.0%} / {1 - share:.0%} "
        f"(raw SDK alone: {min(1.0, raw_cpu / raw_wall):.0%} CPU)"
    )
    print(
        f"  stored {counts['records']:,}, quarantined {counts['quarantined']:,}, "
        f"scored {counts['scored']:,}, outbox {counts['deliveries_pending']:,}"
    )
    return {
        "raw_rps": raw_rate,
        "read_rps": read_rate,
        "sync_rps": sync_rate,
        "junction_share": share,
    }


def run(
    *, records: int, systems: list[str], keep: bool, figures: dict[str, Any] | None = None
) -> int:
    """Benchmark each of ``systems`` with an initial sync of ``records`` records; ``figures``,
    when given, receives each system's figures by name."""
    from scoring.registry import ensure_default_model

    with work_folder("junction-bench-crm-", keep=keep) as work:
        ensure_default_model(work / "models", name="lead-score")
        for system in systems:
            fig = _bench(system, records, work)
            if figures is not None:
                figures[system] = fig
    return 0
