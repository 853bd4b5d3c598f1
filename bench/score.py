"""Scoring benchmark: compiled models beside the raw scikit-learn pipelines, in one process.

Trains a logistic regression (:func:`scoring.pipelines.build_linear`) and gradient-boosted
trees (:func:`scoring.pipelines.build_trees`, sigmoid-calibrated on a held-out slice) on
``--rows`` synthetic leads, then measures for each, in the same run:

* single row, p50/p99 over ``--single`` calls: raw ``predict_proba`` on the prepared 1-row
  object array (``scoring.spec.to_matrix``; a 1-row pandas DataFrame too when pandas is
  installed) beside the hub's scorer, ``SklearnLeadScorer.score_one``, from the canonical
  lead dict to a ``Score`` (extraction, margin, calibrated probability, grade, top-3
  factors, reasons, data sufficiency) over the compiled model (``CompiledLinearModel``, or
  ``CompiledTreeModel`` with its compiled calibration).  Goal (issue 7): ≥ 20x faster.
* batch of ``--batch`` rows, median of ``--repeat``: raw ``predict_proba`` on the prepared
  ``(n, 13)`` array beside ``SklearnLeadScorer.score_columns`` from the list of canonical
  dicts (feature extraction, margins, probabilities, grades and top-3 factors of every row).
  Goal: ≥ 0.5 of raw rows/s.

The trees' raw figures are given for the calibrated model (what the compiled one computes)
and for the bare pipeline (faster: no calibration), each with scikit-learn's default OpenMP
threads and with one thread (on a busy machine the default can be many times slower); the
ratios use the fastest bare-pipeline figure, so they err low.  Before measuring, the process
freezes the garbage collector's long-lived objects and raises its threshold as the hub's
batch workers do (``junction.pipeline.workers``), for both sides.  The last line is the
figures as JSON.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from scoring.lead_spec import LEAD_SPEC
from scoring.spec import to_matrix


def _latency(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """p50 and p99 of ``calls`` calls, in microseconds (after 5 % warm-up calls)."""
    for _ in range(max(3, calls // 20)):
        fn()
    times = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    times.sort()
    return times[len(times) // 2] / 1e3, times[
        min(len(times) - 1, math.ceil(len(times) * 0.99) - 1)
    ] / 1e3


def _rate(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """Median rows/s of ``repeat`` runs of ``fn`` over ``n`` rows (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def _thread_modes(kind: str) -> tuple[int | None, ...]:
    # only the trees use OpenMP threads (the logistic regression's predict is one BLAS call)
    return (None, 1) if kind == "trees" else (None,)


def threads_label(threads: int | None) -> str:
    """`` [1 thread]`` for a limited run, empty for the default."""
    return "" if threads is None else f" [{threads} thread]"


@contextlib.contextmanager
def _threads(threads: int | None) -> Any:
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def _train(rows: int, seed: int) -> dict[str, Any]:
    from scoring.pipelines import build_linear, build_trees, calibrate
    from scoring.synthetic import generate_leads
    from scoring.trees import CompiledTreeModel

    leads = generate_leads(rows, seed=seed)
    y = np.array([lead.pop("converted") for lead in leads], dtype=np.int64)
    x = to_matrix(LEAD_SPEC, [LEAD_SPEC.extract(lead) for lead in leads])
    fit_n = int(rows * 0.8)
    t0 = time.perf_counter()
    linear = build_linear(LEAD_SPEC, seed).fit(x, y)
    t_linear = time.perf_counter() - t0
    t0 = time.perf_counter()
    trees = build_trees(LEAD_SPEC, seed).fit(x[:fit_n], y[:fit_n])
    calibrated = calibrate(trees, x[fit_n:], y[fit_n:], "sigmoid")
    t_trees = time.perf_counter() - t0
    return {
        "linear": linear,
        "trees": trees,
        "calibrated": calibrated,
        "compiled_trees": CompiledTreeModel.from_calibrated(calibrated, LEAD_SPEC),
        "fit_s": {"linear": t_linear, "trees": t_trees},
    }


def _pandas_row(record: Mapping[str, Any]) -> Callable[[Any], Any] | None:
    try:
        import pandas as pd
    except ImportError:
        return None
    names = [*LEAD_SPEC.categorical, *LEAD_SPEC.numeric, *LEAD_SPEC.binary]
    row = dict(zip(names, LEAD_SPEC.extract(record), strict=True))

    def predict_frame(predict_proba: Callable[[Any], Any]) -> Any:
        # the column layout is positional: the frame's columns are in row order
        return predict_proba(pd.DataFrame([row]).to_numpy(dtype=object))

    return predict_frame


class Inputs(NamedTuple):
    """The same leads for both sides: raw dicts for ours, prepared arrays for sklearn."""

    one: Mapping[str, Any]
    x_one: Any
    records: list[dict[str, Any]]
    x_batch: Any
    pandas_run: Callable[[Any], Any] | None


class Sizes(NamedTuple):
    """How much to measure."""

    batch: int
    single: int
    raw_calls: int
    repeat: int


def _measure(
    kind: str, ours: Any, raws: list[tuple[str, Any]], inp: Inputs, sizes: Sizes
) -> dict[str, float]:
    """Print one model's table and return its figures."""
    fig: dict[str, float] = {}
    print(f"  {'single row':<60} {'p50 µs':>10} {'p99 µs':>10}")
    for label, est in raws:
        for threads in _thread_modes(kind):
            with _threads(threads):
                p50, p99 = _latency(partial(est.predict_proba, inp.x_one), sizes.raw_calls)
            name = f"raw {label}.predict_proba(1-row object array){threads_label(threads)}"
            print(f"  {name:<60} {p50:>10.1f} {p99:>10.1f}")
            if p50 < fig.get(f"raw_{label}_p50_us", math.inf):
                fig[f"raw_{label}_p50_us"], fig[f"raw_{label}_p99_us"] = p50, p99
        if inp.pandas_run is not None:
            run_df = inp.pandas_run
            p50, p99 = _latency(partial(run_df, est.predict_proba), sizes.raw_calls)
            fig[f"raw_{label}_pandas_p50_us"] = p50
            print(f"  {'raw ' + label + ' via 1-row DataFrame':<60} {p50:>10.1f} {p99:>10.1f}")
    if inp.pandas_run is None:
        print("  (pandas is not installed: the 1-row DataFrame line is skipped)")
    p50, p99 = _latency(lambda: ours.score_one(inp.one), sizes.single)
    fig["ours_p50_us"], fig["ours_p99_us"] = p50, p99
    print(f"  {'SklearnLeadScorer.score_one (dict -> Score, top-3)':<60} {p50:>10.1f} {p99:>10.1f}")
    fig["speedup_p50"] = fig["raw_pipeline_p50_us"] / p50
    fig["speedup_p99"] = fig["raw_pipeline_p99_us"] / p99
    print(
        f"  speed-up vs raw pipeline p50 {fig['speedup_p50']:,.1f}x, "
        f"p99 {fig['speedup_p99']:,.1f}x (goal >= 20x)"
    )
    print(f"  {'batch of ' + format(sizes.batch, ','):<60} {'rows/s':>10}")
    for label, est in raws:
        for threads in _thread_modes(kind):
            with _threads(threads):
                rate = _rate(partial(est.predict_proba, inp.x_batch), sizes.batch, sizes.repeat)
            name = f"raw {label}.predict_proba(prepared array){threads_label(threads)}"
            print(f"  {name:<60} {rate:>10,.0f}")
            fig[f"raw_{label}_rows_s"] = max(rate, fig.get(f"raw_{label}_rows_s", 0.0))
    rate = _rate(lambda: ours.score_columns(inp.records), sizes.batch, sizes.repeat)
    fig["ours_rows_s"] = rate
    fig["batch_ratio"] = rate / fig["raw_pipeline_rows_s"]
    print(f"  {'SklearnLeadScorer.score_columns (list of dicts)':<60} {rate:>10,.0f}")
    print(f"  ratio vs raw pipeline {fig['batch_ratio']:.2f} (goal >= 0.5)")
    return fig


def run(
    rows: int = 20_000,
    batch: int = 10_000,
    single: int = 2_000,
    repeat: int = 5,
    figures: dict[str, Any] | None = None,
) -> int:
    """Run the benchmark, print the table and a JSON line; 0 if both goals are met.
    ``figures``, when given, receives the figures as data."""
    from scoring.sklearn_model import SklearnLeadScorer
    from scoring.synthetic import generate_leads

    seed = 7
    models = _train(rows, seed)
    lr_scorer = SklearnLeadScorer(models["linear"], name="bench-linear", version="1")
    compiled_trees = models["compiled_trees"]
    tree_scorer = SklearnLeadScorer(
        compiled_trees, name="bench-trees", version="1", calibration=compiled_trees.calibration
    )
    records = generate_leads(batch, seed=seed + 1)
    for r in records:
        r.pop("converted")
    feature_rows = [LEAD_SPEC.extract(r) for r in records]
    x_batch = to_matrix(LEAD_SPEC, feature_rows)
    one = records[0]
    x_one = to_matrix(LEAD_SPEC, feature_rows[:1])
    pandas_run = _pandas_row(one)
    raw_calls = max(200, single // 5)
    sizes = Sizes(batch=batch, single=single, raw_calls=raw_calls, repeat=repeat)
    out: dict[str, Any] = {"rows": rows, "batch": batch, "cpus": os.cpu_count(), "models": {}}
    print(
        f"scoring bench: {rows:,} synthetic leads, batch {batch:,}, single-row calls "
        f"{single:,} (raw {raw_calls:,}), {os.cpu_count()} CPUs; "
        f"trees: {models['compiled_trees'].n_trees} trees, sigmoid calibration"
    )
    # as the hub's batch workers do: the models and data live as long as the process
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    ok = True
    kinds: list[tuple[str, Any, list[tuple[str, Any]]]] = [
        ("linear", lr_scorer, [("pipeline", models["linear"])]),
        (
            "trees",
            tree_scorer,
            [("pipeline", models["trees"]), ("calibrated", models["calibrated"])],
        ),
    ]
    for kind, ours, raws in kinds:
        print(f"\n{kind}")
        fig = _measure(kind, ours, raws, Inputs(one, x_one, records, x_batch, pandas_run), sizes)
        ok = ok and fig["speedup_p50"] >= 20 and fig["batch_ratio"] >= 0.5
        out["models"][kind] = {k: round(v, 3) for k, v in fig.items()}
    print(json.dumps({"bench": "score", **out, "goals_met": ok}))
    if figures is not None:
        figures.update(out, single=single, goals_met=ok)
    return 0 if ok else 1
