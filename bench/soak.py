"""``python -m bench soak [--minutes N] [--store URL]``: mixed traffic and periodic faults
against a real ``junction serve`` for N minutes (default 15), then the reconciliation (issue 11).

The stack (``bench/soak_stack.py``): one config with four scored pipelines fed at once by

* **file drops**: a CSV of 20 leads every 2 s into ``inbox/files``;
* **API ingest**: ``POST /api/v1/records/api`` (API key, Idempotency-Key), 4 leads every 0.5 s;
* **webhooks in**: ``POST /hooks/soak`` signed per Standard Webhooks, 2 leads every 0.4 s;
* **Kafka in**: one lead every 0.1 s on a tansu broker (``tests/fakes/kafka_broker.py``);

and every lead is delivered out as a signed webhook to the local receiver (``WebhookSink``:
verifies, dedupes by webhook-id, journals each new delivery with its arrival time).

Every ``fault_every_s`` (60 s; shorter soaks scale it down) one fault, in turn:

* ``receiver 503``: the receiver answers 503 for a third of the interval (at most 20 s);
* ``serve SIGKILL``: the serve process is killed with SIGKILL and started again;
* ``receiver hang``: the receiver holds each request 10 s (past the channel's 3 s timeout)
  for a third of the interval, then stores it (so the hub's resend is a duplicate);
* ``broker restart``: Kafka input is paused until the hub has delivered what the broker holds
  (tansu's storage is memory: a restart loses unread messages, a broker's own loss that the
  hub cannot reconcile), then the broker is killed and started on the same port, its log is
  refilled up to the old offsets (as durable storage would have kept them), and input resumes;
  the first message after it must come through within 90 s.  (The soak used to start the broker
  again while a fresh group got no partition: that was the hub's consumer leaving the group in
  the middle of a rejoin, which wedges a tansu 0.6 group for good; see ADR-0017.)

Then traffic stops, faults clear, the hub drains, serve is stopped with SIGTERM and
``junction reconcile --json`` runs for each pipeline (with the keys the senders recorded for the
API, hook and Kafka pipelines; the file ledger holds the file keys).  The report: throughput and
p50/p99 end-to-end latency per source, the serve process's RSS over time (first vs last minute,
with a verdict), the reconciliation, and the exactly-once check at the receiver.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.procs import free_port
from bench.soak_report import JournalTail, latencies_ms, markdown, memory, percentile
from bench.soak_stack import (
    PIPELINES,
    TOPIC,
    RssSampler,
    ServeProcess,
    log_digest,
    reconcile_cli,
    serve_env,
    write_config,
)
from bench.soak_traffic import (
    ApiPoster,
    FileDropper,
    HookPoster,
    KafkaSender,
    Sender,
    SourceStats,
)

# the broker restart first: it waits for the Kafka input to drain, quickest while all is calm
FAULTS = ("broker restart", "receiver 503", "serve SIGKILL", "receiver hang")
DRAIN_S = 240.0  # after traffic stops: the hub must deliver everything accepted within this
HANG_S = 10.0


def add_parser(sub: Any) -> None:
    """Register ``soak`` on the ``python -m bench`` subparsers."""
    p = sub.add_parser("soak", help="mixed traffic + periodic faults vs junction serve, reconciled")
    p.add_argument("--minutes", type=float, default=15.0, help="traffic duration (default 15)")
    p.add_argument("--store", default=None, help="store URL (default: SQLite in a temp dir)")
    p.add_argument("--fault-every", type=float, default=None, help="seconds between faults")
    p.add_argument("--report", default=None, help="also write the Markdown report here")
    p.add_argument("--keep", action="store_true", help="keep the work folder")


def run_args(args: argparse.Namespace) -> int:
    """``python -m bench soak`` with parsed arguments."""
    return run(
        minutes=args.minutes,
        store=args.store,
        fault_every_s=args.fault_every,
        report=Path(args.report) if args.report else None,
        keep=args.keep,
    )


def _fault_interval(minutes: float) -> float:
    # each fault once in a short soak (none closer than 12 s apart), one a minute in a long one
    return max(12.0, min(60.0, minutes * 60 / (len(FAULTS) + 1)))


@contextlib.contextmanager
def _store_url(store: str | None, work: Path) -> Iterator[str]:
    if store is None:
        yield f"sqlite:///{work / 'junction.db'}"
        return
    from bench.procs import fresh_schema

    with fresh_schema(store, f"bench_deliver_{secrets.token_hex(4)}") as url:
        yield url


def run(
    *,
    minutes: float = 15.0,
    store: str | None = None,
    fault_every_s: float | None = None,
    report: Path | None = None,
    keep: bool = False,
    figures: dict[str, Any] | None = None,
) -> int:
    """Run the soak; print its report, fill ``figures`` and return 0 when it passed."""
    figures = figures if figures is not None else {}
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="junction-soak-"))
    try:
        with _store_url(store, work) as url:
            _Soak(work, url, minutes, fault_every_s or _fault_interval(minutes)).run(figures)
    except Exception as exc:  # noqa: BLE001 - the report says what broke; the exit code too
        traceback.print_exc()
        figures.setdefault("problems", []).append(f"{type(exc).__name__}: {exc}")
        figures["passed"] = False
    finally:
        if not figures.get("passed"):
            figures["serve_log"] = log_digest(work / "serve.log")
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures["wall_s"] = time.monotonic() - started
    if not figures.get("passed") and figures.get("serve_log"):
        # what the hub said last (its own events, not librdkafka's): a failed soak explains itself
        print("\n--- junction serve log, last lines (librdkafka's own lines left out) ---")
        print(figures["serve_log"])
        print("--- end of the serve log ---")
    if "sources" in figures:
        how = (
            "Written by `python -m bench soak` (mixed traffic and periodic faults against a real "
            "`junction serve`; see `bench/soak.py`). Reproduce: `python -m bench soak --minutes "
            f"{minutes:g} --report docs/soak-report.md`."
        )
        text = "\n".join(["# Soak report", "", how, "", *markdown(figures, heading="#")])
        print("\n" + text)
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(text, encoding="utf-8")
            print(f"report written to {report}")
    return 0 if figures.get("passed") else 1


class _Soak:
    def __init__(self, work: Path, url: str, minutes: float, fault_every_s: float) -> None:
        self.work, self.url, self.minutes, self.fault_every_s = work, url, minutes, fault_every_s
        self.faults: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.t0 = 0.0

    def note(self, kind: str, detail: str) -> None:
        at = time.monotonic() - self.t0
        self.faults.append({"at_s": at, "kind": kind, "detail": detail})
        print(f"[{at:7.1f}s] {kind}: {detail}", flush=True)

    def run(self, figures: dict[str, Any]) -> None:
        from outbound.webhook.config import generate_secret
        from outbound.webhook.sink import WebhookSink
        from scoring.registry import ensure_default_model
        from tests.fakes.kafka_broker import KafkaBroker

        work = self.work
        print(f"soak: {self.minutes:g} min, faults every {self.fault_every_s:.0f} s, in {work}")
        ensure_default_model(work / "models", name="lead-score")
        api_key, client_id = _api_key(self.url)
        sink_secret, hook_secret = generate_secret(), generate_secret()
        port = free_port()
        env = serve_env(work)
        with contextlib.ExitStack() as stack:
            broker = stack.enter_context(KafkaBroker())
            broker.create_topic(TOPIC, partitions=1)
            sink = stack.enter_context(WebhookSink(sink_secret, work / "sink.jsonl"))
            cfg = write_config(
                work,
                store=self.url,
                models=work / "models",
                sink_url=sink.url,
                sink_secret=sink_secret,
                hook_secret=hook_secret,
                bootstrap=broker.bootstrap,
                port=port,
                signing_key=secrets.token_urlsafe(32),
            )
            serve = ServeProcess(cfg, port, work / "serve.log", env)
            stack.callback(serve.close)
            print(f"serve ready in {serve.start():.1f} s")
            base = f"http://127.0.0.1:{port}"
            stats = {n: SourceStats(n) for n in ("file", "api", "hook", "kafka")}
            kafka = KafkaSender(stats["kafka"], 0.1, broker.bootstrap, TOPIC)
            senders: list[Sender] = [
                FileDropper(stats["file"], 2.0, work / "inbox" / "files", 20),
                ApiPoster(stats["api"], 0.5, base, api_key, client_id, 4),
                HookPoster(stats["hook"], 0.4, base, hook_secret, 2),
                kafka,
            ]
            tail = JournalTail(work / "sink.jsonl")
            load_start = os.getloadavg()
            self.t0 = time.monotonic()
            sampler = RssSampler(serve, self.t0).start()
            for s in senders:
                s.start()
            end = self.t0 + self.minutes * 60
            self._fault_loop(end, serve, sink, broker, kafka, tail)
            traffic_s = time.monotonic() - self.t0
            for s in senders:
                if isinstance(s, ApiPoster | HookPoster):
                    s.give_up_at = time.monotonic() + 120
                s.stop_event.set()
            for s in senders:
                s.join(timeout=180)
                if s.error is not None:
                    self.problems.append(f"the {s.stats.name} sender failed: {s.error!r}")
            sink.faults.status, sink.faults.delay_s = None, 0.0
            if serve.pid is None:
                self.note("unexpected", "serve was not running at the end; started again")
                serve.start()
            drain_s = self._drain(stats, tail)
            sampler.stop()
            code = serve.stop()
            if code not in (0, None):
                self.problems.append(f"serve exited {code} on SIGTERM")
            load_end = os.getloadavg()
            recon = self._reconcile(cfg, stats, env)
            tail.poll()
            self._figures(
                figures,
                stats,
                tail,
                sink.stats(),
                sampler,
                recon,
                traffic_s,
                drain_s,
                load_start,
                load_end,
            )

    def _fault_loop(
        self,
        end: float,
        serve: ServeProcess,
        sink: Any,
        broker: Any,
        kafka: KafkaSender,
        tail: JournalTail,
    ) -> None:
        n = 0
        next_fault = self.t0 + self.fault_every_s
        hold = min(20.0, self.fault_every_s / 3)
        while True:
            now = time.monotonic()
            if now >= end:
                return
            tail.poll()
            if serve.pid is None:
                self.note("unexpected", f"serve exited on its own: {serve.tail(400)!r}")
                self.problems.append("serve exited without being killed")
                serve.start()
            if now < next_fault or end - now < hold + 5:
                time.sleep(max(0.05, min(1.0, next_fault - now, end - now)))
                continue
            kind = FAULTS[n % len(FAULTS)]
            n += 1
            if kind == "receiver 503":
                sink.faults.status = 503
                time.sleep(hold)
                sink.faults.status = None
                self.note(kind, f"503 for {hold:.0f} s")
            elif kind == "receiver hang":
                sink.faults.delay_s = HANG_S
                time.sleep(hold)
                sink.faults.delay_s = 0.0
                self.note(kind, f"each request held {HANG_S:.0f} s, for {hold:.0f} s")
            elif kind == "serve SIGKILL":
                serve.kill()
                took = serve.start()
                self.note(kind, f"killed; ready again in {took:.1f} s")
            else:
                self._broker_restart(broker, kafka, tail, end)
            next_fault = max(next_fault + self.fault_every_s, time.monotonic() + 5)

    def _broker_restart(
        self, broker: Any, kafka: KafkaSender, tail: JournalTail, end: float
    ) -> None:
        kafka.pause()
        left = kafka.flush(30)
        t0 = time.monotonic()
        limit = max(5.0, min(90.0, end - t0 - 10))
        while time.monotonic() - t0 < limit:
            tail.poll()
            if tail.has_all(list(kafka.stats.accepted)):
                break
            time.sleep(0.5)
        else:
            kafka.resume()
            self.note(
                "broker restart",
                f"skipped: Kafka input not drained in {limit:.0f} s ({left} unacknowledged)",
            )
            if limit >= 60:  # a short soak's last seconds may just be too few
                self.problems.append("Kafka input did not drain before a broker restart")
            return
        drained = time.monotonic() - t0
        with kafka.stats.lock:
            high = 1 + max((int(k.rsplit(":", 1)[1]) for k in kafka.stats.keys), default=-1)
        kafka.reset_producer()
        broker.restart()
        broker.create_topic(TOPIC, partitions=1)
        _refill(broker.bootstrap, high)
        before = len(kafka.stats.accepted)
        kafka.resume()
        t1 = time.monotonic()
        probe_ok = False
        while time.monotonic() - t1 < 90:
            tail.poll()
            with kafka.stats.lock:
                after = kafka.stats.accepted[before:]
            if after and after[0] in tail.delivered:
                probe_ok = True
                break
            time.sleep(0.5)
        detail = f"drained in {drained:.1f} s, log refilled to offset {high}; first message "
        detail += "after it delivered "
        detail += f"{time.monotonic() - t1:.1f} s after resuming" if probe_ok else "NOT in 90 s"
        if not probe_ok:
            self.problems.append("Kafka input did not resume within 90 s of a broker restart")
        self.note("broker restart", detail)

    def _drain(self, stats: dict[str, SourceStats], tail: JournalTail) -> float:
        t0 = time.monotonic()
        want = [e for s in stats.values() for e in s.accepted]
        while time.monotonic() - t0 < DRAIN_S:
            tail.poll()
            if tail.has_all(want):
                break
            time.sleep(0.5)
        else:
            self.problems.append(f"not everything was delivered {DRAIN_S:.0f} s after traffic")
        # late resends (a held request answered after its timeout) land in the next seconds
        time.sleep(2)
        tail.poll()
        return time.monotonic() - t0

    def _reconcile(
        self, cfg: Path, stats: dict[str, SourceStats], env: dict[str, str]
    ) -> dict[str, dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        source_of = {"files": "file", "api": "api", "hooks": "hook", "kafka": "kafka"}
        keys: dict[str, Path | None] = {}
        for pipeline in PIPELINES:
            keys[pipeline] = None
            if pipeline != "files":
                path = keys[pipeline] = cfg.parent / f"keys-{pipeline}.txt"
                path.write_text("\n".join(stats[source_of[pipeline]].keys) + "\n", "utf-8")
        # one `junction reconcile` per pipeline (--keys takes one), side by side
        with ThreadPoolExecutor(len(PIPELINES)) as pool:
            done = {p: pool.submit(reconcile_cli, cfg, p, keys[p], env) for p in PIPELINES}
        return {p: f.result() for p, f in done.items()}

    def _figures(
        self,
        f: dict[str, Any],
        stats: dict[str, SourceStats],
        tail: JournalTail,
        sink_stats: dict[str, int],
        sampler: RssSampler,
        recon: dict[str, dict[str, Any]],
        traffic_s: float,
        drain_s: float,
        load_start: tuple[float, float, float],
        load_end: tuple[float, float, float],
    ) -> None:
        sources: dict[str, Any] = {}
        every: list[float] = []
        accepted_all: set[str] = set()
        for name, s in stats.items():
            lat = latencies_ms(s.accepted, tail)
            every += lat
            accepted_all.update(s.accepted)
            sources[name] = {
                "accepted": len(s.accepted),
                "delivered": sum(1 for e in s.accepted if e in tail.delivered),
                "rate": len(s.accepted) / traffic_s,
                "p50_ms": percentile(lat, 0.50),
                "p99_ms": percentile(lat, 0.99),
                "max_ms": max(lat) if lat else None,
                "retries": s.retries,
                "rejected": s.rejected,
            }
            if s.rejected:
                self.problems.append(f"{name}: {s.rejected} refused ({s.last_error[:120]})")
        n_acc = len(accepted_all)
        total = {
            "accepted": n_acc,
            "delivered": sum(1 for e in accepted_all if e in tail.delivered),
            "rate": n_acc / traffic_s,
            "p50_ms": percentile(every, 0.50),
            "p99_ms": percentile(every, 0.99),
            "max_ms": max(every) if every else None,
        }
        exactly = {
            "missing": sum(1 for e in accepted_all if e not in tail.delivered),
            "unknown": sum(1 for e in tail.delivered if e not in accepted_all),
            "duplicate_effects": sum(1 for ids in tail.webhook_ids.values() if len(ids) > 1),
            "receiver_duplicates": sink_stats.get("duplicates", 0),
            "receiver_injected": sink_stats.get("injected", 0),
            "receiver_lines": tail.lines,
        }
        mem = memory([asdict(x) for x in sampler.samples], traffic_s)
        for k in ("missing", "unknown", "duplicate_effects"):
            if exactly[k]:
                self.problems.append(f"{exactly[k]} {k.replace('_', ' ')}")
        for name, r in recon.items():
            if not r.get("clean"):
                self.problems.append(f"reconciliation of {name} not clean")
        if mem["verdict"] == "growing":
            self.problems.append("memory grows")
        f.update(
            {
                "minutes": round(traffic_s / 60, 2),
                "drain_s": drain_s,
                "store_kind": self.url.split(":", 1)[0].split("+", 1)[0],
                "fault_every_s": self.fault_every_s,
                "cores": os.cpu_count(),
                "load_start": ", ".join(f"{x:.2f}" for x in load_start),
                "load_end": ", ".join(f"{x:.2f}" for x in load_end),
                "sources": sources,
                "total": total,
                "faults": self.faults,
                "memory": mem,
                "exactly_once": exactly,
                "reconcile": recon,
                "problems": self.problems,
                "passed": not self.problems,
            }
        )


def _refill(bootstrap: str, high: int) -> None:
    """Give the restarted broker's (empty, memory) log the offsets it had: ``high`` filler
    messages, all below the hub's saved cursor, so they are never read.

    A durable broker keeps its log across a restart; tansu's memory storage does not, and a
    consumer whose cursor is past the new log's end would wait (correctly) for offsets the
    old log had.  Refilling makes the restart look as it would with real storage.

    Raises:
        RuntimeError: The broker did not take them all.
    """
    if high <= 0:
        return
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    for _ in range(high):
        producer.produce(TOPIC, value=b'{"filler": true}')
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the restarted broker did not take the refill")


def _api_key(url: str) -> tuple[str, str]:
    """Migrate the store and create an ``ingest`` API key; (key, client id)."""
    from junction.store.clients import ClientStore
    from junction.store.repo import Store

    store = Store.open(url)
    try:
        client, key = ClientStore(store).create("soak", ["ingest"], kind="apikey")
    finally:
        store.close()
    return key, client.id
