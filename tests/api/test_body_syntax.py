"""What a JSON route answers for a body it cannot read (RELIABILITY.md C31).

Malformed JSON is a syntax error: 400 ``invalid_json``.  Well-formed JSON of the wrong shape or
values is unprocessable: 422 ``invalid_request``.  A body sent as another media type than JSON
(or as none) is 415 ``unsupported_media_type``.  Every answer is problem+json, names no input
value, and changes nothing.
"""

from __future__ import annotations

import httpx
import pytest

from junction.store.outbox import endpoint_health
from tests.api.harness import ApiHarness

DISABLE = "/api/v1/channels/webhook.sales/disable"  # a JSON body: {"reason": "..."}
SECRETISH = "4111111111111111"  # a value that must never be echoed back


def _post(api: ApiHarness, content: bytes, content_type: str | None) -> httpx.Response:
    headers = api.headers("operator")
    if content_type is not None:
        headers["content-type"] = content_type
    with api.http() as h:
        return h.post(DISABLE, content=content, headers=headers)


def _assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["status"], body["code"]) == (status, code)
    assert SECRETISH not in r.text


@pytest.mark.parametrize(
    "content",
    [
        b'{"reason": "' + SECRETISH.encode(),  # truncated
        b"{'reason': 'single quotes'}",
        b'{"reason": "x",}',  # trailing comma
        b"\xff\xfe{}",  # not UTF-8
    ],
    ids=["truncated", "single-quotes", "trailing-comma", "not-utf8"],
)
def test_malformed_json_is_400(api_sqlite: ApiHarness, content: bytes) -> None:
    r = _post(api_sqlite, content, "application/json")
    _assert_problem(r, 400, "invalid_json")
    assert r.json()["errors"][0]["type"] == "json_invalid"
    assert endpoint_health(api_sqlite.ctx.store).get("webhook.sales", {}).get("disabled") in (
        None,
        False,
    )


@pytest.mark.parametrize(
    "content",
    [b'{"reason": 4111111111111111}', b'{"why": "x"}', b'["reason"]', b"null"],
    ids=["wrong-type", "missing-field", "array", "null"],
)
def test_well_formed_json_of_the_wrong_shape_is_422(api_sqlite: ApiHarness, content: bytes) -> None:
    _assert_problem(_post(api_sqlite, content, "application/json"), 422, "invalid_request")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"],
    ids=["none", "text", "form", "xml"],
)
def test_another_media_type_is_415(api_sqlite: ApiHarness, content_type: str | None) -> None:
    r = _post(api_sqlite, b'{"reason": "receiver down"}', content_type)
    _assert_problem(r, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_under_its_media_type_is_read(api_sqlite: ApiHarness, content_type: str) -> None:
    # the positive control: the same route takes the body when it is JSON
    r = _post(api_sqlite, b'{"reason": "receiver down"}', content_type)
    assert r.status_code == 200, r.text
    assert endpoint_health(api_sqlite.ctx.store)["webhook.sales"]["disabled"] is True
