"""``POST /api/v1/subjects/erase`` over real HTTP: admin only, audited, never echoes the person."""

from __future__ import annotations

from pathlib import Path

import orjson

from junction.core.pseudonym import Pseudonymizer
from junction.store.audit import AuditLog
from junction.store.suppressions import SuppressionList
from tests.api.harness import running_api, write_api_config
from tests.privacy.conftest import CANARIES, record_row

V1 = "/api/v1"
ANN = CANARIES[0]


def test_admins_erase_a_person_over_the_api(
    tmp_path: Path, store_url: str, models_dir: Path, kek: str
) -> None:
    cfg = write_api_config(
        tmp_path, store=store_url, models=models_dir, extra=f"privacy:\n  kek: {kek}\n"
    )
    with running_api(cfg) as api:
        store = api.ctx.store
        body = {"emails": [ANN["email"]], "phones": [ANN["phone"]]}
        with api.http() as h:
            # the first call turns encryption on (the privacy section); nobody is stored yet
            denied = h.post(f"{V1}/subjects/erase", json=body, headers=api.headers("operator"))
            assert denied.status_code == 403
            nobody = h.post(f"{V1}/subjects/erase", json={}, headers=api.headers("admin"))
            assert nobody.status_code == 422
            first = h.post(
                f"{V1}/subjects/erase",
                json={"emails": ["x@y.example"]},
                headers=api.headers("admin"),
            )
            assert first.status_code == 200, first.text
            records = [record_row(i, p) for i, p in enumerate(CANARIES)]
            store.write_batch(
                records=records, scores=[], deliveries=[], quarantined=[], cursor=None
            )
            r = h.post(f"{V1}/subjects/erase", json=body, headers=api.headers("admin"))
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["records"] == 1
        assert out["keys_destroyed"] == 1
        assert out["suppressed"] == 2
        for word in (ANN["email"], ANN["phone"], ANN["first_name"]):
            assert word not in r.text  # type: ignore[operator]
        assert store.fetch_record("leads:f00d:0") is None
        assert store.fetch_record("leads:f00d:1") is not None
        state = Path(api.ctx.cfg.models_dir).parent
        pseudonyms = Pseudonymizer.load(state)
        audit = AuditLog(store, pseudonyms)
        entry = audit.query(action="subject.erase")[0]
        assert entry.id == out["audit_id"]
        assert entry.request_id == r.headers["x-request-id"]
        assert entry.target == f"subject:{out['subjects'][0]}"
        assert ANN["email"] not in orjson.dumps(entry.detail).decode()  # type: ignore[operator]
        assert audit.verify() is None
        sl = SuppressionList(store, pseudonyms)
        assert sl.suppressed("email", [ANN["email"]]) == {ANN["email"]}  # type: ignore[list-item]
