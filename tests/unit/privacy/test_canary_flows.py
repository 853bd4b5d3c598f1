"""Canary personal data pushed through every path that logs: the PII canary plugin then greps
every log line of the session (tests/pii_canary_plugin.py) and fails it on a hit.

The paths: a CSV file drop (a good record, a failing mapping, a failing rule), deliveries that
fail (Twilio refuses the number, Slack answers 500, a webhook's port is closed), the quarantine
and its replay, the API push (in this process), and ``junction run --once`` as a subprocess.
The tests here also check the tee and the pseudonyms themselves.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from junction.core import logging as jlog
from junction.core.logging import TEE_ENV
from tests.fakes.server import serve_app
from tests.fakes.slack import WEBHOOK_PATH, FakeSlack
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.pii_canary_plugin import CanaryCheck
from tests.privacy_canaries import (
    CANARY_EMAIL,
    CANARY_EMAIL_2,
    CANARY_FIRST,
    CANARY_LAST,
    CANARY_PHONE,
    CANARY_PHONE_2,
    needles,
)

HEADER = "lead_id,first_name,last_name,email,phone,country,company,employees,title\n"
ROWS = (
    f"L-1,{CANARY_FIRST},{CANARY_LAST},{CANARY_EMAIL},{CANARY_PHONE},US,Initech,50,CEO\n"
    # a failing mapping: employees is not a number
    f"L-2,{CANARY_FIRST},{CANARY_LAST},{CANARY_EMAIL_2},{CANARY_PHONE_2},GB,Initech,many,CEO\n"
    # a failing rule (has_email): quarantined at validation
    f"L-3,{CANARY_FIRST},{CANARY_LAST},,{CANARY_PHONE_2},GB,Initech,5,CEO\n"
)

CONFIG = """\
store: "sqlite:///{root}/junction.db"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: "{root}/inbox/*.csv", settle_seconds: 0}}
    mapping: csv.lead
    workers: 0
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    routes:
      - when: "true"
        to: [sms_twilio.leads, slack.sales, webhook.sales]
channels:
  sms_twilio.leads:
    account_sid: "{sid}"
    auth_token: "{token}"
    from: "+14155550100"
    to_path: record.phone
    api_base: "{twilio}"
    templates: {{default: {{body: "Lead {{{{ record.first_name }}}} {{{{ record.email }}}}"}}}}
  slack.sales:
    webhook_url: "{slack}{hook}"
    templates: {{default: {{text: "Lead {{{{ record.email }}}} {{{{ record.phone }}}}"}}}}
  webhook.sales: {{url: "http://127.0.0.1:9/sales", secret: "{secret}", timeout_s: 2}}
delivery:
  schedule_s: [0.01, 0.01]
"""
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """structlog at DEBUG and junction's stdlib loggers at DEBUG, for the most log lines."""
    jlog.configure("DEBUG")
    for name in ("junction", "connectors", "outbound", "mappings", "scoring"):
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        yield
    finally:
        jlog.configure()


@pytest.fixture
def fakes() -> Iterator[tuple[TwilioFake, FakeSlack, str, str]]:
    twilio = TwilioFake(stopped={CANARY_PHONE})
    slack = FakeSlack()
    with serve_app(twilio.app()) as t_url, serve_app(slack.app) as s_url:
        yield twilio, slack, t_url, s_url


def _config(root: Path, models: Path, twilio: str, slack: str) -> Path:
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    path = root / "junction.yaml"
    path.write_text(
        CONFIG.format(
            root=root,
            models=models,
            sid=ACCOUNT_SID,
            token=AUTH_TOKEN,
            twilio=twilio,
            slack=slack,
            hook=WEBHOOK_PATH,
            secret=SECRET,
        ),
        encoding="utf-8",
    )
    return path


def test_file_drop_failing_mapping_failing_deliveries_and_quarantine(
    tmp_path, models_dir, fakes, debug_logs
):
    from junction.pipeline.hub import Hub
    from junction.pipeline.replay import replay

    _twilio, slack, t_url, s_url = fakes
    for _ in range(3):
        slack.faults.fail_next("server_error", 10)
    config = _config(tmp_path, models_dir, t_url, s_url)
    (tmp_path / "inbox" / "leads.csv").write_text(HEADER + ROWS, encoding="utf-8")
    hub = Hub.from_file(config)
    try:
        (summary,) = hub.run_once(keep_going=True)
        assert (summary.stored, summary.quarantined) == (1, 2)
        stats = hub.deliver(drain_wait_s=0.5)
        assert stats.dead >= 2  # Twilio refused the number; the webhook's port is closed
        entries = hub.store.list_quarantine(pipeline="leads", limit=50)
        assert len(entries) >= 3
        for q in entries:
            replay(hub, q["id"])
    finally:
        hub.close()


def test_api_push_with_canaries(tmp_path, models_dir, debug_logs):
    from tests.api.harness import running_api, write_api_config

    config = write_api_config(
        tmp_path, store=f"sqlite:///{tmp_path / 'junction.db'}", models=models_dir
    )
    good = {
        "lead_id": "L-1",
        "email": CANARY_EMAIL,
        "phone": CANARY_PHONE,
        "first_name": CANARY_FIRST,
        "last_name": CANARY_LAST,
        "country": "US",
    }
    bad_rule = {**good, "lead_id": "L-2", "email": ""}
    bad_mapping = {**good, "lead_id": "L-3", "email": CANARY_EMAIL_2, "employees": "many"}
    with running_api(config) as api, api.http() as http:
        r = http.post(
            "/api/v1/records/leads",
            json={"records": [good, bad_rule, bad_mapping]},
            headers={**api.headers("ingest"), "Idempotency-Key": "canary-1"},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["accepted"] == 1
        assert body["quarantined"] == 2
        assert CANARY_EMAIL not in r.text
        bad = http.post(
            "/api/v1/records/leads",
            content=f'{{"records": [{{"email": "{CANARY_EMAIL}"'.encode(),
            headers={**api.headers("ingest"), "content-type": "application/json"},
        )
        assert bad.status_code in (400, 422)


@pytest.mark.slow
def test_cli_run_in_a_subprocess_tees_its_log_lines(tmp_path, models_dir, fakes):
    _twilio, _slack, t_url, s_url = fakes
    config = _config(tmp_path, models_dir, t_url, s_url)
    (tmp_path / "inbox" / "leads.csv").write_text(HEADER + ROWS, encoding="utf-8")
    tee = os.environ[TEE_ENV]
    before = Path(tee).stat().st_size
    result = subprocess.run(
        [sys.executable, "-m", "junction.cli.main", "run", str(config), "--once"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "stored 1" in result.stdout, result.stdout + result.stderr
    assert Path(tee).stat().st_size > before  # the child's log lines reached the tee
    for needle in needles():
        assert needle.lower() not in result.stderr.lower()


def test_log_lines_carry_keyed_pseudonyms_only(tmp_path, monkeypatch):
    tee = tmp_path / "tee.log"
    monkeypatch.setenv(TEE_ENV, str(tee))
    monkeypatch.setenv("JUNCTION_PSEUDONYM_KEY", "k" * 40)
    jlog.set_pseudonymizer(None)
    try:
        log = jlog.get_logger("canary")
        log.warning(
            f"could not reach {CANARY_EMAIL}",
            email=CANARY_EMAIL,
            first_name=CANARY_FIRST,
            error=f"number {CANARY_PHONE} refused",
            record={"phone": CANARY_PHONE_2, "company": "Initech"},
        )
        try:
            raise ValueError(f"bad address {CANARY_EMAIL_2}")
        except ValueError:
            log.exception("failed")
        first = jlog.pseudonymize_text(CANARY_EMAIL)
    finally:
        jlog.set_pseudonymizer(None)
    text = tee.read_text(encoding="utf-8")
    for needle in needles():
        assert needle.lower() not in text.lower()
    assert first in text  # the same keyed pseudonym, so lines about one person still join
    assert first.startswith("ps_")
    assert "company" in text
    assert "Initech" in text  # not personal: left alone


def test_a_plain_hash_is_not_what_the_log_holds(tmp_path, monkeypatch):
    import hashlib

    tee = tmp_path / "tee.log"
    monkeypatch.setenv(TEE_ENV, str(tee))
    jlog.get_logger("canary").warning("x", email=CANARY_EMAIL)
    text = tee.read_text(encoding="utf-8")
    for digest in (
        hashlib.sha256(CANARY_EMAIL.encode()).hexdigest(),
        hashlib.md5(CANARY_EMAIL.encode()).hexdigest(),
    ):
        assert digest not in text
        assert digest[:16] not in text


def test_a_subprocess_tees_structlog_and_stdlib_lines_pseudonymized(tmp_path):
    tee = tmp_path / "child.log"
    code = (
        "import logging\n"
        "from junction.core.logging import get_logger\n"
        f"get_logger('child').warning('child', email={CANARY_EMAIL!r})\n"
        f"logging.getLogger('some.sdk').warning('sdk saw %s', {CANARY_PHONE!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, TEE_ENV: str(tee)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = tee.read_text(encoding="utf-8")
    assert "child" in text
    assert "sdk saw ps_" in text
    assert CANARY_EMAIL not in text + result.stderr
    assert CANARY_PHONE not in text + result.stderr


def test_the_check_finds_a_canary_in_any_line():
    check = CanaryCheck()
    try:
        with check.path.open("a", encoding="utf-8") as f:
            f.write("clean line\n")
            f.write(f"stdlib WARNING x: sent to {CANARY_EMAIL.upper()}\n")
            f.write(f"phone {CANARY_PHONE.lstrip('+')}\n")
        hits = check.scan()
    finally:
        check.stop()
    assert len(hits) == 2
    assert hits[0].startswith("line 2:")
    # and structlog is still configured the hub's way after these tests
    assert structlog.is_configured()


def test_twilio_callbacks_from_a_canary_number(tmp_path, models_dir, debug_logs):
    from tests.api.harness import running_api, write_api_config
    from tests.fakes.twilio import inbound_params, post_signed

    public = "https://hub.example.com"
    channel = "sms_twilio.ops"
    path = write_api_config(
        tmp_path, store=f"sqlite:///{tmp_path / 'junction.db'}", models=models_dir
    )
    text = path.read_text(encoding="utf-8")
    extra = (
        f"  {channel}:\n"
        f'    account_sid: "{ACCOUNT_SID}"\n'
        f'    auth_token: "{AUTH_TOKEN}"\n'
        '    from: "+14155550100"\n'
        "    to_path: record.phone\n"
        '    templates: {default: {body: "Lead {{ record.email }}"}}\n'
        f'    public_url: "{public}"\n'
    )
    path.write_text(text.replace("channels:\n", "channels:\n" + extra, 1), encoding="utf-8")
    inbound = f"{public}/callbacks/twilio/{channel}/inbound"
    with running_api(path) as api:
        for body in ("STOP", f"call me on {CANARY_PHONE_2} or {CANARY_EMAIL}", "START"):
            r = post_signed(
                api.base_url, inbound, inbound_params(CANARY_PHONE, "+14155550100", body)
            )
            assert r.status_code == 200, r.text
        forged = post_signed(
            api.base_url,
            inbound,
            inbound_params(CANARY_PHONE, "+14155550100", "STOP"),
            headers={"X-Twilio-Signature": "forged"},
        )
        assert forged.status_code == 403


@pytest.mark.slow
def test_serve_subprocess_with_a_canary_file_drop(tmp_path, models_dir):
    from tests.serve.helpers import Serve, pipeline_yaml, wait_for, write_serve_config

    store = f"sqlite:///{tmp_path / 'junction.db'}"
    config = write_serve_config(
        tmp_path, store=store, models=models_dir, pipelines=pipeline_yaml(threshold=0.0)
    )
    inbox = tmp_path / "inbox"
    # the file name itself carries an email address, as exports from some CRMs do
    name = f"leads-{CANARY_EMAIL}.csv"
    (tmp_path / f".{name}").write_text(HEADER + ROWS, encoding="utf-8")
    with Serve(config) as serve:
        serve.wait_ready()
        (tmp_path / f".{name}").rename(inbox / name)
        wait_for(lambda: (inbox / "processed" / name).exists(), 30, "the file archived")
        claimed = serve.wait_event("file claimed")
        assert claimed["file"].startswith("ps_")  # the whole name reads as an address
        assert serve.stop() == 0
        text = serve.log()
    for needle in needles():
        assert needle.lower() not in text.lower()
