"""Routes: the model registry: models and their stages, versions and cards; promote and rollback.

Reading needs READ.  Promoting and rolling back change what every pipeline scores with, so they
need ADMIN and are audited (``model.promote``, ``model.promote_refused``, ``model.rollback``, by
the calling client).  A promotion goes through the promotion gate unless ``force`` is set: a
candidate whose holdout metric does not beat production's by ``margin`` is left in staging and
the answer is 409 with the gate's verdict.  Errors: 404 unknown model or version, 409 a refused
change (gate failed, nothing to roll back to), 422 a version that fails its integrity checks,
500 a corrupt ``stages.json`` (the registry refuses to guess what production is).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from junction.api.audit import audit_action
from junction.api.context import ctx_of
from junction.api.paging import PAGED, CursorQuery, LimitQuery, decode_cursor, page
from junction.api.policy import ADMIN, READ, Principal
from junction.api.problems import ApiProblem
from junction.api.schemas import Page, problem
from junction.core.errors import ConfigError, JunctionError, ModelLoadError
from scoring import stages
from scoring.promotion import GateResult, gate, promote_if_better

router = APIRouter(tags=["models"])

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
VERSION_PATTERN = r"^[0-9]{1,12}$"
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="Model name, e.g. lead-score.")]
Version = Annotated[str, Path(pattern=VERSION_PATTERN, description="Version number.")]
Metric = Literal["roc_auc", "pr_auc", "lift_top_decile", "brier"]
_TEXT = r"^[^\x00]*$"


class ModelPublic(BaseModel):
    """A model and its stages (``production`` before any promotion: the newest usable version)."""

    name: str
    production: str | None
    staging: str | None
    archived: list[str]
    versions: int


class VersionSummary(BaseModel):
    """One version: stage and the headline of its card."""

    version: str
    stage: Literal["production", "staging", "archived", "none"]
    created_at: str | None = None
    model_type: str | None = None
    roc_auc: float | None = Field(None, description="Holdout ROC AUC from the card.")


class VersionPublic(BaseModel):
    """One version's stage and its whole model card."""

    name: str
    version: str
    stage: Literal["production", "staging", "archived", "none"]
    card: dict[str, Any]


class PromoteRequest(BaseModel):
    """Make a version production, through the promotion gate unless ``force``."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(..., pattern=VERSION_PATTERN, description="The candidate version.")
    reason: str = Field("", max_length=500, pattern=_TEXT, description="Why (kept in history).")
    force: bool = Field(False, description="Skip the gate (the version must still load).")
    margin: float = Field(0.005, ge=0.0, le=1.0, description="How much the candidate must win by.")
    metric: Metric = Field("roc_auc", description="Holdout metric compared (brier: lower wins).")


class RollbackRequest(BaseModel):
    """Put the previous production version back."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500, pattern=_TEXT, description="Why (kept in history).")


class GateOut(BaseModel):
    """The promotion gate's verdict."""

    passed: bool
    reason: str
    metric: str
    margin: float
    candidate: float | None
    production: float | None
    promoted: bool


class StageChange(BaseModel):
    """The model's stages after a promote or rollback."""

    name: str
    production: str | None
    previous: str | None = Field(description="Production before the change.")
    staging: str | None
    archived: list[str]
    gate: GateOut | None = None


def _problem(exc: JunctionError) -> ApiProblem:
    """The answer for a registry error (a typed error's user message only, never a path)."""
    if exc.code == "model_version_unknown":
        return ApiProblem(404, "Not found", exc.user_message, code="model_not_found")
    if exc.code == "model_stages_corrupt":
        return ApiProblem(500, "Registry corrupt", exc.user_message, code=exc.code)
    if isinstance(exc, ModelLoadError):
        return ApiProblem(422, "Model cannot load", exc.user_message, code=exc.code)
    if isinstance(exc, ConfigError) and exc.code in (
        "nothing_to_roll_back",
        "model_in_production",
        "production_changed",
    ):
        return ApiProblem(409, "Conflict", exc.user_message, code=exc.code)
    return ApiProblem(400, "Bad request", exc.user_message, code=exc.code)


def _root(request: Request) -> str:
    return ctx_of(request).cfg.models_dir


def _model(root: str, name: str) -> dict[str, Any]:
    stored = stages.read_stages(root, name)
    return {
        "name": name,
        "production": stages.production_version(root, name),
        "staging": stored.staging if stored else None,
        "archived": list(stored.archived) if stored else [],
        "versions": len(stages.versions(root, name)),
    }


def _summary(root: str, name: str, version: str) -> dict[str, Any]:
    try:
        card = stages.read_card(root, name, version)
    except ModelLoadError:
        card = {}  # the version is listed; its card's error shows on the version itself
    metrics = card.get("metrics")
    holdout = metrics.get("holdout") if isinstance(metrics, dict) else None
    auc = holdout.get("roc_auc") if isinstance(holdout, dict) else None
    kind = card.get("algorithm") or card.get("model_type")
    created = card.get("created_at")
    return {
        "version": version,
        "stage": stages.stage_of(root, name, version),
        "created_at": created if isinstance(created, str) else None,
        "model_type": kind if isinstance(kind, str) else None,
        "roc_auc": auc if isinstance(auc, int | float) and not isinstance(auc, bool) else None,
    }


@router.get("/models", response_model=Page[ModelPublic], responses=PAGED)
def list_models(
    request: Request,
    _: Annotated[Principal, Depends(READ)],
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """The registry's models with their production, staging and archived versions."""
    after = decode_cursor("models", cursor, str)
    root = _root(request)
    names = [n for n in stages.list_models(root) if after is None or n > after]
    items = []
    for name in names[:limit]:
        try:
            items.append(_model(root, name))
        except JunctionError as exc:
            raise _problem(exc) from None
    return page("models", items, names[limit - 1] if len(names) > limit else None)


@router.get(
    "/models/{name}/versions",
    response_model=Page[VersionSummary],
    responses={**PAGED, 404: problem("Unknown model.")},
)
def list_versions(
    request: Request,
    name: ModelName,
    _: Annotated[Principal, Depends(READ)],
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """A model's versions, oldest first, with their stage and card headline."""
    after = decode_cursor(f"models.{name}", cursor, int)
    root = _root(request)
    try:
        found = [v for v in stages.require_model(root, name) if after is None or int(v) > after]
        items = [_summary(root, name, v) for v in found[:limit]]
    except JunctionError as exc:
        raise _problem(exc) from None
    nxt = int(found[limit - 1]) if len(found) > limit else None
    return page(f"models.{name}", items, nxt)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=VersionPublic,
    responses={404: problem("Unknown model or version."), 422: problem("Unreadable card.")},
)
def get_version(
    request: Request,
    name: ModelName,
    version: Version,
    _: Annotated[Principal, Depends(READ)],
) -> dict[str, Any]:
    """One version's stage and model card (training data, features, metrics, limits...)."""
    root = _root(request)
    try:
        card = stages.read_card(root, name, version)
        stage = stages.stage_of(root, name, version)
    except JunctionError as exc:
        raise _problem(exc) from None
    return {"name": name, "version": version, "stage": stage, "card": card}


def _change(
    root: str, name: str, previous: str | None, result: GateResult | None
) -> dict[str, Any]:
    model = _model(root, name)
    return {
        "name": name,
        "production": model["production"],
        "previous": previous,
        "staging": model["staging"],
        "archived": model["archived"],
        "gate": result.to_dict() if result else None,
    }


@router.post(
    "/models/{name}/promote",
    response_model=StageChange,
    responses={
        404: problem("Unknown model or version."),
        409: problem("The candidate failed the promotion gate (it stays in staging)."),
        422: problem("The version fails its integrity checks."),
    },
)
def promote_version(
    request: Request,
    name: ModelName,
    body: PromoteRequest,
    principal: Annotated[Principal, Depends(ADMIN)],
) -> dict[str, Any]:
    """Make a version production if it beats production on the holdout (or with ``force``)."""
    root = _root(request)
    actor = f"api:{principal.client_id}"
    try:
        stored = stages.read_stages(root, name)
        previous = stored.production if stored else None
        if body.force:
            current = stages.production_version(root, name)
            candidate = stages.read_card(root, name, body.version)
            baseline = (
                stages.read_card(root, name, current)
                if current and current != body.version
                else None
            )
            shown = gate(candidate, baseline, metric=body.metric, margin=body.margin)
            why = f"forced past the gate ({shown.reason})"
            stages.promote(
                root,
                name,
                body.version,
                actor=actor,
                reason=f"{body.reason}; {why}" if body.reason else why,
            )
            result = GateResult(**{**shown.__dict__, "promoted": previous != body.version})
        else:
            result = promote_if_better(
                root,
                name,
                body.version,
                actor=actor,
                reason=body.reason,
                metric=body.metric,
                margin=body.margin,
            )
    except JunctionError as exc:
        raise _problem(exc) from None
    detail = {
        "version": body.version,
        "previous": previous,
        "forced": body.force,
        "reason": body.reason,
        "gate": result.to_dict(),
    }
    if not body.force and not result.passed:
        audit_action(request, "model.promote_refused", f"model:{name}", {**detail, "staged": True})
        raise ApiProblem(
            409,
            "Promotion refused",
            f"the candidate failed the promotion gate and stays in staging: {result.reason}",
            code="gate_failed",
            extra={"gate": result.to_dict()},
        )
    if result.promoted:
        audit_action(request, "model.promote", f"model:{name}", detail)
    return _change(root, name, previous, result)


@router.post(
    "/models/{name}/rollback",
    response_model=StageChange,
    responses={
        404: problem("Unknown model."),
        409: problem("There is no earlier production version."),
        422: problem("The earlier version fails its integrity checks."),
    },
)
def rollback_model(
    request: Request,
    name: ModelName,
    principal: Annotated[Principal, Depends(ADMIN)],
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Put the previous production version back; the current one is archived (body optional)."""
    body = body or RollbackRequest()
    root = _root(request)
    try:
        previous = stages.production_version(root, name)
        after = stages.rollback(root, name, actor=f"api:{principal.client_id}", reason=body.reason)
    except JunctionError as exc:
        raise _problem(exc) from None
    detail = {"version": after.production, "previous": previous, "reason": body.reason}
    audit_action(request, "model.rollback", f"model:{name}", detail)
    return _change(root, name, previous, None)
