"""Inbound webhooks over real HTTP: verify on raw bytes, store, then acknowledge; both stores."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url
from standardwebhooks import Webhook

from junction.api.routes.hooks import HOOK, check_hooks
from junction.core.errors import ConfigError
from junction.store.inbound import seen
from junction.store.tables import inbound_events
from tests.api.harness import HOOK_SECRET, ApiHarness, running_api, write_api_config

HOOK_LIMIT = 65536  # the harness's `partner` hook max_body_bytes
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-partner-secret-32-bytes!").decode()

LEAD = {
    "lead_id": "L-1",
    "email": "Ada.Lovelace@Example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "country": "GB",
    "phone": "+44 20 7946 0018",
}


def signed(
    body: bytes,
    *,
    msg_id: str | None = None,
    ts: int | None = None,
    secrets: Iterable[str] = (HOOK_SECRET,),
) -> dict[str, str]:
    """Standard Webhooks headers, signed by the standardwebhooks package (the sender's side)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if ts is None else ts
    when = datetime.fromtimestamp(ts, tz=UTC)
    sigs = " ".join(Webhook(s).sign(msg_id, when, body.decode()) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sigs,
        "content-type": "application/json",
    }


def post(api: ApiHarness, body: bytes, headers: dict[str, str], source: str = "partner"):
    with api.http() as h:
        return h.post(f"/hooks/{source}", content=body, headers=headers)


def stored(api: ApiHarness) -> int:
    return api.ctx.store.counts("leads")["records"]


def raw_http(
    base_url: str, request: bytes, *, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes, float]:
    """Send raw request bytes on a fresh socket; read the response until the server closes."""
    url = urlsplit(base_url)
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as s:
        # one write, as a sender writes a small request: a server that closes with bytes it
        # never read makes the kernel send a reset, and the reset can discard its answer
        s.sendall(request)
        data = b""
        while True:
            part = s.recv(65536)  # a socket timeout here means the server kept waiting
            if not part:
                break
            data += part
    elapsed = time.monotonic() - started
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body, elapsed


def test_a_signed_delivery_is_stored_before_it_is_acknowledged(api: ApiHarness) -> None:
    body = orjson.dumps({"records": [LEAD, {**LEAD, "lead_id": "L-2", "email": ""}]})
    headers = signed(body)
    r = post(api, body, headers)
    assert r.status_code == 200, r.text
    receipt = r.json()
    event = headers["webhook-id"]
    assert receipt["event_id"] == event
    assert receipt["duplicate"] is False
    assert (receipt["accepted"], receipt["quarantined"]) == (1, 1)
    assert receipt["records"][0]["record_id"] == f"leads:partner:{event}:0"
    assert 0.0 <= receipt["records"][0]["score"]["value"] <= 1.0
    assert [(e["index"], e["stage"]) for e in receipt["errors"]] == [(1, "validate")]
    # the answer came after the commit: the record and the dedupe key are there now
    assert api.ctx.store.fetch_record(f"leads:partner:{event}:0") is not None
    assert seen(api.ctx.store, "partner", event)
    assert api.ctx.store.counts("leads")["quarantined"] == 1
    # personal data stays out of the answer
    assert "Lovelace" not in r.text
    assert "Example.com" not in r.text


@pytest.mark.parametrize(
    "payload",
    [LEAD, [LEAD, {**LEAD, "lead_id": "L-9"}]],
    ids=["one-object", "list"],
)
def test_a_body_may_be_one_object_or_a_list(api_sqlite: ApiHarness, payload: object) -> None:
    body = orjson.dumps(payload)
    r = post(api_sqlite, body, signed(body))
    assert r.status_code == 200, r.text
    n = 1 if isinstance(payload, dict) else 2
    assert r.json()["accepted"] == n
    assert stored(api_sqlite) == n


def test_a_redelivery_is_a_duplicate_and_stored_once(api: ApiHarness) -> None:
    body = orjson.dumps(LEAD)
    first = signed(body)
    assert post(api, body, first).status_code == 200
    # a sender's retry: same id, a new timestamp and signature
    retry = signed(body, msg_id=first["webhook-id"], ts=int(time.time()) + 1)
    again = post(api, body, retry)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["accepted"] == 0
    assert stored(api) == 1


@pytest.mark.parametrize("later_s", [300, 86_400, 3 * 86_400], ids=["5min", "1day", "3days"])
def test_a_redelivery_days_later_after_a_restart_is_still_a_duplicate(
    api: ApiHarness, later_s: int
) -> None:
    """RELIABILITY cases 40 and 55: the dedupe is the store's unique key, kept past any sender's
    retry window (Stripe retries for 3 days), not a cache that a restart or time empties."""
    body = orjson.dumps(LEAD)
    first = signed(body)
    assert post(api, body, first).status_code == 200
    # the first delivery was received ``later_s`` ago: age its dedupe row
    with api.ctx.store.begin() as conn:
        aged = conn.execute(
            update(inbound_events)
            .where(inbound_events.c.event_id == first["webhook-id"])
            .values(received_at=inbound_events.c.received_at - later_s)
        ).rowcount
    assert aged == 1
    # a new process on the same store (the service restarted), and the sender's late retry:
    # same id, signed now
    with running_api(api.root / "junction.yaml") as restarted:
        retry = signed(body, msg_id=first["webhook-id"], ts=int(time.time()))
        again = post(restarted, body, retry)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert stored(restarted) == 1


def _bad_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    body = orjson.dumps(LEAD)
    good = signed(body)
    cases = [
        ("wrong-secret", body, signed(body, secrets=[OTHER_SECRET])),
        ("tampered-body", orjson.dumps({**LEAD, "lead_id": "L-666"}), good),
        ("reserialized-body", orjson.dumps(LEAD, option=orjson.OPT_INDENT_2), good),
        ("garbage-signature", body, {**good, "webhook-signature": "v1,AAAA not-a-sig"}),
        ("unknown-version", body, {**good, "webhook-signature": "v2," + "A" * 43 + "="}),
        ("bad-timestamp", body, {**good, "webhook-timestamp": "hello"}),
    ]
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        cases.append((f"no-{header}", body, {k: v for k, v in good.items() if k != header}))
    return cases


BAD_CASES = [case for case, _, _ in _bad_requests()]


@pytest.mark.parametrize("case", BAD_CASES)
def test_an_unverified_delivery_is_refused(api: ApiHarness, case: str) -> None:
    # signed now, not at collection: a long session would otherwise send stale timestamps
    _, body, headers = next(c for c in _bad_requests() if c[0] == case)
    r = post(api, body, headers)
    assert r.status_code == 401, (case, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "invalid_signature"
    # one answer for every way to fail: nothing that tells an attacker which check failed
    assert problem["detail"] == "the request signature could not be verified"
    assert HOOK_SECRET not in r.text
    assert HOOK_SECRET.removeprefix("whsec_") not in r.text
    assert stored(api) == 0
    assert not seen(api.ctx.store, "partner", headers.get("webhook-id", "x"))


# the window is 300 s; "future" is 305 s ahead because the header is whole seconds (int() drops up
# to one) and the request itself takes time before the server reads its clock, which on a busy
# machine brought a +301 s timestamp back inside the window
@pytest.mark.parametrize("offset", [-301, 305, -86400], ids=["old", "future", "a-day-old"])
def test_a_timestamp_outside_the_window_is_refused(api: ApiHarness, offset: int) -> None:
    body = orjson.dumps(LEAD)
    r = post(api, body, signed(body, ts=int(time.time()) + offset))
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "stale_timestamp"
    assert stored(api) == 0


def test_a_timestamp_inside_the_window_is_accepted(api_sqlite: ApiHarness) -> None:
    body = orjson.dumps(LEAD)
    r = post(api_sqlite, body, signed(body, ts=int(time.time()) - 240))
    assert r.status_code == 200, r.text


def test_during_rotation_any_matching_signature_passes(api_sqlite: ApiHarness) -> None:
    body = orjson.dumps(LEAD)
    # the sender signs with its new secret and the old one; only one is ours
    r = post(api_sqlite, body, signed(body, secrets=[OTHER_SECRET, HOOK_SECRET]))
    assert r.status_code == 200, r.text
    assert stored(api_sqlite) == 1


def test_an_unknown_source_is_404(api_sqlite: ApiHarness) -> None:
    body = orjson.dumps(LEAD)
    r = post(api_sqlite, body, signed(body), source="nobody")
    assert r.status_code == 404
    assert r.json()["code"] == "no_hook"


def test_a_huge_content_length_is_refused_without_reading_the_body(api: ApiHarness) -> None:
    body = orjson.dumps(LEAD)
    head = (
        "POST /hooks/partner HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000000\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed(body).items())
        + "\r\n"
    ).encode()
    # a tiny body follows a header that promises a gigabyte: a server that waited would hang
    status, headers, raw, elapsed = raw_http(api.base_url, head + body, timeout=5)
    assert status == 413
    assert elapsed < 3
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert headers["x-request-id"]
    assert orjson.loads(raw)["code"] == "body_too_large"
    assert stored(api) == 0


def test_a_body_just_over_the_limit_is_drained_and_the_connection_kept(
    api_sqlite: ApiHarness,
) -> None:
    body = orjson.dumps({"records": [LEAD], "pad": "x" * HOOK_LIMIT})
    assert HOOK_LIMIT < len(body) < HOOK_LIMIT + 1024
    with api_sqlite.http() as h:
        # an ordinary client sends the whole body at once and only then reads the answer
        r = h.post("/hooks/partner", content=body, headers=signed(body))
        assert r.status_code == 413
        assert r.json()["code"] == "body_too_large"
        assert "connection" not in r.headers
        # the rest of the body was read and dropped, so the connection serves the next request
        small = orjson.dumps(LEAD)
        again = h.post("/hooks/partner", content=small, headers=signed(small))
        assert again.status_code == 200, again.text
    assert stored(api_sqlite) == 1


def test_expect_continue_gets_413_and_no_invitation_to_send(api_sqlite: ApiHarness) -> None:
    head = (
        "POST /hooks/partner HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        f"Content-Type: application/json\r\nContent-Length: {HOOK_LIMIT + 1}\r\n\r\n"
    ).encode()
    status, headers, raw, _ = raw_http(api_sqlite.base_url, head)
    assert headers["connection"] == "close"
    assert status == 413  # the first status line: no "100 Continue" came before it
    assert b"100 Continue" not in raw


def test_a_chunked_body_is_cut_off_at_the_limit(api: ApiHarness) -> None:
    head = (
        "POST /hooks/partner HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed(b"{}").items())
        + "\r\n"
    ).encode()
    piece = b"x" * 4096
    n = HOOK_LIMIT // len(piece) + 1  # one chunk over the limit, and no final chunk
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(n)]
    status, headers, raw, elapsed = raw_http(api.base_url, head + b"".join(chunks), timeout=5)
    assert status == 413
    assert orjson.loads(raw)["code"] == "body_too_large"
    assert headers["connection"] == "close"
    assert elapsed < 3
    assert stored(api) == 0


def test_a_chunked_body_under_the_limit_streams_through(api_sqlite: ApiHarness) -> None:
    body = orjson.dumps({"records": [LEAD], "pad": "x" * (HOOK_LIMIT - 400)})
    assert len(body) <= HOOK_LIMIT
    headers = signed(body)

    def stream() -> Iterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    with api_sqlite.http() as h:
        r = h.post("/hooks/partner", content=stream(), headers=headers)
    assert r.status_code == 200, r.text
    assert stored(api_sqlite) == 1


def test_other_routes_have_the_api_wide_limit(api_sqlite: ApiHarness) -> None:
    limit = api_sqlite.ctx.cfg.api.max_body_bytes
    head = (
        "POST /api/v1/oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n"
    ).encode()
    status, _, raw, _ = raw_http(api_sqlite.base_url, head)
    assert status == 413
    assert str(limit) in orjson.loads(raw)["detail"]
    # a hook's own (smaller) limit is not applied elsewhere
    small = "grant_type=client_credentials&client_id=x&client_secret=" + "y" * (HOOK_LIMIT + 10)
    with api_sqlite.http() as h:
        r = h.post(
            "/api/v1/oauth/token",
            content=small,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code != 413


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"lead_id": "L-1", "email": ', "invalid_json"),
        (b'\xff\xfe{"lead_id": 1}', "invalid_json"),
        (b'"just a string"', "unexpected_shape"),
        (b"[1, 2]", "unexpected_shape"),
        (b'{"records": []}', "no_records"),
    ],
    ids=["truncated", "not-utf8", "string", "scalars", "empty"],
)
def test_a_verified_but_unreadable_body_is_quarantined_with_its_bytes(
    api: ApiHarness, body: bytes, code: str
) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    ts = int(time.time())
    # signed over the raw bytes, whatever they are (the package signs text, so sign by hand)
    key = base64.b64decode(HOOK_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    for _ in range(2):  # the sender retries a 4xx; the body is quarantined once
        r = post(api, body, headers)
        # not JSON at all: malformed (400); JSON of the wrong shape: unprocessable (422)
        assert r.status_code == (400 if code == "invalid_json" else 422), r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["code"] == code
        assert problem["quarantined"] is True
        assert problem["event_id"] == msg_id
    entries = api.ctx.store.list_quarantine(pipeline="leads")
    assert len(entries) == 1
    entry = entries[0]
    assert bytes(entry["payload"]) == body
    assert entry["stage"] == "extract"
    assert entry["error_code"] == code
    assert entry["record_key"] == f"leads:partner:{msg_id}"
    assert orjson.loads(entry["provenance"])["event_id"] == msg_id
    assert not seen(api.ctx.store, "partner", msg_id)
    assert stored(api) == 0


class TcpProxy:
    """A TCP proxy on 127.0.0.1 that can cut every connection: a store outage on demand."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._up.clear()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def up(self) -> None:
        """Let connections through again."""
        self._up.set()

    def close(self) -> None:
        """Stop the proxy."""
        self.down()
        self._server.close()


class SqliteOutage:
    """The SQLite file disappears (a directory takes its place), then comes back."""

    def __init__(self, api: ApiHarness, db: Path) -> None:
        self.api, self.db = api, db

    def down(self) -> None:
        self.api.ctx.store.engine.dispose()  # pooled connections would outlive a rename
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{self.db}{suffix}")
            if p.exists():
                p.rename(f"{p}.away")
        self.db.mkdir()

    def up(self) -> None:
        self.db.rmdir()
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{self.db}{suffix}.away")
            if p.exists():
                p.rename(f"{self.db}{suffix}")


def test_store_down_is_503_and_the_senders_retry_stores_it(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    proxy: TcpProxy | None = None
    url = store_url
    if store_url.startswith("postgresql"):
        parsed = make_url(store_url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with running_api(write_api_config(tmp_path, store=url, models=models_dir)) as api:
            outage: TcpProxy | SqliteOutage = proxy or SqliteOutage(api, tmp_path / "junction.db")
            body = orjson.dumps(LEAD)
            headers = signed(body)
            deferred = 'junction_hooks_deferred_total{code="unavailable",source="partner"}'
            before = api.metric(deferred)
            outage.down()
            try:
                r = post(api, body, headers)
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "unavailable"
                assert int(r.headers["retry-after"]) >= 1
            finally:
                outage.up()
            assert api.metric(deferred) == before + 1  # what the outage alerts count
            # not marked seen: the sender's retry (same id, fresh signature) stores it
            assert not seen(api.ctx.store, "partner", headers["webhook-id"])
            retry = signed(body, msg_id=headers["webhook-id"])
            ok = post(api, body, retry)
            assert ok.status_code == 200, ok.text
            assert ok.json()["duplicate"] is False
            assert ok.json()["accepted"] == 1
            assert stored(api) == 1
            assert post(api, body, signed(body, msg_id=headers["webhook-id"])).json()["duplicate"]
            assert stored(api) == 1
    finally:
        if proxy is not None:
            proxy.close()


def test_the_hook_route_is_public_and_verified_by_signature(api_sqlite: ApiHarness) -> None:
    assert HOOK.public == "verified by the source's signature on the raw body"
    # no bearer token is needed, and one is not a substitute for the signature
    body = orjson.dumps(LEAD)
    r = post(api_sqlite, body, {**api_sqlite.headers("admin"), "content-type": "application/json"})
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_signature"


BROKEN_HOOKS = """\
    unsigned: {pipeline: leads}
    exotic: {pipeline: leads, verifier: nope, secret: "x"}
"""


@pytest.mark.parametrize("source", ["unsigned", "exotic"])
def test_a_misconfigured_hook_fails_closed(tmp_path: Path, models_dir: Path, source: str) -> None:
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    cfg = write_api_config(tmp_path, store=store, models=models_dir, extra=BROKEN_HOOKS)
    with running_api(cfg) as api:
        with pytest.raises(ConfigError):
            check_hooks(api.ctx)
        body = orjson.dumps(LEAD)
        r = post(api, body, signed(body), source=source)
        assert r.status_code == 500
        assert r.json()["code"] == "hook_misconfigured"
        assert stored(api) == 0
        # the well-configured hook beside them still works
        assert post(api, body, signed(body)).status_code == 200
