"""Dashboard pages: the model registry: versions and stages, model cards, promote and rollback.

Promote and rollback call the API's route functions (the promotion gate, the audit entries);
both need ADMIN, in the forms shown and in the policy that checks them.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from pydantic import ValidationError
from starlette.responses import Response

from junction.api.context import ctx_of
from junction.api.dashboard import aggregates, charts
from junction.api.dashboard.cache import cached
from junction.api.dashboard.session import UI_ADMIN, UI_READ
from junction.api.dashboard.views import flash_back
from junction.api.dashboard.web import PREFIX, DashboardRoute, render
from junction.api.policy import Principal
from junction.api.problems import ApiProblem
from junction.api.routes import models
from junction.store import drift

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)
ModelName = Annotated[str, Path(pattern=models.NAME_PATTERN)]
Version = Annotated[str, Path(pattern=models.VERSION_PATTERN)]
_TEXT = re.compile(r"^[^\x00]*$")
SAMPLE = 20_000  # the histogram and the A/B table read the newest scores of each version


@router.get("/models")
def models_page(request: Request, principal: Annotated[Principal, Depends(UI_READ)]) -> Response:
    """Every model with its stages and versions."""
    ctx = ctx_of(request)
    store = ctx.store
    out: list[dict[str, Any]] = []
    labels = [f"{i / 10:.1f}" for i in range(10)]
    for m in models.list_models(request, principal, 100, None)["items"]:
        versions = models.list_versions(request, m["name"], principal, 100, None)["items"]
        name = m["name"]
        hist = cached(
            ctx,
            ("histogram", name),
            partial(aggregates.score_histogram, store, name, latest=SAMPLE),
        )
        ab = cached(
            ctx, ("variants", name), partial(aggregates.variants, store, name, latest=SAMPLE)
        )
        reports = drift.list_reports(store, model=m["name"], limit=1)
        report = reports[0] if reports else None
        features = [f for f in report.features if f.kind != "prediction"] if report else []
        out.append(
            {
                **m,
                "version_list": list(reversed(versions)),
                "histogram": charts.bar_chart(
                    "Score distribution (all versions)",
                    [float(n) for n in hist],
                    labels,
                ),
                "variants": ab,
                "drift": report,
                "drift_chart": charts.bar_chart(
                    "Drift per feature (PSI, newest check)",
                    [f.psi for f in features],
                    [f.name for f in features],
                )
                if features
                else None,
                "features": features,
            }
        )
    return render(request, "models.html", {"models": out, "sample": SAMPLE})


@router.get("/models/{name}/versions/{version}")
def version_page(
    request: Request,
    name: ModelName,
    version: Version,
    principal: Annotated[Principal, Depends(UI_READ)],
) -> Response:
    """One version's model card."""
    found = models.get_version(request, name, version, principal)
    return render(request, "model_version.html", {"v": found})


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not _TEXT.match(reason):
        raise ApiProblem(422, "Invalid reason", "the reason holds a NUL", code="bad_reason")
    return reason


@router.post("/models/{name}/promote")
def promote(
    request: Request,
    name: ModelName,
    principal: Annotated[Principal, Depends(UI_ADMIN)],
    version: Annotated[str, Form(max_length=12)],
    reason: Annotated[str, Form(max_length=500)] = "",
    force: Annotated[bool, Form()] = False,
) -> Response:
    """Make a version production, through the promotion gate unless forced."""
    try:
        body = models.PromoteRequest(version=version, reason=_reason(reason), force=force)
    except ValidationError:
        raise ApiProblem(
            422, "Invalid version", "choose a listed version", code="bad_version"
        ) from None
    try:
        out = models.promote_version(request, name, body, principal)
    except ApiProblem as exc:
        if exc.code != "gate_failed":
            raise
        return flash_back(request, f"{PREFIX}/models", "warn", exc.detail or exc.title)
    return flash_back(
        request, f"{PREFIX}/models", "ok", f"{name}: production is now {out['production']}."
    )


@router.post("/models/{name}/rollback")
def rollback(
    request: Request,
    name: ModelName,
    principal: Annotated[Principal, Depends(UI_ADMIN)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Put the previous production version back."""
    body = models.RollbackRequest(reason=_reason(reason))
    out = models.rollback_model(request, name, principal, body)
    return flash_back(
        request, f"{PREFIX}/models", "ok", f"{name}: rolled back to {out['production']}."
    )
