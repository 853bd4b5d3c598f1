"""WebhookSink: verification on raw bytes, size limit, durable dedupe, fault knobs, CLI."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from junction.core.errors import (
    ConfigError,
    EndpointGoneError,
    ParseError,
    RateLimitedError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)
from outbound.base import Delivery, Receipt
from outbound.webhook import WebhookChannel, WebhookConfig, generate_secret
from outbound.webhook.sink import SinkFaults, WebhookSink, read_sink_file, serve

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REPO = Path(__file__).resolve().parents[3]


def signed(
    body: bytes, msg_id: str, secret: str = SECRET, ts: float | None = None
) -> dict[str, str]:
    when = datetime.fromtimestamp(int(time.time() if ts is None else ts), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


def post(
    sink: WebhookSink, body: bytes, headers: dict[str, str], path: str = "/hook"
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", int(sink.url.rsplit(":", 1)[1].strip("/")))
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def send(url: str, *deliveries: Delivery, **cfg) -> list[Receipt | Exception]:
    async def run():
        out: list[Receipt | Exception] = []
        async with WebhookChannel(WebhookConfig(url=url, secret=SECRET, **cfg)) as channel:
            for item in deliveries:
                try:
                    out.append(await channel.send(item))
                except Exception as exc:
                    out.append(exc)
        return out

    return asyncio.run(run())


def delivery(delivery_id: str, payload: bytes = b'{"lead_id": "L-1"}') -> Delivery:
    return Delivery(delivery_id, "webhook.demo", "lead.scored", payload)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "sink.jsonl"


def test_accepts_a_signed_delivery_and_stores_it_durably(out: Path) -> None:
    body = b'{"lead_id": "L-7", "score": 0.8}'
    with WebhookSink(SECRET, out) as sink:
        status, reply = post(sink, body, signed(body, "msg_1"))
        stats = sink.stats()
    assert status == 200
    assert json.loads(reply) == {"status": "accepted"}
    assert stats == {
        "received": 1,
        "verified": 1,
        "rejected": 0,
        "unique": 1,
        "duplicates": 0,
        "injected": 0,
    }
    (record,) = read_sink_file(out)
    assert record["webhook_id"] == "msg_1"
    assert record["body"] == {"lead_id": "L-7", "score": 0.8}
    assert datetime.fromisoformat(record["received_at"]).tzinfo is not None
    assert out.stat().st_mode & 0o777 == 0o600


def _tamper(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"0.8", b"0.9"), headers


def _reserialize(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    # same JSON value, different whitespace: verification must run on the raw bytes
    return json.dumps(json.loads(body), separators=(",", ":")).encode(), headers


def _drop(name: str):
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {k: v for k, v in headers.items() if k != name}

    return change


def _set(name: str, value: str):
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {**headers, name: value}

    return change


@pytest.mark.parametrize(
    "change",
    [
        _tamper,
        _reserialize,
        _drop("webhook-signature"),
        _drop("webhook-id"),
        _drop("webhook-timestamp"),
        _set("webhook-timestamp", "hello"),
        _set("webhook-timestamp", str(int(time.time()) - 301 - 5)),
        _set("webhook-timestamp", str(int(time.time()) + 301 + 5)),
        _set("webhook-id", "msg_other"),
        _set("webhook-signature", "v2,abc"),
        _set("webhook-signature", "garbage"),
        _set("webhook-signature", "v1,not-base64!!"),
    ],
    ids=[
        "tampered-body",
        "reserialized-body",
        "no-signature",
        "no-id",
        "no-timestamp",
        "bad-timestamp",
        "stale",
        "future",
        "id-swapped",
        "unknown-version",
        "malformed-signature",
        "bad-base64",
    ],
)
def test_rejects_what_does_not_verify(out: Path, change) -> None:
    body = b'{"lead_id": "L-7", "score": 0.8}'
    bad_body, bad_headers = change(body, signed(body, "msg_1"))
    with WebhookSink(SECRET, out) as sink:
        status, _ = post(sink, bad_body, bad_headers)
        stats = sink.stats()
    assert status == 401
    assert stats["rejected"] == 1
    assert stats["verified"] == 0
    assert read_sink_file(out) == []


def test_wrong_secret_is_rejected_and_multi_signature_with_one_valid_accepted(out: Path) -> None:
    body = b'{"a": 1}'
    other = generate_secret()
    with WebhookSink(SECRET, out) as sink:
        assert post(sink, body, signed(body, "msg_w", secret=other))[0] == 401
        headers = signed(body, "msg_m")
        wrong = signed(body, "msg_m", secret=other)["webhook-signature"]
        headers["webhook-signature"] = f"v1a,xyz= {wrong} {headers['webhook-signature']}"
        assert post(sink, body, headers)[0] == 200


def test_sink_with_several_secrets_accepts_either(out: Path) -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"a": 1}'
    with WebhookSink([new, old], out) as sink:
        assert post(sink, body, signed(body, "m1", secret=old))[0] == 200
        assert post(sink, body, signed(body, "m2", secret=new))[0] == 200
        assert post(sink, body, signed(body, "m3", secret=SECRET))[0] == 401


def test_invalid_sink_secret_is_a_config_error(out: Path) -> None:
    with pytest.raises(ConfigError):
        WebhookSink("not-a-secret", out)
    with pytest.raises(ConfigError):
        WebhookSink([], out)


def test_body_not_json_is_rejected(out: Path) -> None:
    body = b"not json"
    with WebhookSink(SECRET, out) as sink:
        assert post(sink, body, signed(body, "m"))[0] == 400
        assert sink.stats()["rejected"] == 1


def test_body_too_large_gets_413_with_and_without_content_length(out: Path) -> None:
    limit = 64 * 1024
    body = b'{"pad": "' + b"x" * (limit + 10) + b'"}'
    with WebhookSink(SECRET, out, max_body_bytes=limit) as sink:
        assert post(sink, body, signed(body, "big"))[0] == 413
        port = int(sink.url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port)
        try:
            # chunked: no Content-Length, the limit must hold while streaming
            conn.request(
                "POST", "/hook", body=iter([body[:40000], body[40000:]]), headers=signed(body, "c")
            )
            assert conn.getresponse().status == 413
        finally:
            conn.close()
        ok = b'{"pad": "' + b"x" * (limit - 20) + b'"}'
        assert post(sink, ok, signed(ok, "fits"))[0] == 200
        stats = sink.stats()
    assert stats["rejected"] == 2
    assert stats["unique"] == 1


def test_duplicates_get_200_without_a_second_line(out: Path) -> None:
    body = b'{"a": 1}'
    with WebhookSink(SECRET, out) as sink:
        assert post(sink, body, signed(body, "dup"))[0] == 200
        status, reply = post(sink, body, signed(body, "dup"))
        stats = sink.stats()
    assert status == 200
    assert json.loads(reply) == {"status": "duplicate"}
    assert stats["unique"] == 1
    assert stats["duplicates"] == 1
    assert len(read_sink_file(out)) == 1


def test_dedupe_survives_a_restart(out: Path) -> None:
    body = b'{"a": 1}'
    with WebhookSink(SECRET, out) as sink:
        assert post(sink, body, signed(body, "keep"))[0] == 200
    with WebhookSink(SECRET, out) as sink:
        assert post(sink, body, signed(body, "keep"))[0] == 200
        assert post(sink, body, signed(body, "fresh"))[0] == 200
        stats = sink.stats()
    assert stats["duplicates"] == 1
    assert stats["unique"] == 1
    assert [r["webhook_id"] for r in read_sink_file(out)] == ["keep", "fresh"]


def test_torn_last_line_is_dropped_at_start(out: Path) -> None:
    out.write_bytes(b'{"webhook_id":"a","received_at":"x","body":{}}\n{"webhook_id":"b","rec')
    assert [r["webhook_id"] for r in read_sink_file(out)] == ["a"]
    body = b'{"b": 2}'
    with WebhookSink(SECRET, out) as sink:
        assert post(sink, body, signed(body, "b"))[0] == 200
        assert sink.stats()["unique"] == 1  # "b" was never acknowledged, so it is new
    assert [r["webhook_id"] for r in read_sink_file(out)] == ["a", "b"]


def test_corrupt_middle_line_refuses_to_start(out: Path) -> None:
    out.write_bytes(b"garbage\n" + b'{"webhook_id":"a","received_at":"x","body":{}}\n')
    with pytest.raises(ParseError):
        read_sink_file(out)
    with pytest.raises(ParseError):
        WebhookSink(SECRET, out).start()


def test_concurrent_retries_of_one_id_store_one_line(out: Path) -> None:
    with WebhookSink(SECRET, out) as sink:
        results = send(sink.url, *[delivery("same")] * 1)  # warm the file
        assert isinstance(results[0], Receipt)

        async def burst():
            async with WebhookChannel(WebhookConfig(url=sink.url, secret=SECRET)) as channel:
                items = [delivery("race")] * 20 + [delivery(f"u{i}") for i in range(30)]
                return await asyncio.gather(*(channel.send(d) for d in items))

        receipts = asyncio.run(burst())
        stats = sink.stats()
    assert all(r.status_code == 200 for r in receipts)
    assert stats["unique"] == 1 + 1 + 30
    assert stats["duplicates"] == 19
    ids = [r["webhook_id"] for r in read_sink_file(out)]
    assert ids.count("race") == 1
    assert len(ids) == 32


def test_fail_first_then_success_and_same_id_dedupes(out: Path) -> None:
    with WebhookSink(SECRET, out, faults=SinkFaults(fail_first=2)) as sink:
        results = send(sink.url, *[delivery("retry-me")] * 4)
        stats = sink.stats()
    assert [type(r) for r in results] == [UnavailableError, UnavailableError, Receipt, Receipt]
    assert stats["injected"] == 2
    assert stats["unique"] == 1
    assert stats["duplicates"] == 1
    assert len(read_sink_file(out)) == 1


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (SinkFaults(status=410), EndpointGoneError),
        (SinkFaults(status=429, retry_after="120"), RateLimitedError),
        (SinkFaults(status=503), UnavailableError),
        (SinkFaults(redirect_to="http://127.0.0.1:9/elsewhere"), RetryableError),
    ],
    ids=["gone", "rate-limited", "unavailable", "redirect"],
)
def test_fault_knobs_reach_the_channel_as_classified_errors(out: Path, faults, expected) -> None:
    with WebhookSink(SECRET, out, faults=faults) as sink:
        (result,) = send(sink.url, delivery("x"))
    assert type(result) is expected
    if isinstance(result, RateLimitedError):
        assert result.retry_after == 120
    assert read_sink_file(out) == []


def test_redirect_target_is_never_visited(out: Path, tmp_path: Path) -> None:
    with WebhookSink(SECRET, tmp_path / "target.jsonl") as target:
        faults = SinkFaults(redirect_to=target.url + "stolen")
        with WebhookSink(SECRET, out, faults=faults) as sink:
            (result,) = send(sink.url, delivery("x"))
        assert type(result) is RetryableError
        assert result.context["status_code"] == 308
        assert target.stats()["received"] == 0


def test_fixed_2xx_status_still_stores(out: Path) -> None:
    with WebhookSink(SECRET, out, faults=SinkFaults(status=202)) as sink:
        (result,) = send(sink.url, delivery("x"))
    assert isinstance(result, Receipt)
    assert result.status_code == 202
    assert len(read_sink_file(out)) == 1


def test_delay_makes_a_slow_receiver_and_knobs_change_at_runtime(out: Path) -> None:
    with WebhookSink(SECRET, out, faults=SinkFaults(delay_s=2.0)) as sink:
        started = time.monotonic()
        (result,) = send(sink.url, delivery("slow"), timeout_s=0.3)
        assert isinstance(result, RemoteTimeoutError)
        assert time.monotonic() - started < 1.5
        sink.faults.delay_s = 0.0
        # a generous timeout: the point is the knob, not speed (0.3 s timed out on loaded CI)
        (result,) = send(sink.url, delivery("slow"), timeout_s=5.0)
        assert isinstance(result, Receipt)


def test_stats_endpoint(out: Path) -> None:
    body = b'{"a": 1}'
    with WebhookSink(SECRET, out) as sink:
        post(sink, body, signed(body, "s1"))
        post(sink, body, {"content-type": "application/json"})
        port = int(sink.url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        stats = json.loads(resp.read())
        conn.close()
    assert resp.status == 200
    assert stats["received"] == 2
    assert stats["unique"] == 1
    assert stats["rejected"] == 1


def test_stop_is_idempotent_and_port_in_use_raises(out: Path, tmp_path: Path) -> None:
    sink = WebhookSink(SECRET, out).start()
    port = int(sink.url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OSError, match=r"(?i)in use"):
        WebhookSink(SECRET, tmp_path / "b.jsonl", port=port).start()
    sink.stop()
    sink.stop()


def test_serve_runs_in_the_current_loop_until_stopped(out: Path) -> None:
    async def run():
        stop = asyncio.Event()
        urls: list[str] = []
        task = asyncio.create_task(serve(SECRET, out, port=0, stop=stop, on_ready=urls.append))
        while not urls:
            await asyncio.sleep(0.01)
        async with WebhookChannel(WebhookConfig(url=urls[0], secret=SECRET)) as channel:
            await channel.send(delivery("in-loop"))
        stop.set()
        return await task

    stats = asyncio.run(run())
    assert stats["unique"] == 1
    assert [r["webhook_id"] for r in read_sink_file(out)] == ["in-loop"]


def test_cli_runs_until_sigterm(out: Path) -> None:
    env = {**os.environ, "JUNCTION_SINK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outbound.webhook.sink", "--port", "0", "--out", str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("webhook sink listening on http://127.0.0.1:"), proc.communicate()
        url = line.rsplit(" ", 1)[1].strip()
        (result,) = send(url, delivery("cli-1"))
        assert isinstance(result, Receipt)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert json.loads(stdout.strip().splitlines()[-1])["unique"] == 1
    assert [r["webhook_id"] for r in read_sink_file(out)] == ["cli-1"]


def test_cli_without_a_secret_fails(out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JUNCTION_SINK_SECRET"}
    proc = subprocess.run(
        [sys.executable, "-m", "outbound.webhook.sink", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "secret" in proc.stderr
