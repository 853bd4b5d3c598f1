"""Instructions per record of a stage worker's batch work, counted by callgrind (issue 8).

``python -m bench kafka`` times worker processes against a broker on a shared VM, where the
same code's rate moves by a third from one run to the next.  This counts, instead, the CPU
instructions of what a worker does with each consumed batch apart from the Kafka client, in
phases, each in a valgrind run of its own with instrumentation switched on only around that
phase of every measured batch:

* ``read``: each message to an item (``MessageReader`` for canonical messages, ``decode`` for
  raw ones), as ``StageWorker.process`` does;
* ``roles``: ``PipelineStages.run`` for each of the roles (the model check, mapping, scoring);
* ``relay``: the relay rows of the output messages (``StageWorker._relay_rows``);
* ``write``: the effects and relay rows in one store transaction, as the worker writes them
  on SQLite: the previous batch's relay rows marked sent (``relay_marks.advance_all`` with the
  span of ids they took, what ``relay.mark_in`` does there: each partition's watermark moved
  over them), then ``Effects.write`` with ``relay.insert_rows`` and ``written_span``, SQLite
  in a temporary folder;
* ``free``: dropping the batch's objects.

Left out: consuming, producing and acknowledging (librdkafka's work and waits) and the
background WAL checkpoints.  The messages are ``bench kafka``'s own
(canonical for ``score``, raw for ``normalize,score``); the first ``--warm`` records run
uncounted, so the mapping's per-value caches are as warm as in a long run.

Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.callgrind import MISSING, available, count, switch

PHASES = ("read", "roles", "relay", "write", "free")
BATCH = 500  # BusConfig's default batch size


def _child(roles_text: str, records: int, warm: int, phase: str, work: Path) -> None:
    """Run the batches in this (valgrind'ed) process, counting ``phase``; print what ran."""
    from bench.kafka import CONFIG, PIPELINE, canonical_messages, raw_messages, source_rows
    from junction.core.gc_pause import gc_paused
    from junction.pipeline.config import load_config
    from junction.pipeline.hub import Hub
    from junction.pipeline.model_watch import ModelWatch
    from junction.pipeline.stages.reader import RECORD_STAGES, MessageReader
    from junction.pipeline.stages.relay import insert_rows
    from junction.pipeline.stages.topics import ROLE_INPUT, ROLE_OUTPUT, Source, decode, parse_roles
    from junction.pipeline.stages.transforms import Effects, PipelineStages
    from junction.pipeline.stages.worker import StageWorker
    from junction.store.relay_marks import advance_all, written_span

    roles = parse_roles(roles_text)
    in_stage, out_stage = ROLE_INPUT[roles[0]], ROLE_OUTPUT[roles[-1]]
    assert in_stage is not None, "a role set that reads a stage topic"
    assert out_stage is not None, "a role set that writes a stage topic"
    rows, sha = source_rows(records + warm)
    build = canonical_messages if in_stage == "canonical" else raw_messages
    values = [value for _key, value, _headers in build(rows, sha, PIPELINE)]
    (work / "models").mkdir(parents=True, exist_ok=True)
    config = work / "junction.yaml"
    config.write_text(
        CONFIG.format(
            store=f"sqlite:///{work / 'stage.db'}",
            bootstrap="127.0.0.1:9",  # never dialled: no client is made
            prefix="bench",
            partitions=6,
            session_ms=6000,
            pipeline=PIPELINE,
        )
    )
    hub = Hub(load_config(config))
    try:
        pcfg = hub.cfg.pipelines[PIPELINE]
        scorer = None
        if "score" in roles and pcfg.scoring is not None:
            scorer = ModelWatch(hub.cfg.models_dir, pcfg.scoring, owner="bench").load().scorer
        stages = PipelineStages(PIPELINE, pcfg, scorer, connector=pcfg.source.connector)
        topic = f"bench.{in_stage}.lead.v1"
        read: Callable[[bytes, Source], Any]
        if in_stage in RECORD_STAGES:
            read = MessageReader(in_stage, stages.model_cls)
        else:
            read = lambda value, src: decode(value, in_stage, src)  # noqa: E731
        # what _relay_rows reads of its worker: the output topic of each pipeline
        worker: Any = type("Worker", (), {})()
        worker.out_topics = {PIPELINE: f"bench.{out_stage}.lead.v1"}
        store = hub.store
        # (scope, dedupe) of the rows the previous batch sent, and the ids they took: this
        # batch's write marks them
        sent: list[tuple[str, str]] = []
        span: list[Any] = [None]

        def batch(part: Sequence[bytes], first: int, counted: bool) -> int:
            def mark(name: str, on: bool) -> None:
                if counted and name == phase:
                    switch(on)

            mark("read", True)
            items = [
                read(v, Source(topic, (first + j) % 6, first + j, v)) for j, v in enumerate(part)
            ]
            mark("read", False)
            effects = Effects()
            mark("roles", True)
            for role in roles:
                items = stages.run(role, items, effects)
            mark("roles", False)
            mark("relay", True)
            relay = StageWorker._relay_rows(worker, PIPELINE, items, out_stage)
            mark("relay", False)

            def write_relay(conn: Any, rows: list[Any] = relay) -> None:
                if sent:
                    advance_all(conn, sent, span[0])
                span[0] = written_span(conn, len(rows)) if insert_rows(store, conn, rows) else None

            mark("write", True)
            effects.write(store, write_relay)
            mark("write", False)
            sent[:] = [(r[0], r[5]) for r in relay]
            passed = len(items)
            mark("free", True)
            del items, effects, relay
            mark("free", False)
            return passed

        for at in range(0, warm, BATCH):
            with gc_paused():
                batch(values[at : min(at + BATCH, warm)], at, False)
        passed = 0
        started = time.process_time()
        for at in range(warm, len(values), BATCH):
            with gc_paused():  # as the worker holds the collector for a batch
                passed += batch(values[at : at + BATCH], at, True)
        cpu = time.process_time() - started
    finally:
        hub.close()
    print(json.dumps({"records": len(values) - warm, "passed": passed, "cpu_s": cpu}))


def _count(roles: str, records: int, warm: int, phase: str, work: Path) -> tuple[int, dict]:
    folder = work / phase
    folder.mkdir(parents=True)
    args = [roles, str(records), str(warm), phase, str(folder)]
    return count("bench.stage_instructions", args, folder / "phase", phase)


def run(*, roles: str, records: int, warm: int, keep: bool) -> int:
    """Count and print instructions per record of each phase, and their sum."""
    if not available():
        print(MISSING)
        return 2
    from bench.kafka import ensure_data
    from bench.procs import work_folder

    ensure_data()  # written once here, not by a child under valgrind
    with work_folder("junction-stage-instr-", keep=keep) as work:
        print(
            f"--roles {roles}: {records:,} records counted after {warm:,} uncounted, batches of "
            f"{BATCH}; instructions by callgrind, the Kafka client left out"
        )
        total = 0.0
        for phase in PHASES:
            ir, got = _count(roles, records, warm, phase, work)
            if got["passed"] != got["records"]:
                raise SystemExit(f"{phase}: {got['passed']} of {got['records']} records passed")
            per = ir / got["records"]
            total += per
            print(f"{phase:<6}: {per:>10,.0f} per record")
        print(f"{'total':<6}: {total:>10,.0f} per record")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], Path(sys.argv[6]))
    else:
        raise SystemExit("run it as: python -m bench stage-instructions [--roles R] [--records N]")
