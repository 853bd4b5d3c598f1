"""Kafka stage benchmark: ``junction worker --role score`` (and ``normalize,score``) beside raw
confluent-kafka consume+produce.

Input: ``--records`` lead messages (default 100,000) built from ``bench/data/leads-200000.csv``,
in the stage formats the roles write: raw (``<prefix>.raw.lead.v1``, what ``ingest`` writes:
key ``<pipeline>:<source key>``, headers ``junction-pipeline`` and ``junction-record-id``, value
``{pipeline, record_id, key, stream, position, version, provenance, record}``) and canonical
(``<prefix>.canonical.lead.v1``, what ``normalize`` writes: the canonical record, its source key,
entity and schema version), with the same keys and record ids.  Rows the ``csv.lead`` mapping
would quarantine are left out, so every input message must come out scored.

The goal's pipeline, consume → score → produce, is the ``score`` role: canonical messages in,
scored ones out, each score stored and each output produced through the transactional outbox
relay.  ``normalize,score`` fuses the two roles: it also maps and validates every raw row and
stores the canonical record, the stricter line.

Measured in the same run, each on a fresh tansu broker (``tests/fakes/kafka_broker.py``, memory
storage, 127.0.0.1) with the input produced before the clock starts:

* **raw**: one process (``bench.kafka_raw``) consuming the input topic in a consumer group and
  producing every message unchanged to an output topic (idempotent producer, ``acks=all``),
  once on each kind of input message before the hub runs and once after;
* **hub**: ``junction worker CONFIG --role ROLES --pipeline bench`` for each role set with 1
  process, then with 2 processes in one consumer group (the store is a fresh SQLite file each
  time, or a fresh schema of ``--store``'s PostgreSQL database).

The clock runs from spawning the process(es) until this process has read every expected record
id on the output topic (a consumer assigned to every partition), so start-up and the group join
are included; the rate after the first output message ("steady") is printed too.  The output
set must equal the input set (duplicates are counted and reported).  Goal (issue 8): the
``score`` role with one process ≥ 0.25 x the best raw run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.procs import fresh_schema

DATA = Path(__file__).parent / "data" / "leads-200000.csv"
ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "bench"
ENTITY = "lead"
PARTITIONS = 6  # BusConfig's default
STALL_S = 120.0  # no new output message for this long: the run failed
# a fresh group's first join waits about session.timeout.ms / 2 on tansu (CLIENTS.md §7): the
# same short value for the raw baseline and the workers keeps start-up small and equal
SESSION_TIMEOUT_MS = 6000

CONFIG = """\
store: "{store}"
models_dir: models
bus:
  bootstrap_servers: "{bootstrap}"
  topic_prefix: {prefix}
  group_prefix: {prefix}
  partitions: {partitions}
  options: {{session.timeout.ms: {session_ms}}}
pipelines:
  {pipeline}:
    source: {{connector: csv_file, path: inbox/*.csv}}
    mapping: csv.lead
    scoring: {{scorer: rules_lead}}
"""

Message = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


class BenchError(RuntimeError):
    """The benchmark could not complete (a process failed, or output went missing)."""


@dataclass
class Outcome:
    """One measured run: how long it took and what came out."""

    label: str
    records: int
    seconds: float  # spawn → last expected record read
    steady_seconds: float  # first output → last expected record read
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    cpu_seconds: float = 0.0  # CPU (user + system) of the process(es), first output → end
    after_first: int = 0  # records that came out after the first output was read
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Records per second, start-up included."""
        return self.records / self.seconds

    @property
    def steady_rate(self) -> float:
        """Records per second after the first output message."""
        return self.after_first / max(self.steady_seconds, 1e-9)

    @property
    def per_cpu_second(self) -> float:
        """Records per CPU second of the measured process(es) after the first output: the
        figure a busy, shared machine disturbs least."""
        # psutil counts in clock ticks: below a few ticks the figure means nothing (0: n/a)
        return self.after_first / self.cpu_seconds if self.cpu_seconds >= 0.05 else 0.0

    @property
    def exact(self) -> bool:
        """The output set equals the input set."""
        return not (self.missing or self.unexpected)


def ensure_data() -> None:
    """Write the lead file ``bench e2e --rows 200000`` uses, when it is not there yet."""
    if DATA.exists():
        return
    from scoring.synthetic import write_lead_csv

    DATA.parent.mkdir(parents=True, exist_ok=True)
    part = DATA.with_name(f"{DATA.name}.{os.getpid()}.part")
    write_lead_csv(part, 200_000, seed=2026, messy=True)
    part.replace(DATA)  # atomic: a concurrent run sees no half-written file


def source_rows(n: int) -> tuple[list[dict[str, str]], str]:
    """The first ``n`` rows of the lead CSV that the ``csv.lead`` mapping accepts (cycled, with
    unique ``lead_id`` values, past the file's end), and the file's sha256 prefix."""
    from mappings.engine import compile_mapping, load_spec

    mapping = compile_mapping(load_spec("csv.lead"))
    ensure_data()
    sha = hashlib.sha256(DATA.read_bytes()).hexdigest()[:16]
    good: list[dict[str, str]] = []
    step = min(5000, 2 * n + 10)
    with DATA.open(newline="", encoding="utf-8") as f:
        chunk: list[dict[str, str]] = []
        for row in csv.DictReader(f):
            chunk.append(row)
            if len(chunk) == step:
                good += [chunk[i] for i, _ in mapping.apply_batch(chunk)[0]]
                chunk = []
                if len(good) >= n:
                    break
        if chunk and len(good) < n:
            good += [chunk[i] for i, _ in mapping.apply_batch(chunk)[0]]
    if not good:
        raise BenchError(f"no row of {DATA} passes the csv.lead mapping")
    out = good[:n]
    cycle = 1
    while len(out) < n:
        out += [{**r, "lead_id": f"{r['lead_id']}-{cycle}"} for r in good[: n - len(out)]]
        cycle += 1
    return out, sha


def raw_messages(rows: Sequence[dict[str, str]], sha: str, pipeline: str) -> list[Message]:
    """Raw stage messages for ``rows``, as the ``ingest`` role writes them."""
    provenance = {
        "connector": "csv_file",
        "file": str(DATA),
        "sha256": sha,
        "encoding": "utf-8",
        "delimiter": ",",
    }
    out: list[Message] = []
    for position, row in enumerate(rows, start=1):
        key = f"{sha}:{position}"
        record_id = f"{pipeline}:{key}"
        value = {
            "pipeline": pipeline,
            "record_id": record_id,
            "key": key,
            "stream": DATA.name,
            "position": position,
            "version": None,
            "provenance": provenance,
            "record": row,
        }
        headers: list[tuple[str, str | bytes | None]] = [
            ("junction-pipeline", pipeline.encode()),
            ("junction-record-id", record_id.encode()),
        ]
        out.append((record_id.encode(), orjson.dumps(value), headers))
    return out


def canonical_messages(rows: Sequence[dict[str, str]], sha: str, pipeline: str) -> list[Message]:
    """Canonical stage messages for ``rows``, as the ``normalize`` role writes them (the same
    record ids and keys as :func:`raw_messages`)."""
    from junction.pipeline.stages.topics import HEADER_STAGE, Item, encode
    from mappings.engine import compile_mapping, load_spec

    mapping = compile_mapping(load_spec("csv.lead"))
    to_json = mapping.model.__pydantic_serializer__.to_json
    good, bad = mapping.apply_batch(list(rows))
    if bad:
        raise BenchError(f"{len(bad)} source rows no longer pass the csv.lead mapping")
    source_keys = mapping.keys_of(list(rows))
    out: list[Message] = []
    for (i, model), sk in zip(good, source_keys, strict=True):
        position = i + 1
        key = f"{sha}:{position}"
        item = Item(
            pipeline=pipeline,
            record_id=f"{pipeline}:{key}",
            key=key,
            stream=DATA.name,
            position=position,
            version=None,
            provenance={"connector": "csv_file", "file": str(DATA), "sha256": sha},
            body=to_json(model, exclude_none=True),
            source_key=sk or key,
            entity=ENTITY,
            schema_version=getattr(model, "schema_version", None),
        )
        headers: list[tuple[str, str | bytes | None]] = [
            ("junction-pipeline", pipeline.encode()),
            ("junction-record-id", item.record_id.encode()),
            (HEADER_STAGE, b"canonical"),
        ]
        out.append((item.record_id.encode(), encode(item, "canonical"), headers))
    return out


def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    """Write ``messages`` to ``topic`` and wait for every ack.

    Raises:
        BenchError: The broker did not take them all.
    """
    from confluent_kafka import KafkaError, Producer

    failed: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True}
    )
    for key, value, headers in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if left or failed:
        raise BenchError(f"producing the input failed: {left} unsent, errors {failed[:3]}")


def _record_id(msg: Any) -> str:
    for name, value in msg.headers() or ():
        if name == "junction-record-id" and value is not None:
            return bytes(value).decode()
    return bytes(msg.key() or b"").decode()


def collect(
    bootstrap: str,
    topic: str,
    expected: set[str],
    procs: Sequence[subprocess.Popen[bytes]],
    started: float,
    label: str,
) -> Outcome:
    """Read ``topic`` (every partition, from offset 0) until every expected id has arrived.

    Raises:
        BenchError: A process exited with an error, or nothing new arrived for 120 s.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-counter-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    seen: set[str] = set()
    duplicates = unexpected = 0
    first: float | None = None
    cpu_first = 0.0
    base = 0  # records already out when the first output was read
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        last_progress = time.monotonic()
        got = 0  # distinct expected ids read
        while got < len(expected):
            batch = consumer.consume(num_messages=1000, timeout=0.2)
            now = time.monotonic()
            for msg in batch:
                if msg.error() is not None:
                    continue
                rid = _record_id(msg)
                if rid in seen:
                    duplicates += 1
                elif rid not in expected:
                    unexpected += 1
                else:
                    got += 1
                seen.add(rid)
            if batch:
                if first is None:
                    first, cpu_first, base = now, _cpu(procs), len(seen)
                last_progress = now
            for proc in procs:
                code = proc.poll()
                if code is not None and code != 0:
                    raise BenchError(f"{label}: process {proc.pid} exited with {code}")
            if now - last_progress > STALL_S:
                raise BenchError(f"{label}: stalled at {got:,} of {len(expected):,} records")
        end = time.monotonic()
        cpu = _cpu(procs) - cpu_first
        # a short grace read: duplicates right behind the last expected record still count
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            if msg.error() is None:
                rid = _record_id(msg)
                duplicates += rid in seen
                unexpected += rid not in expected
                seen.add(rid)
    finally:
        consumer.close()
    return Outcome(
        label=label,
        records=len(expected),
        seconds=end - started,
        steady_seconds=end - (first if first is not None else started),
        duplicates=duplicates,
        missing=len(expected - seen),
        unexpected=unexpected,
        cpu_seconds=cpu,
        after_first=len(expected) - base,
    )


def _cpu(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds the processes (and their threads) used so far."""
    import psutil

    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(proc.pid).cpu_times()
            total += t.user + t.system
    return total


@contextlib.contextmanager
def _broker() -> Iterator[Any]:
    """A fresh tansu broker (memory storage: nothing of a previous measurement is left)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fakes.kafka_broker import KafkaBroker

    broker = KafkaBroker()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure_raw(
    messages: Sequence[Message], expected: set[str], work: Path, label: str = "raw"
) -> Outcome:
    """Raw confluent-kafka consume + produce in one process."""
    with _broker() as broker:
        src, dst = "raw.in.v1", "raw.out.v1"
        broker.create_topic(src, PARTITIONS)
        broker.create_topic(dst, PARTITIONS)
        produce(broker.bootstrap, src, messages)
        log = (work / f"{label.replace(' ', '-')}.log").open("wb")
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.kafka_raw",
                broker.bootstrap,
                src,
                dst,
                "bench-raw",
                str(len(messages)),
                str(SESSION_TIMEOUT_MS),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            return collect(broker.bootstrap, dst, expected, [proc], started, label)
        finally:
            _stop([proc])
            log.close()


def _worker_command(config: Path, roles: str, profile: Path | None = None) -> list[str]:
    head = [sys.executable, "-m", "junction.cli.main"]
    if profile is not None:
        head = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "junction.cli.main"]
    return [*head, "worker", str(config), "--role", roles, "--pipeline", PIPELINE]


def _input_stage(roles: str) -> str:
    """The stage topic a worker with ``roles`` reads (``raw`` or ``canonical``)."""
    from junction.pipeline.stages.topics import ROLE_INPUT, parse_roles

    return str(ROLE_INPUT[parse_roles(roles)[0]])


def measure_hub(
    messages: Sequence[Message],
    expected: set[str],
    work: Path,
    processes: int,
    store: str | None,
    profile: Path | None = None,
    roles: str = "score",
) -> Outcome:
    """``junction worker --role ROLES`` with ``processes`` processes in one group, reading the
    first role's stage topic (``messages`` must be that stage's)."""
    label = f"{roles} x{processes}"
    token = uuid.uuid4().hex[:8]
    prefix = f"b{processes}{token}"
    run_dir = work / prefix
    (run_dir / "inbox").mkdir(parents=True)
    with _broker() as broker, _own_schema(store, token, run_dir) as url:
        config = run_dir / "junction.yaml"
        config.write_text(
            CONFIG.format(
                store=url,
                bootstrap=broker.bootstrap,
                prefix=prefix,
                partitions=PARTITIONS,
                pipeline=PIPELINE,
                session_ms=SESSION_TIMEOUT_MS,
            ),
            encoding="utf-8",
        )
        # migrate the fresh store once, before the workers race to (SQLite has no migration lock)
        _migrate(url)
        src = f"{prefix}.{_input_stage(roles)}.{ENTITY}.v1"
        dst = f"{prefix}.scored.{ENTITY}.v1"
        broker.create_topic(src, PARTITIONS)
        broker.create_topic(dst, PARTITIONS)
        produce(broker.bootstrap, src, messages)
        logs = [(run_dir / f"worker-{i}.log").open("wb") for i in range(processes)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                _worker_command(config, roles, profile if i == 0 else None),
                cwd=run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            for i, log in enumerate(logs)
        ]
        try:
            return collect(broker.bootstrap, dst, expected, procs, started, label)
        except BenchError as exc:
            tails = [
                f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                for p in sorted(run_dir.glob("worker-*.log"))
            ]
            raise BenchError(f"{exc}\n" + "\n".join(tails)) from exc
        finally:
            _stop(procs)
            for log in logs:
                log.close()


def _migrate(url: str) -> None:
    from junction.store.repo import Store

    Store.open(url).close()


@contextlib.contextmanager
def _own_schema(url: str | None, token: str, run_dir: Path) -> Iterator[str]:
    """A fresh store per measurement: a SQLite file in ``run_dir``, or a PostgreSQL schema of
    ``url`` created now and dropped afterwards."""
    if url is None:
        yield f"sqlite:///{run_dir / 'junction.db'}"
        return
    with fresh_schema(url, f"bench_kafka_{token}") as own:
        yield own


def _line(o: Outcome) -> str:
    check = "ok" if o.exact and not o.duplicates else "MISMATCH"
    return (
        f"{o.label:<19}: {o.rate:>8,.0f} records/s ({o.seconds:6.2f} s incl. start and join); "
        f"steady {o.steady_rate:>8,.0f} records/s, {o.per_cpu_second:>8,.0f} records/CPU-s; "
        f"output = input: {check} (missing {o.missing}, unexpected {o.unexpected}, "
        f"duplicates {o.duplicates})"
    )


# an outcome's figures that the summary and the report compare
FIGURES = ("rate", "steady_rate", "per_cpu_second")
# ``score`` is the goal's pipeline (consume canonical → score → produce scored); the fused
# ``normalize,score`` also maps and validates each raw row on the way
ROLE_SETS = ("score", "normalize,score")


def run(
    *,
    records: int,
    processes: Sequence[int],
    store: str | None,
    keep: bool,
    raw_only: bool,
    profile: str | None = None,
    figures: dict[str, Any] | None = None,
    role_sets: Sequence[str] = ROLE_SETS,
    repeat: int = 1,
) -> int:
    """Run the benchmark, print records/s, the hub/raw ratios and the 1 → 2 process scaling.

    Each role set reads its first role's stage topic: ``score`` the canonical messages the
    ``normalize`` role writes, ``normalize,score`` the raw ones.  Raw consume+produce runs on
    each kind of message before and after the hub runs; the best of all those runs is the
    denominator (so the ratios err low).  With ``repeat`` > 1 every hub run is repeated in
    rounds, each round followed by raw runs, and the ratios and the scaling are taken from the
    medians of each hub figure (on this shared VM one run's rate moves by a third).

    ``figures``, when given, receives each run's figures (by label) as data.

    Returns:
        0 when every run's output set equals its input set with no duplicate, else 1.
    """
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="junction-bench-kafka-"))
        if keep:
            stack.callback(print, f"work folder kept: {work}")
        else:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        rows, sha = source_rows(records)
        inputs = {_input_stage(r) for r in role_sets} or {"raw"}
        by_stage = {
            stage: (raw_messages if stage == "raw" else canonical_messages)(rows, sha, PIPELINE)
            for stage in sorted(inputs, reverse=True)
        }
        expected = {m[0].decode() for m in next(iter(by_stage.values()))}
        sizes = ", ".join(
            f"{stage} ~{sum(len(m[1]) for m in msgs) // len(msgs)} B"
            for stage, msgs in by_stage.items()
        )
        print(
            f"{len(expected):,} lead messages ({sizes}), {PARTITIONS} partitions, tansu "
            f"(memory), store {(store or 'sqlite').split(':')[0]}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        outcomes: list[Outcome] = []

        def raw_runs(when: str) -> None:
            for stage, msgs in by_stage.items():
                outcomes.append(measure_raw(msgs, expected, work, f"raw ({stage}) {when}"))
                print(_line(outcomes[-1]), flush=True)

        raw_runs("before")
        hubs: dict[tuple[str, int], list[Outcome]] = {}
        for round_ in range(1, repeat + 1) if not raw_only else ():
            for roles in role_sets:
                msgs = by_stage[_input_stage(roles)]
                for n in processes:
                    first = roles == role_sets[0] and n == processes[0] and round_ == 1
                    prof = Path(profile) if profile and first else None
                    o = measure_hub(msgs, expected, work, n, store, prof, roles)
                    if repeat > 1:
                        o.label = f"{o.label} #{round_}"
                    hubs.setdefault((roles, n), []).append(o)
                    outcomes.append(o)
                    print(_line(o), flush=True)
            raw_runs("after" if repeat == 1 else f"after #{round_}")
        raws = [o for o in outcomes if o.label.startswith("raw")]

        def best(attr: str) -> float:
            return max(float(getattr(o, attr)) for o in raws)

        # each hub figure: its median over the rounds (its only value without --repeat)
        medians = {
            key: {a: statistics.median(getattr(o, a) for o in runs) for a in FIGURES}
            for key, runs in hubs.items()
        }
        of = f" (medians of {repeat})" if repeat > 1 else ""
        for (roles, n), m in medians.items():
            goal = "  (goal >= 0.25)" if n == 1 and roles == "score" else ""
            print(
                f"{roles} x{n}{of} / best raw: {_ratio(m['rate'], best('rate'))} wall, "
                f"{_ratio(m['steady_rate'], best('steady_rate'))} steady, "
                f"{_ratio(m['per_cpu_second'], best('per_cpu_second'))} per CPU-s{goal}; "
                f"per process {m['steady_rate'] / n:,.0f} records/s steady"
            )
        for roles in role_sets:
            one, two = medians.get((roles, 1)), medians.get((roles, 2))
            if one is not None and two is not None:
                print(
                    f"{roles} scaling 1 → 2 processes{of}: "
                    f"x{_ratio(two['rate'], one['rate'], 2)} wall, "
                    f"x{_ratio(two['steady_rate'], one['steady_rate'], 2)} steady "
                    f"(CPU per record x"
                    f"{_ratio(one['per_cpu_second'], two['per_cpu_second'], 2)})"
                )
        if figures is not None:
            for o in outcomes:
                figures[o.label] = {
                    **{a: getattr(o, a) for a in FIGURES},
                    "exact": o.exact and not o.duplicates,
                }
            if repeat > 1:  # the report reads each hub run by its plain label: the medians
                for (roles, n), m in medians.items():
                    figures[f"{roles} x{n}"] = {
                        **m,
                        "exact": all(o.exact and not o.duplicates for o in hubs[(roles, n)]),
                    }
            figures["records"] = len(expected)
    return 0 if all(o.exact and not o.duplicates for o in outcomes) else 1


def _ratio(a: float, b: float, digits: int = 3) -> str:
    """``a / b``, or n/a when ``b`` is 0 (a run too small to have a steady part)."""
    return f"{a / b:.{digits}f}" if a > 0 and b > 0 else "n/a"


def add_parser(sub: Any) -> None:
    """Register ``kafka`` on ``python -m bench``'s subparsers."""
    p = sub.add_parser("kafka", help="worker normalize,score over Kafka vs raw consume+produce")
    _options(p)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--processes", default="1,2", help="hub worker process counts, in order")
    p.add_argument("--store", default=None, help="store URL (default: SQLite in a temp dir)")
    p.add_argument("--raw-only", action="store_true", help="only the raw baseline")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--profile", default=None, help="cProfile the first hub worker to this file")
    p.add_argument(
        "--roles",
        default=";".join(ROLE_SETS),
        help="worker role sets to measure, ';'-separated (default: score;normalize,score)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of hub runs, each followed by raw runs; ratios from the medians",
    )


def run_args(args: argparse.Namespace) -> int:
    """Run from parsed ``kafka`` options; a failed run prints why and returns 1."""
    try:
        return run(
            records=args.records,
            processes=[int(n) for n in args.processes.split(",") if n],
            store=args.store,
            keep=args.keep,
            raw_only=args.raw_only,
            profile=args.profile,
            role_sets=[r.strip() for r in args.roles.split(";") if r.strip()],
            repeat=max(1, args.repeat),
        )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.kafka [options]`` (the same as ``python -m bench kafka``)."""
    parser = argparse.ArgumentParser(prog="python -m bench kafka")
    _options(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
