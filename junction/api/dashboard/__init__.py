"""The web dashboard at ``/ui``: server-rendered pages over the control plane (issue 10).

Jinja2 templates, inline SVG charts and one small script, all served by the app (no build step,
nothing from a CDN).  People sign in with an API client's credentials and get a signed session
cookie; the pages read and act through the JSON API's own route functions, under the same RBAC
roles.  ``router`` is mounted by ``junction.api.app.create_app``.
"""

from __future__ import annotations

from fastapi import APIRouter

from junction.api.dashboard import flow, registry, repair, views
from junction.api.dashboard.web import PREFIX, DashboardRoute

router = APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)
for _module in (views, flow, repair, registry):
    router.include_router(_module.router)
# last: every other GET under /ui is a 404 page, not the API's JSON
router.add_api_route("/{rest:path}", views.not_found, methods=["GET"])

__all__ = ["PREFIX", "router"]
