"""``junction model train``: fit, measure and register a scoring model (see junction.cli.model).

Data comes from a CSV file (``--csv``) or from the store (``--pipeline``: the pipeline's
records labelled by their outcomes, ``--kind converted`` by default).  Features come from the
built-in lead spec or a declared ``tabular.v1`` spec (``--spec``, see ``scoring/specs/``).

Algorithms: ``lr`` (logistic regression, exact explanations) and ``hgb`` (histogram gradient
boosting).  Calibration defaults to ``none`` for ``lr``, whose maximum-likelihood fit is
already a calibrated log-odds model and which would otherwise give up a fifth of its fit rows
to a calibration slice, and to ``sigmoid`` for ``hgb``, whose boosted margins are often
over-confident; two Platt parameters are stable on a small slice where isotonic is not.

The new version is judged by the promotion gate against production (``--promote``, the
default): it becomes production only if its holdout ROC AUC beats production's by
``--margin``, otherwise it stays in staging.  ``--no-promote`` always stages it.
``--cv K`` adds a K-fold cross-validated AUC of the training slice to the card, and
``--tune N`` searches N parameter sets with Optuna first (``junction-hub[tune]``).

Grades: ``--grade-shares 0.1,0.2,0.3`` sets the card's grade thresholds so that about the top
10 % of the holdout's calibrated probabilities grade A, the next 20 % B and the next 30 % C
(:func:`scoring.grading.thresholds_for_shares`; the holdout is out of sample and, under the
time split, the most recent rows); ``--thresholds 0.6,0.4,0.2`` sets them as given.  Without
either the card records the default 0.75, 0.5, 0.25.  A pipeline whose ``scoring.thresholds``
is unset grades by its version's card.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from junction.cli.clients import cli_actor
from junction.cli.model import app
from junction.cli.model_registry import ConfigOpt, ModelsDirOpt, Registry, fail
from junction.core.errors import ConfigError, JunctionError

if TYPE_CHECKING:
    from scoring.spec import FeatureSpec
    from scoring.train import TrainedModel
    from scoring.training_data import TrainingSet
    from scoring.tune import CvResult, TrainingSlice, TuneResult

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
DEFAULT_CONFIG = Path("junction.yaml")
DEFAULT_SEED = 0


class Algorithm(StrEnum):
    """The algorithms ``train`` offers, by short name."""

    lr = "lr"
    hgb = "hgb"
    xgb = "xgb"  # needs the xgboost extra (junction-hub[xgboost])


ALGORITHMS = {
    Algorithm.lr: "logistic_regression",
    Algorithm.hgb: "hist_gradient_boosting",
    Algorithm.xgb: "xgboost",
}


class CalibrationOpt(StrEnum):
    """Probability calibration of the trained model."""

    none = "none"
    sigmoid = "sigmoid"
    isotonic = "isotonic"


def parse_params(items: list[str]) -> dict[str, Any]:
    """``k=v`` pairs to parameters: ints, floats, true/false/none, else text.

    ``C`` is accepted for the logistic regression's ``c``.

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--param takes KEY=VALUE", context={"param": item[:40]})
        out["c" if key == "C" else key] = _value(text.strip())
    return out


def parse_triple(text: str, option: str) -> tuple[float, float, float]:
    """``"a,b,c"`` to three floats (validated by the caller).

    Raises:
        ConfigError: not three comma-separated numbers.
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"{option} takes three numbers, e.g. 0.1,0.2,0.3") from None
    if len(values) != 3:
        raise ConfigError(f"{option} takes three numbers, e.g. 0.1,0.2,0.3")
    return values[0], values[1], values[2]


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _spec(path: Path | None) -> FeatureSpec:
    if path is None:
        from scoring.lead_spec import LEAD_SPEC

        return LEAD_SPEC
    from scoring.tabular import load_tabular_spec

    return load_tabular_spec(path)


def _default_name(spec: FeatureSpec) -> str:
    from scoring.registry import DEFAULT_NAME

    return str(getattr(spec, "name", None) or DEFAULT_NAME)


@contextmanager
def _spinner(text: str) -> Iterator[Progress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # no escape codes into a pipe or a log
    ) as progress:
        progress.add_task(text, total=None)
        yield progress


def _read_csv(
    csv_path: Path,
    spec: FeatureSpec,
    *,
    label_column: str | None,
    positive: list[str],
    time_column: str | None,
    encoding: str,
    delimiter: str,
) -> TrainingSet:
    from junction.pipeline.training_sources import csv_training_set
    from scoring.training_data import label_rule

    rule = label_rule(spec, label_column, tuple(positive))
    with _spinner(f"reading {csv_path.name}") as progress:
        task = progress.tasks[0].id

        def show(n: int) -> None:
            progress.update(task, description=f"reading {csv_path.name}: {n:,} rows")

        return csv_training_set(
            csv_path,
            spec,
            rule,
            time_column=time_column,
            encoding=encoding,
            delimiter=delimiter,
            progress=show,
        )


def _read_store(config: Path, pipeline: str, kind: str, spec: FeatureSpec) -> TrainingSet:
    from junction.pipeline.config import load_config
    from junction.pipeline.training_sources import store_training_set
    from junction.store.repo import Store

    cfg = load_config(config)
    if pipeline not in cfg.pipelines:
        raise ConfigError(
            f"the configuration has no pipeline {pipeline!r}",
            context={"pipelines": ", ".join(sorted(cfg.pipelines)) or "none"},
        )
    store = Store.open(cfg.store)
    try:
        with _spinner(f"reading the labelled records of {pipeline}"):
            return store_training_set(store, pipeline, spec, kind=kind)
    finally:
        store.close()


def _slice(
    training: TrainingSet, spec: FeatureSpec, seed: int, calibration: str | None
) -> TrainingSlice:
    """The rows training fits and calibrates on (never the holdout), for CV and tuning."""
    from scoring.tune import training_slice

    return training_slice(
        training.rows,
        training.labels,
        seed=seed,
        spec=spec,
        calibration=calibration,
        times=training.times,
    )


def _tune(
    training: TrainingSet,
    spec: FeatureSpec,
    algorithm: str,
    *,
    trials: int,
    folds: int,
    seed: int,
    calibration: str | None,
    fixed: dict[str, Any],
) -> TuneResult:
    from junction.cli.progress import progress_bar
    from scoring.tune import tune

    data = _slice(training, spec, seed, calibration)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("tuning", total=trials)

        def show(done: int, best: float) -> None:
            progress.update(task, completed=done, description=f"tuning (best CV AUC {best:.4f})")

        return tune(
            data, spec, algorithm, trials=trials, k=folds, seed=seed, fixed=fixed, progress=show
        )


def _cv(
    training: TrainingSet,
    spec: FeatureSpec,
    algorithm: str,
    params: dict[str, Any],
    *,
    folds: int,
    seed: int,
    calibration: str | None,
) -> CvResult:
    from scoring.tune import cross_validate

    data = _slice(training, spec, seed, calibration)
    with _spinner(f"{folds}-fold cross-validation"):
        return cross_validate(data, spec, algorithm, params, k=folds, seed=seed)


def _metrics_table(trained: TrainedModel, cv: CvResult | None, tuned: TuneResult | None) -> Table:
    table = Table("metric", "value", title="holdout metrics")
    for key, value in trained.metrics.items():
        table.add_row(key, f"{value:.4f}")
    if cv is not None:
        table.add_row(f"cv roc_auc ({cv.k}-fold)", f"{cv.mean:.4f} ± {cv.sd:.4f}")
    if tuned is not None:
        table.add_row(f"tuned ({tuned.n_trials} trials)", _params_text(tuned.params))
    table.add_row("algorithm", trained.algorithm)
    table.add_row("calibration", trained.calibration or "none")
    table.add_row("params", _params_text(trained.params) or "defaults")
    table.add_row(
        "rows (train/cal/holdout)",
        f"{trained.n_train}/{trained.n_calibration}/{trained.n_holdout} ({trained.split} split)",
    )
    return table


def _params_text(params: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(params.items()))


def _stage(reg: Registry, name: str, version: str, *, promote: bool, margin: float) -> str:
    """Stage the new version, or put it through the gate; audit a gate decision."""
    from scoring import stages
    from scoring.promotion import promote_if_better

    actor = cli_actor()
    if not promote:
        stages.stage(
            reg.root, name, version, "staging", actor=actor, reason="trained (--no-promote)"
        )
        return "staging (--no-promote)"
    before = stages.read_stages(reg.root, name)
    previous = before.production if before else None
    result = promote_if_better(
        reg.root, name, version, actor=actor, reason="trained", margin=margin
    )
    detail = {
        "version": version,
        "previous": previous,
        "forced": False,
        "reason": "trained",
        "gate": result.to_dict(),
    }
    if result.promoted:
        reg.audit("model.promote", f"model:{name}", detail)
        return f"production (gate: {result.reason})"
    reg.audit("model.promote_refused", f"model:{name}", {**detail, "staged": True})
    return f"staging (gate: {result.reason})"


@app.command("train")
def train(
    csv: Annotated[
        Path | None,
        typer.Option("--csv", dir_okay=False, help="Train on this CSV file (any delimiter)."),
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(help="Train on this pipeline's stored records labelled by outcomes."),
    ] = None,
    kind: Annotated[str, typer.Option(help="Outcome kind that labels stored records.")] = (
        "converted"
    ),
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", dir_okay=False, help="tabular.v1 feature spec (default: leads)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name (default: the spec's name, or lead-score).")
    ] = None,
    algorithm: Annotated[
        Algorithm, typer.Option(help="lr: logistic regression; hgb: gradient boosting.")
    ] = Algorithm.lr,
    calibration: Annotated[
        CalibrationOpt | None,
        typer.Option(help="Probability calibration (default: none for lr, sigmoid for hgb)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the split, the estimators, CV and tuning.")] = (
        DEFAULT_SEED
    ),
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Algorithm parameter KEY=VALUE (repeatable), e.g. c=0.03."),
    ] = None,
    tune_trials: Annotated[
        int, typer.Option("--tune", min=0, help="Optuna trials before training (0: none).")
    ] = 0,
    cv: Annotated[
        int, typer.Option("--cv", min=0, help="Also report K-fold CV ROC AUC (0: none).")
    ] = 0,
    label_column: Annotated[
        str | None,
        typer.Option(help="CSV column of the label (default: the spec's, or converted)."),
    ] = None,
    positive: Annotated[
        list[str] | None,
        typer.Option(help="Label value that counts as positive (repeatable)."),
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="CSV column of row times, for a time split.")
    ] = None,
    encoding: Annotated[str, typer.Option(help="CSV encoding (auto: detected).")] = "auto",
    delimiter: Annotated[str, typer.Option(help="CSV delimiter (auto: sniffed).")] = "auto",
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote",
            help="Promote through the gate vs production (else: staging).",
        ),
    ] = True,
    margin: Annotated[
        float, typer.Option(min=0.0, help="Holdout AUC the new version must gain to promote.")
    ] = 0.005,
    grade_shares: Annotated[
        str | None,
        typer.Option(
            "--grade-shares",
            help="Shares of A,B,C on the holdout, e.g. 0.1,0.2,0.3 (the rest is D).",
        ),
    ] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(help="Grade thresholds A,B,C for the card, e.g. 0.6,0.4,0.2."),
    ] = None,
    models_dir: ModelsDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train a model on a CSV file or on the store's labelled records and register it."""
    if (csv is None) == (pipeline is None):
        fail(ConfigError("give exactly one of --csv FILE and --pipeline NAME"))
    if grade_shares is not None and thresholds is not None:
        fail(ConfigError("give at most one of --grade-shares and --thresholds"))
    folds = cv
    if folds == 1:
        fail(ConfigError("--cv needs at least 2 folds"))
    reg = Registry(models_dir, config)
    algo = ALGORITHMS[algorithm]
    if calibration is None:
        # boosted margins tend to be over-confident: sigmoid; LR's log-odds are calibrated already
        boosted = algorithm in (Algorithm.hgb, Algorithm.xgb)
        calibration = CalibrationOpt.sigmoid if boosted else CalibrationOpt.none
    cal = None if calibration is CalibrationOpt.none else calibration.value
    try:
        grading = _grading(grade_shares, thresholds)
        params = parse_params(param or [])
        spec = _spec(spec_file)
        if csv is not None:
            training = _read_csv(
                csv,
                spec,
                label_column=label_column,
                positive=positive or [],
                time_column=time_column,
                encoding=encoding,
                delimiter=delimiter,
            )
        else:
            assert pipeline is not None
            training = _read_store(config or DEFAULT_CONFIG, pipeline, kind, spec)
        _warn(training)
        tuned = None
        if tune_trials:
            tuned = _tune(
                training,
                spec,
                algo,
                trials=tune_trials,
                folds=folds or 5,
                seed=seed,
                calibration=cal,
                fixed=params,
            )
            params = tuned.params
        trained = _fit(training, spec, algo, cal, params, seed)
        cv_result = (
            _cv(training, spec, algo, params, folds=folds, seed=seed, calibration=cal)
            if folds
            else None
        )
        cuts, grades = _thresholds(trained, training, grading)
        version_dir = _save(
            reg.root,
            name or _default_name(spec),
            trained,
            training,
            cv_result,
            tuned,
            cuts,
            grading[1] if grading is not None and grading[0] == "shares" else None,
        )
        if training.times is not None and trained.split == "random":
            err_console.print(
                "warning: some times are empty or not ISO 8601: the split is random",
                markup=False,
            )
        stage_text = _stage(
            reg, version_dir.parent.name, version_dir.name, promote=promote, margin=margin
        )
    except JunctionError as exc:
        fail(exc)
    console.print(_metrics_table(trained, cv_result, tuned))
    typer.echo(f"grades: {grades}")
    typer.echo(f"saved {version_dir}")
    typer.echo(f"stage: {stage_text}")


def _warn(training: TrainingSet) -> None:
    if training.unreadable:
        err_console.print(f"warning: {training.unreadable} unreadable rows left out", markup=False)
    if training.unlabelled:
        err_console.print(f"note: {training.unlabelled} unlabelled rows left out", markup=False)
    if training.missing_columns:
        missing = ", ".join(training.missing_columns)
        err_console.print(f"warning: no data for the features' fields {missing}", markup=False)


def _fit(
    training: TrainingSet,
    spec: FeatureSpec,
    algorithm: str,
    calibration: str | None,
    params: dict[str, Any],
    seed: int,
) -> TrainedModel:
    from threadpoolctl import threadpool_limits

    from scoring.train import train_model
    from scoring.tune import SINGLE_THREAD_ROWS

    threads = 1 if len(training.rows) < SINGLE_THREAD_ROWS else None
    with (
        _spinner(f"training {algorithm} on {len(training.rows):,} rows"),
        threadpool_limits(threads),
    ):
        return train_model(
            training.rows,
            training.labels,
            seed=seed,
            spec=spec,
            algorithm=algorithm,
            calibration=calibration,
            params=params,
            times=training.times,
        )


Grading = tuple[str, tuple[float, float, float]]
"""``("shares", (a, b, c))`` or ``("thresholds", (a, b, c))``, validated."""


def _grading(shares: str | None, thresholds: str | None) -> Grading | None:
    from scoring.grading import check_shares, check_thresholds

    if shares is not None:
        return "shares", check_shares(parse_triple(shares, "--grade-shares"))
    if thresholds is not None:
        return "thresholds", check_thresholds(parse_triple(thresholds, "--thresholds"))
    return None


def _thresholds(
    trained: TrainedModel, training: TrainingSet, grading: Grading | None
) -> tuple[tuple[float, float, float], str]:
    """The card's thresholds and, in words, the share of the holdout each grade gets."""
    from scoring.grading import (
        DEFAULT_THRESHOLDS,
        grade_shares,
        holdout_proba,
        thresholds_for_shares,
    )

    proba = holdout_proba(trained)
    if grading is None:
        cuts = DEFAULT_THRESHOLDS
    elif grading[0] == "shares":
        cuts = thresholds_for_shares(proba, grading[1])
    else:
        cuts = grading[1]
    got = grade_shares(proba, cuts)
    text = ", ".join(f"{g} >= {cut:.4f} ({got[g]:.1%})" for g, cut in zip("ABC", cuts, strict=True))
    return cuts, f"{text}, D ({got['D']:.1%}) of the holdout"


def _save(
    root: Path,
    name: str,
    trained: TrainedModel,
    training: TrainingSet,
    cv: CvResult | None,
    tuned: TuneResult | None,
    thresholds: tuple[float, float, float],
    shares: tuple[float, float, float] | None,
) -> Path:
    from scoring.registry import save_model

    data = training.card()
    if cv is not None:
        data["cv"] = cv.to_dict()
    if tuned is not None:
        data["tuning"] = tuned.to_dict()
    if shares is not None:  # a retrain recomputes the thresholds from these
        data["grade_shares"] = list(shares)
    return save_model(trained, root, name, training_data=data, thresholds=thresholds)
