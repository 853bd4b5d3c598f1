"""Issue 11 fault suite: SIGKILL a Kafka stage worker at random points, across many seeds.

The file-drop hub's kill points are ``test_kill_points.py``; this is the same fault for the
stage chain of ADR-0018: a ``normalize,score`` worker consumes raw lead messages, writes
records, scores and ``stage_relay`` rows in one transaction, publishes the relay rows to the
scored topic, then commits its offsets.  Per seed the worker (a forked copy of this process, so
a seed costs the group's join, not an interpreter start) is killed after a random delay: before
it joined, mid-batch, between the store's commit and the publish, between the publish and the
offset commit, or after it finished.  A second worker then takes the partitions over and runs
until idle.  Then:

- every raw message is a record (scored) or in quarantine, never both, never neither; one
  record, one score and one relay row per record (a second would be a duplicated effect);
- the scored topic holds every record that went on; it repeats at most what the killed worker
  had published but not yet marked (the relay's one allowed duplicate, harmless downstream as
  every consumer writes effects keyed by record id), and nothing is left unpublished;
- each lead's versions leave in the order they came in, on one partition;
- ``junction reconcile`` of the pipeline is clean.

A second, smaller kind runs the same faults with encryption at rest on (``privacy: {kek: ...}``,
the KEK from the environment or a file, turned on before the workers start or by the first
one): the same checks hold; then a ``deliver`` worker, SIGKILLed after a random delay and
followed by another, routes the scored topic into the outbox (one delivery per lead: a lead's
versions carry the same content; the sink is unreachable, so some dead-letter into quarantine).
Every stored record, outbox row and quarantined message opens to what was fed in, every scored
message carries its lead's email (relay values opened, none garbled or skipped), and no email or
phone fed in (as fed, or as normalized) is readable in clear anywhere in the database (a dump:
records, deliveries, quarantine, stage_relay and the rest), even where a kill left a batch
half-done.

A third kind splits the chain in two roles: a ``normalize`` worker writes the canonical topic
undisturbed, then the worker killed at a random point (and the ones after it) is a ``score``
worker reading those canonical messages in one pass (``MessageReader``, ADR-0031); the same
checks hold, with one relay row a record for each of the two topics.

Seeds alternate between a SQLite store and a PostgreSQL schema of their own, and run in
forked processes with one tansu broker each (``tests/fakes/kafka_broker.py``), so a seed's
fault never reaches another's broker.
"""

from __future__ import annotations

import faulthandler
import os
import random
import secrets
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, select, text

from junction.store import tables as t
from junction.store.crypto_rows import enable_privacy
from junction.store.repo import Store
from tests.fakes.kafka_broker import KafkaBroker
from tests.faults.support import SEEDS, fork, map_seeds, reconciled, wait_child
from tests.integration.helpers import UNPUBLISHED_RELAY, rows_of, scalar
from tests.privacy.conftest import dump
from tests.stages.support import produce, raw_messages, read_topic, write_config

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(900)]

SUBJECTS = 100
VERSIONS = 4
PARTITIONS = 3
SESSION_MS = 2000  # a dead member's partitions move after this (and the join waits ~half)
# the rebalance timeout: a join that waits on a member killed mid-join gives up on it after
# this (librdkafka's default 300 s, the workers' 120 s, would outlast the wait below)
REBALANCE_MS = 20_000
WORKER_WAIT_S = 120  # how long a later worker may take to drain what is left
EARLY_S = 2.0  # an early kill lands within this long of the start: before or while it joins
# later workers started, one after another, until everything is stored: one that idles out
# before its first fetch answered (a loaded machine, five seeds' brokers at once: the CI run of
# 2026-12-06 saw three in a row assigned every partition and gone 0.95 s later, with nothing
# read) is followed by another; messages lost for good would still fail the check after these
FOLLOWERS = 8
# a later worker idles out after this long with nothing read; longer than the first worker's
# second, so a later worker whose first fetch answers slowly still reads (the CI run of
# 2026-12-07 saw seven ``deliver`` workers in a row gone ~1 s after their assignment; since
# ADR-0036 a worker also waits until nothing is left unread on its partitions)
FOLLOWER_IDLE_S = 3.0
PG_URL = os.environ.get("JUNCTION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# seeds mostly wait (joins, session timeouts): more processes than the other kinds use
STAGE_PROCS = int(os.environ.get("JUNCTION_FAULT_STAGE_PROCS", "5"))
# the encrypted kind: fewer seeds (numbered from SEALED_BASE, so their kills differ); 8 seeds
# run each of store (SQLite, PostgreSQL) x KEK (file, env) x turned on (setup, first worker) once
SEALED_SEEDS = int(os.environ.get("JUNCTION_FAULT_SEALED_SEEDS", str(max(2, SEEDS // 6))))
SEALED_BASE = 1000
KEK_ENV = "JUNCTION_TEST_STAGE_KILL_KEK"
# the split chain (a killed ``score`` worker): as few seeds as the encrypted kind
SPLIT_SEEDS = int(os.environ.get("JUNCTION_FAULT_SPLIT_SEEDS", str(max(2, SEEDS // 6))))
SPLIT_BASE = 2000

_broker: KafkaBroker | None = None


def _process_broker() -> KafkaBroker:
    """This process's own broker, started on first use (it dies with the process)."""
    global _broker
    if _broker is None:
        _broker = KafkaBroker()
        _broker.start()
    return _broker


ROLES = ("normalize", "score")


def _run_worker(
    cfg: Path, idle_exit_s: float, roles: tuple[str, ...]
) -> None:  # pragma: no cover - runs in a child
    """The body of ``junction worker CFG --role normalize,score`` (``roles``) in a forked child."""
    code = 0
    # a worker still running when the parent gives up on it leaves its threads' stacks behind
    stacks = (cfg.parent / f"worker-{os.getpid()}.stack").open("w")
    faulthandler.dump_traceback_later(WORKER_WAIT_S - 5, file=stacks)
    try:
        from junction.pipeline.hub import Hub
        from junction.serve.stage_worker import run_stage_worker

        hub = Hub.from_file(cfg)
        try:
            run_stage_worker(hub, roles, threading.Event(), idle_exit_s=idle_exit_s)
        finally:
            hub.close()
    except BaseException:  # the exit code tells the parent, the file what
        import traceback

        (cfg.parent / f"worker-{os.getpid()}.err").write_text(traceback.format_exc())
        code = 4
    os._exit(code)


def _fork_worker(cfg: Path, idle_exit_s: float, roles: tuple[str, ...] = ROLES) -> int:
    pid = fork()
    if pid == 0:  # pragma: no cover - the child
        _run_worker(cfg, idle_exit_s, roles)
    return pid


def _store_url(root: Path, seed: int) -> tuple[str, str | None]:
    """A fresh store for the seed: SQLite for even seeds, a new PostgreSQL schema for odd."""
    if seed % 2 == 0:
        return f"sqlite:///{root / 'j.db'}", None
    schema = f"stage_kill_{seed}_{uuid.uuid4().hex[:6]}"
    _on_pg(f'CREATE SCHEMA "{schema}"')
    return f"{PG_URL}?options=-csearch_path%3D{schema}", schema


def _on_pg(ddl: str) -> None:
    eng = create_engine(PG_URL)
    try:
        with eng.begin() as conn:
            conn.execute(text(ddl))
    finally:
        eng.dispose()


def _seed(
    root: Path, models: Path, seed: int, sealed: bool = False, split: bool = False
) -> tuple[str | None, int, float]:
    """One seed: (problem or None, the killed worker's exit status, when it was killed).

    ``split``: the chain runs as two roles; a ``normalize`` worker writes the canonical topic
    first, undisturbed, and the worker killed (and its followers) is a ``score`` one, which
    reads those canonical messages (``MessageReader``, ADR-0031).

    ``sealed``: with encryption at rest on, under a KEK from the environment (``KEK_ENV``, set
    by the test) for every other pair of seeds, else from a file of the seed's own; turned on
    before the workers start for every other four seeds, else by the first worker's start (from
    its config), so an early kill can land in it.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True)
    broker = _process_broker()
    prefix = f"sk{seed}x{uuid.uuid4().hex[:6]}"
    batch = rng.choice([10, 25, 60])
    url, schema = _store_url(root, seed)
    try:
        cfg = write_config(
            root,
            store=url,
            bootstrap=broker.bootstrap,
            models=models,
            prefix=prefix,
            partitions=PARTITIONS,
            batch=batch,
        )
        kek = (f"env:{KEK_ENV}" if seed // 2 % 2 else f"file:{root / 'kek'}") if sealed else None
        cfg.write_text(
            cfg.read_text().replace(
                "  poll_timeout_s: 0.2\n",
                f"  poll_timeout_s: 0.2\n  options: {{session.timeout.ms: {SESSION_MS},"
                f" max.poll.interval.ms: {REBALANCE_MS}}}\n",
            )
            + (f"privacy:\n  kek: {kek}\n" if kek else "")
        )
        # migrated (and encryption turned on) before the workers start, as a deployment does
        setup = Store.open(url)
        try:
            if kek is not None and seed // 4 % 2 == 0:
                enable_privacy(setup, kek=kek)
        finally:
            setup.close()
        raw_topic = f"{prefix}.raw.lead.v1"
        broker.create_topic(raw_topic, PARTITIONS)
        messages = raw_messages(SUBJECTS, VERSIONS, seed=seed)
        if produce(broker.bootstrap, raw_topic, messages) != len(messages):
            return "the input was not all produced", 0, 0.0

        roles, stored, total = ROLES, _STORED, len(messages)
        if split:
            problem = _normalize_all(cfg, url, total)
            if problem is not None:
                return problem, 0, 0.0
            roles, stored, total = ("score",), "SELECT count(*) FROM scores", scalar(url, _RECORDS)
        first = _fork_worker(cfg, idle_exit_s=1.0, roles=roles)
        killed_at, status = _kill_at_random_point(rng, first, url, total, stored)
        # the partitions move to the next worker once the dead member's session ran out; a
        # worker that idled out before the group gave it every partition is followed by another
        for _ in range(FOLLOWERS):
            try:
                code = wait_child(
                    _fork_worker(cfg, idle_exit_s=FOLLOWER_IDLE_S, roles=roles), WORKER_WAIT_S
                )
            except TimeoutError:
                stacks = [p.read_text()[-1500:] for p in root.glob("worker-*.stack")]
                late = f"a later worker did not finish in {WORKER_WAIT_S} s"
                return f"{late}; its stacks: {[s for s in stacks if s]}", status, killed_at
            if code != 0:
                errors = [p.read_text()[-600:] for p in root.glob("worker-*.err")]
                return f"a later worker exited with {code}: {errors}", status, killed_at
            if scalar(url, stored) >= total:
                break
        # a split chain keeps the canonical topic's relay rows besides the scored topic's
        problem = _check(url, broker, prefix, messages, batch, relays=2 if split else 1)
        if problem is None and sealed:
            problem = _deliver(cfg, rng, url) or _check_sealed(url, broker, prefix, messages)
        return problem, status, killed_at
    finally:
        if schema is not None:
            _on_pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _deliver(cfg: Path, rng: random.Random, url: str) -> str | None:
    """The encrypted kind's last stage: a ``deliver`` worker routes the scored topic into the
    outbox (and sends it to the unreachable sink: some dead-letter) and is SIGKILLed after a
    random delay (while it joins or mid-batch), a second one runs until idle.  Every lead with
    records then has exactly one delivery (its versions carry the same content, so later ones
    are held back) of one of its own records."""
    leads = {r[0].split("@")[0] for r in rows_of(url, "SELECT id FROM records")}
    first = _fork_worker(cfg, idle_exit_s=1.0, roles=("deliver",))
    time.sleep(rng.uniform(0.0, EARLY_S))
    os.kill(first, signal.SIGKILL)  # a zombie that exited meanwhile takes it harmlessly
    code = wait_child(first, 30)
    for _ in range(FOLLOWERS):
        if code not in (0, -signal.SIGKILL):
            errors = [p.read_text()[-600:] for p in cfg.parent.glob("worker-*.err")]
            return f"a deliver worker exited with {code}: {errors}"
        try:
            code = wait_child(
                _fork_worker(cfg, idle_exit_s=FOLLOWER_IDLE_S, roles=("deliver",)), WORKER_WAIT_S
            )
        except TimeoutError:
            stacks = [p.read_text()[-1500:] for p in cfg.parent.glob("worker-*.stack")]
            late = f"a deliver worker did not finish in {WORKER_WAIT_S} s"
            return f"{late}; its stacks: {[s for s in stacks if s]}"
        if code == 0 and scalar(url, "SELECT count(*) FROM record_heads") >= len(leads):
            break
    delivered = [r[0].split("@")[0] for r in rows_of(url, "SELECT record_id FROM deliveries")]
    if sorted(delivered) != sorted(leads):
        heads = scalar(url, "SELECT count(*) FROM record_heads")
        bus = scalar(url, "SELECT count(*) FROM quarantine WHERE stage = 'bus'")
        return (
            f"{len(delivered)} deliveries for {len(leads)} leads (distinct {len(set(delivered))},"
            f" of no lead {len(set(delivered) - leads)}; {heads} heads, {bus} messages"
            " quarantined by the bus)"
        )
    return None


_STORED = (
    "SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM quarantine"
    " WHERE pipeline = 'leads')"
)
_RECORDS = "SELECT count(*) FROM records"


def _normalize_all(cfg: Path, url: str, total: int) -> str | None:
    """Run ``normalize`` workers until every raw message is a record or quarantined."""
    for _ in range(FOLLOWERS):
        try:
            code = wait_child(
                _fork_worker(cfg, idle_exit_s=FOLLOWER_IDLE_S, roles=("normalize",)), WORKER_WAIT_S
            )
        except TimeoutError:
            return f"a normalize worker did not finish in {WORKER_WAIT_S} s"
        if code != 0:
            errors = [p.read_text()[-600:] for p in cfg.parent.glob("worker-*.err")]
            return f"a normalize worker exited with {code}: {errors}"
        if scalar(url, _STORED) >= total:
            return None
    return f"normalize stored {scalar(url, _STORED)} of {total} messages"


def _kill_at_random_point(
    rng: random.Random, pid: int, url: str, total: int, stored_sql: str = _STORED
) -> tuple[float, int]:
    """SIGKILL ``pid`` early (1 seed in 5) or once a random share of the messages is stored
    (``stored_sql``: as records or in quarantine, or as scores), plus a jitter of up to a few
    batches, so kills land anywhere in a batch's transaction, publish and offset commit.  Return
    the seconds from the start to the kill and the worker's exit status (``-SIGKILL``, or 0 when
    it had finished)."""
    started = time.monotonic()
    status: int | None = None
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, EARLY_S))
    else:
        target = rng.randint(0, total)
        eng = create_engine(url)
        try:
            deadline = started + 60
            while time.monotonic() < deadline:
                with eng.connect() as conn:
                    stored = conn.execute(text(stored_sql)).scalar() or 0
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:  # it finished before the target: a kill after the end
                    status = os.waitstatus_to_exitcode(raw)
                    break
                if stored >= target:
                    break
                time.sleep(0.003)
        finally:
            eng.dispose()
        time.sleep(rng.uniform(0.0, 0.05))
    killed_at = time.monotonic() - started
    if status is None:
        os.kill(pid, signal.SIGKILL)  # a zombie that exited meanwhile takes it harmlessly
        status = wait_child(pid, 30)
    return killed_at, status


def _check(
    url: str,
    broker: KafkaBroker,
    prefix: str,
    messages: list[tuple[str, bytes]],
    batch: int,
    relays: int = 1,
) -> str | None:
    """The checks of the module's docstring; ``relays``: relay rows a record leaves (one a
    stage topic it is written to)."""
    inputs = {orjson.loads(v)["record_id"] for _, v in messages}
    quarantined = {
        f"leads:{k.removeprefix('leads:')}"
        for (k,) in rows_of(url, "SELECT record_key FROM quarantine WHERE pipeline = 'leads'")
    }
    records = [r[0] for r in rows_of(url, "SELECT id FROM records")]
    good = inputs - quarantined
    if set(records) != good or len(records) != len(good):
        return (
            f"{len(records)} records for {len(good)} good inputs "
            f"(missing {len(good - set(records))}, unexpected {len(set(records) - good)})"
        )
    scores = rows_of(url, "SELECT record_id FROM scores")
    if len(scores) != len(good) or {s[0] for s in scores} != good:
        return f"{len(scores)} scores for {len(good)} records"
    relay = (
        rows_of(url, "SELECT count(*) FROM stage_relay")[0][0],
        rows_of(url, UNPUBLISHED_RELAY)[0][0],
    )
    if relay != (relays * len(good), 0):
        return f"stage_relay rows (all, unpublished) {relay} for {len(good)} records"
    out = read_topic(broker.bootstrap, f"{prefix}.scored.lead.v1", expect=len(good), timeout_s=60)
    out_ids = [v["record_id"] for _, _, _, v in out]
    if set(out_ids) != good:
        return f"the scored topic misses {len(good - set(out_ids))} records"
    if len(out_ids) - len(good) > batch * PARTITIONS:
        return f"{len(out_ids) - len(good)} messages sent twice (batch {batch})"
    seen: set[str] = set()
    versions: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for part, _, key, value in out:
        partitions[key].add(part)
        if value["record_id"] not in seen:
            seen.add(value["record_id"])
            versions[key].append(value["version"])
    if any(len(p) > 1 for p in partitions.values()):
        return "a lead's versions left on two partitions"
    if any(vs != sorted(vs) for vs in versions.values()):
        return "a lead's versions left out of order"
    r = reconciled(url)
    if not r.clean:
        return f"reconciliation not clean: {r}"
    return None


def _personal(messages: list[tuple[str, bytes]]) -> dict[str, tuple[str | None, set[str]]]:
    """Per input record id: its email as fed in (None without one), and its email and phone
    as fed in (the forms that must not be readable in the store; ``_check_sealed`` adds the
    normalized forms the records hold)."""
    out: dict[str, tuple[str | None, set[str]]] = {}
    for _, value in messages:
        msg = orjson.loads(value)
        email = (msg["record"].get("email") or "").strip()
        phone = (msg["record"].get("phone") or "").strip()
        forms = {email} if "@" in email else set()
        if sum(ch.isdigit() for ch in phone) >= 7:
            forms.add(phone)
        out[msg["record_id"]] = (email if "@" in email else None, forms)
    return out


def _check_sealed(
    url: str, broker: KafkaBroker, prefix: str, messages: list[tuple[str, bytes]]
) -> str | None:
    """The encrypted kind's further checks (after ``_check`` passed)."""
    fed = _personal(messages)
    raw = {orjson.loads(v)["record_id"]: v for _, v in messages}
    store = Store.open(url)  # finds the KEK through the store's settings, as a new process does
    try:
        if store.privacy() is None:
            return "encryption at rest is not on in the store"
        with store.begin() as conn:
            records = store.open_record_rows(conn, conn.execute(select(t.records)).mappings().all())
            deliveries = store.open_delivery_rows(
                conn, conn.execute(select(t.deliveries)).mappings().all()
            )
            quarantined = store.open_quarantine_rows(
                conn,
                conn.execute(select(t.quarantine).where(t.quarantine.c.pipeline == "leads"))
                .mappings()
                .all(),
            )
    finally:
        store.close()
    for rec in records:
        email, forms = fed[rec["id"]]
        opened = orjson.loads(rec["payload"])
        if rec["subject"] is None or (email or "").lower() != (opened.get("email") or "").lower():
            return f"record {rec['id']} opened to another email than its input's (or unsealed)"
        forms.update(v for v in (opened.get("email"), opened.get("phone")) if v)
    # outbox rows, and the dead letters of those the unreachable sink refused, carry the event
    dead = [(q["record_key"], q["payload"]) for q in quarantined if q["stage"] == "deliver"]
    for did, payload in [(d["id"], d["payload"]) for d in deliveries] + dead:
        record = orjson.loads(payload)["record"]
        email = fed[did.rsplit(":", 1)[0]][0]
        if (email or "").lower() != (record.get("email") or "").lower():
            return f"the outbox event {did} opened to another email than its record's"
    if any(r["subject"] is None for r in [*deliveries, *quarantined]):
        return "an outbox or quarantine row was stored unsealed"
    for q in quarantined:
        rid = f"leads:{q['record_key'].removeprefix('leads:')}"
        if q["stage"] != "deliver" and bytes(q["payload"]) != raw.get(rid):
            return f"quarantined {rid} opened to other bytes than its message"
    out = read_topic(broker.bootstrap, f"{prefix}.scored.lead.v1", expect=len(records))
    for _, _, _, value in out:
        email = fed[value["record_id"]][0]
        if (email or "").lower() != (value["record"].get("email") or "").lower():
            return f"the scored message of {value['record_id']} carries another email"
    # text in any letter case; binary columns dump as hex (X'..' on SQLite, \\x.. on PostgreSQL)
    text_dump = dump(url).lower()
    leaked = sorted(
        {
            f
            for _, forms in fed.values()
            for f in forms
            if any(g in text_dump for g in (f.lower(), f.encode().hex(), f.lower().encode().hex()))
        }
    )
    if leaked:
        return f"{len(leaked)} emails or phones fed in readable in clear in the store"
    return None


def test_sigkill_a_stage_worker_at_random_points(tmp_path: Path, models_dir: Path) -> None:
    calls = [(tmp_path / f"s{seed}", models_dir, seed) for seed in range(SEEDS)]
    with_procs = map_seeds(_seed, calls, STAGE_PROCS)
    problems = [f"seed {s}: {p}" for s, (p, _st, _at) in enumerate(with_procs) if p]
    assert not problems, "\n".join(problems)
    # the kills landed: most seeds' first worker died of the SIGKILL, not of old age
    killed = sum(st == -signal.SIGKILL for _p, st, _at in with_procs)
    assert killed >= SEEDS // 2, [(st, round(at, 2)) for _p, st, at in with_procs]


def test_sigkill_a_stage_worker_with_encryption_at_rest(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same kills with ``privacy:`` on; the seed processes inherit the KEK's variable."""
    monkeypatch.setenv(KEK_ENV, secrets.token_urlsafe(48))
    seeds = range(SEALED_BASE, SEALED_BASE + SEALED_SEEDS)
    calls = [(tmp_path / f"s{seed}", models_dir, seed, True) for seed in seeds]
    with_procs = map_seeds(_seed, calls, STAGE_PROCS)
    problems = [f"seed {s}: {p}" for s, (p, _st, _at) in zip(seeds, with_procs, strict=True) if p]
    assert not problems, "\n".join(problems)
    killed = sum(st == -signal.SIGKILL for _p, st, _at in with_procs)
    assert killed >= SEALED_SEEDS // 2, [(st, round(at, 2)) for _p, st, at in with_procs]


def test_sigkill_a_score_worker_reading_canonical_messages(
    tmp_path: Path, models_dir: Path
) -> None:
    """The chain split in two roles: a ``score`` worker reading what ``normalize`` wrote to the
    canonical topic is the one killed; the same checks hold."""
    seeds = range(SPLIT_BASE, SPLIT_BASE + SPLIT_SEEDS)
    calls = [(tmp_path / f"s{seed}", models_dir, seed, False, True) for seed in seeds]
    with_procs = map_seeds(_seed, calls, STAGE_PROCS)
    problems = [f"seed {s}: {p}" for s, (p, _st, _at) in zip(seeds, with_procs, strict=True) if p]
    assert not problems, "\n".join(problems)
    killed = sum(st == -signal.SIGKILL for _p, st, _at in with_procs)
    assert killed >= SPLIT_SEEDS // 2, [(st, round(at, 2)) for _p, st, at in with_procs]
