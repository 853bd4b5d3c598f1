"""The two servers ``bench api`` compares, each run in its own process pinned to one CPU.

``junction``: Junction's real app (``junction.api.app.create_app``) from a config file.
``naive``: the endpoint integration teams write first: a sync FastAPI route that validates the
body with pydantic, builds the one-row feature matrix and calls the fitted scikit-learn pipeline
per request.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from schemas import Lead  # module level: FastAPI resolves the route's annotation here


def _pin(cpu: int) -> None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass


def naive_app(models_dir: Path) -> Any:
    """A FastAPI app that scores one lead per request with the sklearn pipeline."""
    from fastapi import FastAPI

    from scoring.batch_features import to_matrix
    from scoring.features import extract
    from scoring.registry import latest_version, load_model

    version = latest_version(models_dir, "lead-score")
    loaded = load_model(models_dir / "lead-score" / str(version))
    app = FastAPI()

    @app.post("/score-lead")
    def score_lead(lead: Lead) -> dict[str, Any]:
        value = float(loaded.pipeline.predict_proba(to_matrix([extract(lead)]))[0, 1])
        return {"score": value, "model_version": loaded.version}

    return app


def main(argv: list[str]) -> None:
    """``python -m bench.api_servers junction|naive PATH PORT CPU``."""
    import uvicorn

    kind, path, port, cpu = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    _pin(cpu)
    if kind == "naive":
        app = naive_app(path)
    else:
        from junction.api.app import create_app
        from junction.api.context import ApiContext
        from junction.pipeline.config import load_config
        from junction.pipeline.hub import Hub

        cfg = load_config(path)
        app = create_app(ApiContext(cfg=cfg, hub=Hub(cfg), config_path=path))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws="none",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
