"""Scoring API benchmark: ``POST /api/v1/score-lead`` against a naive sklearn endpoint, same run.

For each server (each pinned to one CPU; the load generator runs on the other):
1. max sustained requests/s: closed loop, ``--concurrency`` connections for ``--seconds``;
2. open-loop latency at 50 % (and 80 %) of that rate: requests sent on a uniform schedule whatever
   the server does, latency measured from the *scheduled* send time (no coordinated omission).

Goal (issue 3): Junction ≥ 5x the naive endpoint's max throughput, p99 ≤ 20 ms at 50 % load.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import free_port, pin_self, wait_listening

CONFIG = """\
store: "sqlite:///{root}/junction.db"
models_dir: {models}
api:
  signing_key: "{key}"
  rate_limit: "1000000/second"
pipelines: {{}}
"""


def _bodies(n: int) -> list[bytes]:
    from schemas import Lead
    from scoring.synthetic import generate_leads

    out = []
    for lead in generate_leads(n, seed=7):
        lead.pop("converted", None)
        out.append(Lead.model_validate(lead).model_dump_json(exclude_none=True).encode())
    return out


def _start(kind: str, path: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.api_servers", kind, str(path), str(port), "0"],
        cwd=Path(__file__).resolve().parent.parent,
    )
    wait_listening(proc, port, f"{kind} server")
    return proc


async def _closed_loop(
    url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[float, int, int]:
    ok = errors = 0
    stop = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:

        async def worker(w: int) -> None:
            nonlocal ok, errors
            i = w
            while time.perf_counter() < stop:
                async with session.post(url, data=bodies[i % len(bodies)]) as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                    else:
                        errors += 1
                i += concurrency

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return ok / elapsed, ok, errors


async def _open_loop(
    url: str, bodies: list[bytes], headers: dict[str, str], rate: float, seconds: float
) -> dict[str, float]:
    n = max(1, int(rate * seconds))
    latencies: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=bodies[i % len(bodies)]) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {
        "offered_rps": rate,
        "achieved_rps": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000,
        "errors": errors,
    }


def _measure(
    name: str, url: str, bodies: list[bytes], headers: dict[str, str], args: Any
) -> dict[str, Any]:
    asyncio.run(_closed_loop(url, bodies, headers, args.concurrency, 1.0))  # warm up
    maxes = [
        asyncio.run(_closed_loop(url, bodies, headers, args.concurrency, args.seconds))
        for _ in range(args.repeat)
    ]
    max_rps = statistics.median(m[0] for m in maxes)
    out: dict[str, Any] = {"name": name, "max_rps": max_rps, "errors": sum(m[2] for m in maxes)}
    for share in (0.5, 0.8):
        out[f"at_{int(share * 100)}"] = asyncio.run(
            _open_loop(url, bodies, headers, max_rps * share, args.seconds)
        )
    return out


def _token(config: Path) -> str:
    from junction.api.auth import TokenIssuer, resolve_signing_key
    from junction.pipeline.config import load_config
    from junction.store.clients import ClientStore
    from junction.store.repo import Store

    cfg = load_config(config)
    store = Store.open(cfg.store)
    try:
        client, _ = ClientStore(store).create("bench", ["ingest"])
        key = resolve_signing_key(cfg.api, Path(cfg.models_dir).parent)
        token, _ = TokenIssuer(key, cfg.api.issuer, cfg.api.audience, 3600).issue(client)
    finally:
        store.close()
    return token


def run(
    *,
    seconds: float,
    concurrency: int,
    repeat: int,
    keep: bool,
    figures: dict[str, Any] | None = None,
) -> int:
    """Run the benchmark and print the figures and ratios; 0 on success.  ``figures``, when
    given, receives the figures as data."""
    from scoring.registry import ensure_default_model

    root = Path(tempfile.mkdtemp(prefix="junction-bench-api-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        models = root / "models"
        ensure_default_model(models, name="lead-score")
        config = root / "junction.yaml"
        config.write_text(
            CONFIG.format(root=root, models=models, key="bench-signing-key-" + "x" * 32),
            encoding="utf-8",
        )
        bodies = _bodies(2000)
        headers = {"content-type": "application/json"}
        jport, nport = free_port(), free_port()
        procs.append(_start("junction", config, jport))
        procs.append(_start("naive", models, nport))
        pin_self(1)
        jheaders = {**headers, "authorization": f"Bearer {_token(config)}"}
        probe = asyncio.run(
            _closed_loop(
                f"http://127.0.0.1:{jport}/api/v1/score-lead", bodies[:1], jheaders, 1, 0.2
            )
        )
        if probe[1] == 0:
            raise RuntimeError("POST /api/v1/score-lead does not answer 200")
        naive = _measure(
            "naive sklearn endpoint",
            f"http://127.0.0.1:{nport}/score-lead",
            bodies,
            headers,
            _Args(seconds, concurrency, repeat),
        )
        hub = _measure(
            "junction /score-lead",
            f"http://127.0.0.1:{jport}/api/v1/score-lead",
            bodies,
            jheaders,
            _Args(seconds, concurrency, repeat),
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    ratio = hub["max_rps"] / naive["max_rps"] if naive["max_rps"] else float("inf")
    print(f"{'server':<26}{'max rps':>10}{'p50@50%':>10}{'p99@50%':>10}{'p99@80%':>10}{'err':>6}")
    for r in (naive, hub):
        print(
            f"{r['name']:<26}{r['max_rps']:>10.0f}{r['at_50']['p50_ms']:>9.1f}ms"
            f"{r['at_50']['p99_ms']:>8.1f}ms{r['at_80']['p99_ms']:>8.1f}ms"
            f"{r['errors'] + r['at_50']['errors'] + r['at_80']['errors']:>6}"
        )
    print(
        f"throughput ratio junction/naive: {ratio:.1f}x (goal >= 5x); "
        f"junction p99 at 50% load: {hub['at_50']['p99_ms']:.1f} ms (goal <= 20 ms)"
    )
    print(json.dumps({"naive": naive, "junction": hub, "ratio": ratio}))
    if figures is not None:
        figures.update(naive=naive, junction=hub, ratio=ratio, seconds=seconds)
    return 0


class _Args:
    def __init__(self, seconds: float, concurrency: int, repeat: int) -> None:
        self.seconds = seconds
        self.concurrency = concurrency
        self.repeat = repeat
