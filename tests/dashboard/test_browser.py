"""End to end in headless Chromium: sign in, find a quarantined record, fix its mapping, replay it,
see it delivered to a local webhook sink; a viewer cannot replay.  Screenshots of the main pages
are saved under ``.artifacts/screenshots/`` (``JUNCTION_TEST_ARTIFACTS`` moves the folder).

The browser is Debian's ``chromium`` driven by Playwright through ``executable_path``; nothing is
downloaded.  Without it the test is skipped, unless ``JUNCTION_REQUIRE_BROWSER`` is set (CI).
The hub is a real ``junction serve`` subprocess on 127.0.0.1 with a SQLite store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from junction.store import queries
from junction.store.repo import Store
from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink
from tests.api.harness import SIGNING_KEY
from tests.dashboard.support import make_clients, write_leads
from tests.serve.helpers import Serve, drop, wait_for

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
# read at import: the suite's autouse fixture clears JUNCTION_* variables for each test
REQUIRE_BROWSER = os.environ.get("JUNCTION_REQUIRE_BROWSER") == "1"
SHOTS = Path(os.environ.get("JUNCTION_TEST_ARTIFACTS", REPO / ".artifacts")) / "screenshots"

CONFIG = """\
store: "sqlite:///{root}/junction.db"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: {root}/inbox/*.csv, settle_seconds: 0}}
    mapping: {root}/lead.yaml
    workers: 0
    rules:
      - {{name: has_email, expr: "lead.email != null"}}
    scoring: {{model: lead-score}}
    archive: {{processed: {root}/processed, failed: {root}/rejected}}
    routes:
      - when: "score.value >= 0.5"
        to: [webhook.sales]
      - otherwise: [webhook.nurture]
channels:
  webhook.sales: {{url: "{sink}sales", secret: "{secret}", timeout_s: 5}}
  webhook.nurture: {{url: "{sink}nurture", secret: "{secret}", timeout_s: 5}}
delivery:
  schedule_s: [0.2, 0.5, 1, 2]
egress:
  allow_networks: [127.0.0.0/8]
api:
  port: 0
  signing_key: "{signing_key}"
"""
# the export started writing times after the date; the spec still expects the date alone
BROKEN = "formats: [dd.MM.yyyy, dd.MM.yyyy HH:mm:ss]"
ROWS = [
    ("L-2001", "dee.fox@example.com", "05.11.2026"),
    ("L-2002", "eve.gray@example.com", "06.11.2026 14:30:00"),  # the mapping rejects the time
    ("L-2003", "", "07.11.2026"),  # no email: the has_email rule quarantines it
]


def _write_mapping(path: Path, *, fixed: bool) -> None:
    spec = (REPO / "mappings" / "specs" / "csv" / "lead.yaml").read_text(encoding="utf-8")
    assert BROKEN in spec
    spec = spec.replace("id: csv.lead", "id: acme.lead")
    if not fixed:
        spec = spec.replace(BROKEN, "formats: [dd.MM.yyyy]")
    path.write_text(spec, encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        why = "Debian's chromium is not installed (apt-get install chromium)"
        if REQUIRE_BROWSER:  # CI: never skipped
            pytest.fail(why)
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


def _context(browser: Browser, csp_errors: list[str]) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1360, "height": 900})

    def on_console(msg: object) -> None:
        text = getattr(msg, "text", "")
        if "Content Security Policy" in text or "Refused to" in text:
            csp_errors.append(text)

    context.on("console", on_console)
    return context


def _sign_in(page: Page, url: str, client_id: str, secret: str) -> None:
    page.goto(f"{url}/ui/")
    assert "/ui/login" in page.url
    page.fill("input[name=client_id]", client_id)
    page.fill("input[name=secret]", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/$"))


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _open(store_url: str, qid: int) -> bool:
    store = Store.open(store_url)
    try:
        q = store.get_quarantine(qid)
    finally:
        store.close()
    return q is not None and q["status"] == "open"


def test_fix_a_mapping_and_replay_from_the_dashboard(
    tmp_path: Path, models_dir: Path, browser: Browser
) -> None:
    root = tmp_path
    store_url = f"sqlite:///{root}/junction.db"
    (root / "inbox").mkdir()
    _write_mapping(root / "lead.yaml", fixed=False)
    store = Store.open(store_url)
    creds = make_clients(store)
    store.close()
    secret = generate_secret()
    csp_errors: list[str] = []
    with WebhookSink(secret, root / "sink.jsonl") as sink:
        config = root / "junction.yaml"
        config.write_text(
            CONFIG.format(
                root=root, models=models_dir, sink=sink.url, secret=secret, signing_key=SIGNING_KEY
            ),
            encoding="utf-8",
        )
        with Serve(config) as serve:
            serve.wait_ready()
            drop(write_leads(root / "L.csv", ROWS), root / "inbox", "leads-0001.csv")
            wait_for(lambda: sink.stats()["unique"] >= 1, 60, "the good lead delivered")

            operator = _context(browser, csp_errors)
            page = operator.new_page()
            page.goto(f"{serve.url}/ui/login")
            _shot(page, "01-login")
            _sign_in(page, serve.url, *creds["operator"])
            _shot(page, "02-overview")

            # find the quarantined record: the group of its error, then the entry
            page.click("nav >> text=Quarantine")
            page.wait_for_selector("text=mapping_error")
            _shot(page, "03-quarantine")
            page.click("a:has-text('mapping_error')")
            page.click("table >> nth=1 >> tbody tr >> nth=0 >> a")
            page.wait_for_selector("#error-message")
            assert "created_at" in page.inner_text("#error-message")
            body = page.inner_text("main")
            assert "eve.gray@example.com" not in body  # the original payload is masked
            assert "<masked str len=19>" in body  # its created_at, length and type only
            qid = int(page.url.rsplit("/", 1)[1])
            _shot(page, "04-quarantine-entry")
            page.click("nav >> text=Pipelines")
            _shot(page, "05-pipelines")
            page.click("table >> nth=0 >> a:has-text('leads')")
            _shot(page, "06-pipeline")
            page.click("nav >> text=Deliveries")
            _shot(page, "07-deliveries")
            page.click("nav >> text=Models")
            _shot(page, "08-models")
            assert serve.stop() == 0

        # fix the mapping and redeploy: the same store, a new process
        _write_mapping(root / "lead.yaml", fixed=True)
        with Serve(config) as serve:
            serve.wait_ready()
            page.goto(f"{serve.url}/ui/quarantine/{qid}")
            if "/ui/login" in page.url:  # a new port is the same host: the cookie usually holds
                _sign_in(page, serve.url, *creds["operator"])
                page.goto(f"{serve.url}/ui/quarantine/{qid}")
            page.click("#replay")
            page.wait_for_selector(".flash")
            assert "Replay: record stored." in page.inner_text(".flash")
            assert not _open(store_url, qid)

            # the record's journey shows it delivered to the sink
            page.click("nav >> text=Records")
            page.fill("input[name=key]", "L-2002")
            page.click("form.search button")
            page.click("a:has-text('leads:')")
            page.wait_for_selector("ol.journey")

            def delivered() -> bool:
                page.reload()
                return page.locator("ol.journey .tag.st-delivered").count() > 0

            wait_for(delivered, 60, "the replayed record delivered", step=0.5)
            code = page.locator("ol.journey section.delivery td:nth-child(4)").first
            assert code.inner_text() == "200"  # the sink's response code
            journey = page.inner_text("ol.journey")
            assert "Quarantined on the way, then replayed" in journey  # the lineage
            assert "replayed" in journey
            _shot(page, "09-record-journey")
            page.click("ol.journey h3 a")
            page.wait_for_selector("text=Attempts")
            _shot(page, "10-delivery")
            sent = (root / "sink.jsonl").read_text(encoding="utf-8")
            assert "L-2002" in sent
            assert sink.stats()["unique"] == 2
            assert sink.stats()["rejected"] == 0

            # a viewer finds the other entry but cannot replay it: no form, and a 403 anyway
            viewer = _context(browser, csp_errors)
            vpage = viewer.new_page()
            _sign_in(vpage, serve.url, *creds["viewer"])
            vpage.goto(f"{serve.url}/ui/quarantine?code=rule_failed")
            vpage.click("table >> nth=1 >> tbody tr >> nth=0 >> a")
            vpage.wait_for_selector("#error-message")
            other = int(vpage.url.rsplit("/", 1)[1])
            assert vpage.locator("#replay").count() == 0
            assert vpage.locator("form[action$='/replay']").count() == 0
            token = vpage.locator("input[name=csrf]").first.get_attribute("value")
            assert token
            refused = viewer.request.post(
                f"{serve.url}/ui/quarantine/{other}/replay", form={"csrf": token}
            )
            assert refused.status == 403
            assert _open(store_url, other)
            _shot(vpage, "11-viewer-quarantine-entry")
            viewer.close()
            operator.close()
            assert serve.stop() == 0
    assert csp_errors == []
    with_store = Store.open(store_url)
    try:
        assert queries.list_quarantine(with_store)[0][0]["id"] == other  # only it is left open
    finally:
        with_store.close()
