"""The soak's figures in words: the receiver's journal read as it grows, the memory verdict,
and the Markdown section (``docs/soak-report.md`` and ``bench all``'s report).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench.soak_traffic import sent_ms

MB = 1024 * 1024
WARMUP_S = 30.0  # an incarnation's first seconds (imports, model load) are left out
# the memory verdict: last-minute median over first-minute median of the same process
FLAT = (1.10, 10 * MB)  # within 10 %, or under 10 MB more: flat
TOLERATED = (1.25, 25 * MB)  # within 25 %, or under 25 MB more: slight, tolerated


@dataclass
class JournalTail:
    """Reads the webhook sink's JSONL journal incrementally (complete lines only)."""

    path: Path
    offset: int = 0
    delivered: dict[str, int] = field(default_factory=dict)  # event id -> received at (ms)
    webhook_ids: dict[str, set[str]] = field(default_factory=dict)  # event id -> webhook ids
    lines: int = 0

    def poll(self) -> int:
        """Read what was appended since the last call; return how many lines that was."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        if end == 0:
            return 0
        self.offset += end
        n = 0
        for raw in data[:end].split(b"\n"):
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            n += 1
            eid = str(line["body"]["source_key"])
            ms = int(datetime.fromisoformat(line["received_at"]).timestamp() * 1000)
            self.delivered.setdefault(eid, ms)
            self.webhook_ids.setdefault(eid, set()).add(str(line["webhook_id"]))
        self.lines += n
        return n

    def has_all(self, eids: list[str]) -> bool:
        """Whether every one of ``eids`` was delivered."""
        return all(e in self.delivered for e in eids)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0-1, nearest rank) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latencies_ms(eids: list[str], tail: JournalTail) -> list[float]:
    """Sent → received at the receiver, per delivered event."""
    return [float(tail.delivered[e] - sent_ms(e)) for e in eids if e in tail.delivered]


def memory(samples: list[dict[str, Any]], traffic_s: float) -> dict[str, Any]:
    """First-minute vs last-minute median RSS, overall and within the longest-lived process.

    ``samples`` are ``{t, incarnation, uptime_s, rss}``.  Each process's first ``WARMUP_S``
    are left out.  "Overall" compares the first process's first minute with the soak's last
    minute (whichever process ran then: a SIGKILL restarts from a low RSS, so it can hide a
    leak); "longest" compares the first and last minute of the process that ran longest (the
    honest leak check when kills are part of the soak).  The verdict takes the worse one.
    """
    warm = [s for s in samples if s["uptime_s"] >= WARMUP_S and s["t"] <= traffic_s]
    out: dict[str, Any] = {"samples": len(samples), "verdict": "not measured"}
    if not warm:
        return out
    by_inc: dict[int, list[dict[str, Any]]] = {}
    for s in warm:
        by_inc.setdefault(int(s["incarnation"]), []).append(s)
    first_inc = by_inc[min(by_inc)]
    t_first = first_inc[0]["t"]
    first = statistics.median(s["rss"] for s in first_inc if s["t"] < t_first + 60)
    last = statistics.median(s["rss"] for s in warm if s["t"] > warm[-1]["t"] - 60)
    out["overall"] = {"first_minute_mb": first / MB, "last_minute_mb": last / MB}
    longest = max(by_inc.values(), key=lambda xs: xs[-1]["t"] - xs[0]["t"])
    span = longest[-1]["t"] - longest[0]["t"]
    lf = statistics.median(s["rss"] for s in longest if s["t"] < longest[0]["t"] + 60)
    ll = statistics.median(s["rss"] for s in longest if s["t"] > longest[-1]["t"] - 60)
    out["longest"] = {
        "incarnation": int(longest[0]["incarnation"]),
        "span_s": span,
        "first_minute_mb": lf / MB,
        "last_minute_mb": ll / MB,
    }
    out["peak_mb"] = max(s["rss"] for s in samples) / MB
    out["per_minute_mb"] = [
        {
            "minute": m,
            "median_mb": statistics.median(s["rss"] for s in warm if int(s["t"] // 60) == m) / MB,
        }
        for m in sorted({int(s["t"] // 60) for s in warm})
    ]

    def grade(a: float, b: float) -> str:
        ratio, delta = b / a, b - a
        if ratio <= FLAT[0] or delta < FLAT[1]:
            return "flat"
        if ratio <= TOLERATED[0] or delta < TOLERATED[1]:
            return "slight growth (tolerated)"
        return "growing"

    order = ["flat", "slight growth (tolerated)", "growing"]
    grades = [grade(first, last)]
    if span >= 90:  # under 1.5 min the two minutes overlap: no separate reading
        grades.append(grade(lf, ll))
    out["verdict"] = max(grades, key=order.index)
    if span < 120:
        out["note"] = "short: no process ran 2 minutes, the verdict is weak"
    return out


def _ms(x: Any) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def markdown(f: dict[str, Any], *, heading: str = "##") -> list[str]:
    """The soak's figures as Markdown lines."""
    out = [
        f"Duration: **{f['minutes']:g} minutes** of traffic (then {f['drain_s']:.0f} s to drain), "
        f"store {f['store_kind']}, faults every {f['fault_every_s']:.0f} s; load average "
        f"(1, 5, 15 min) at start {f['load_start']}, at end {f['load_end']} "
        f"({f['cores']} cores); wall time of the whole run {f.get('wall_s', 0):.0f} s.",
        "",
        "| source | accepted | delivered | accepted/s | p50 ms | p99 ms | max ms | retries |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in f["sources"].items():
        out.append(
            f"| {name} | {s['accepted']:,} | {s['delivered']:,} | {s['rate']:.1f} | "
            f"{_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | {_ms(s['max_ms'])} | {s['retries']:,} |"
        )
    t = f["total"]
    out.append(
        f"| **all** | {t['accepted']:,} | {t['delivered']:,} | {t['rate']:.1f} | "
        f"{_ms(t['p50_ms'])} | {_ms(t['p99_ms'])} | {_ms(t['max_ms'])} | |"
    )
    out += [
        "",
        "Latency is end to end: the event's send time (in its `lead_id`) to the receiver's "
        "journal time, faults included (an event caught by a kill or an outage waits for it).",
        "",
        f"{heading}# Faults\n",
        "| at (s) | fault | detail |",
        "|---:|---|---|",
        *(f"| {x['at_s']:.0f} | {x['kind']} | {x['detail']} |" for x in f["faults"]),
        "",
        f"{heading}# Memory (RSS of `junction serve`)\n",
    ]
    m = f["memory"]
    if "overall" in m:
        o, lg = m["overall"], m["longest"]
        out += [
            f"- first minute median {o['first_minute_mb']:.0f} MB, last minute median "
            f"{o['last_minute_mb']:.0f} MB (whole soak; SIGKILL restarts start low)",
            f"- longest-lived process (#{lg['incarnation']}, {lg['span_s'] / 60:.1f} min): "
            f"first minute {lg['first_minute_mb']:.0f} MB, last minute "
            f"{lg['last_minute_mb']:.0f} MB",
            f"- peak {m['peak_mb']:.0f} MB; per-minute medians: "
            + ", ".join(f"{x['median_mb']:.0f}" for x in m["per_minute_mb"]),
        ]
    out.append(f"- verdict: **{m['verdict']}**" + (f" ({m['note']})" if m.get("note") else ""))
    e = f["exactly_once"]
    out += [
        "",
        f"{heading}# Exactly once and the reconciliation\n",
        f"- accepted events not delivered: {e['missing']:,}; delivered events never accepted: "
        f"{e['unknown']:,}; events delivered under more than one webhook-id (duplicate "
        f"effects): {e['duplicate_effects']:,}",
        f"- receiver-side dedup: {e['receiver_duplicates']:,} resends recognized by their "
        f"webhook-id (answered 200, not stored again); {e['receiver_injected']:,} answers were "
        "injected faults",
        "",
        "| pipeline | expected | records | scores | deliveries | in flight | differences |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in f["reconcile"].items():
        out.append(
            f"| {name} | {r.get('expected', 'n/a')} | {r.get('records', 'n/a')} | "
            f"{r.get('scores', 'n/a')} | {r.get('deliveries', 'n/a')} | "
            f"{r.get('in_flight_deliveries', 'n/a')} | "
            f"{'none' if r.get('clean') else diff_text(r)} |"
        )
    out += ["", f"Verdict: **{'PASS' if f['passed'] else 'FAIL'}**" + _why(f), ""]
    return out


def diff_text(r: dict[str, Any]) -> str:
    """The non-zero differences of one reconciliation."""
    if "error" in r:
        return f"reconcile failed: {r['error'][:200]}"
    kinds = (
        *("missing", "unexpected", "contradictory", "unscored", "orphans"),
        *("duplicate_sends", "dead_unquarantined"),
    )
    parts = [f"{k} {r[k]['count']}" for k in kinds if r.get(k, {}).get("count")]
    return "; ".join(parts) or "see JSON"


def _why(f: dict[str, Any]) -> str:
    return f" ({'; '.join(f['problems'])})" if f["problems"] else ""


def goals(f: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """Goal lines for ``bench all``: (what, issue, measured, met); n/a when it did not run."""
    if not f.get("sources"):
        return [
            ("soak (mixed traffic, faults): reconciliation clean", "11", "n/a", None),
            ("soak: every accepted event delivered exactly once", "11", "n/a", None),
            ("soak: memory does not grow", "11", "n/a", None),
        ]
    e, m = f["exactly_once"], f["memory"]
    clean = all(r.get("clean") for r in f["reconcile"].values())
    exact = not (e["missing"] or e["unknown"] or e["duplicate_effects"])
    return [
        (
            f"soak (mixed traffic, faults): reconciliation clean ({f['minutes']:g} min)",
            "11",
            "clean" if clean else "differences",
            clean,
        ),
        (
            "soak: every accepted event delivered exactly once",
            "11",
            f"{e['missing']} missing, {e['duplicate_effects']} duplicated",
            exact,
        ),
        ("soak: memory does not grow", "11", m["verdict"], m["verdict"] != "growing"),
    ]
