"""The deliveries page's "Rotate secret" form (admin only), over HTTP and in headless Chromium.

The new secret is shown once, in the answer to the form (``no-store``); reloading the deliveries
page does not show it again, and the audit entry carries its id only.  The browser test uses
Debian's ``chromium`` through Playwright's ``executable_path`` (nothing downloaded), as
``test_browser.py`` does, and saves a screenshot of the page under ``.artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import select

from junction.store import tables as t
from junction.store.channel_secrets import list_secrets, load_secrets
from junction.store.crypto_rows import enable_privacy
from tests.dashboard.conftest import Ui
from tests.dashboard.support import csrf_of, login

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
REQUIRE_BROWSER = os.environ.get("JUNCTION_REQUIRE_BROWSER") == "1"
SHOTS = Path(os.environ.get("JUNCTION_TEST_ARTIFACTS", REPO / ".artifacts")) / "screenshots"
FORM = "/ui/channels/webhook.sales/rotate-secret"
_SECRET = re.compile(r'<code id="new-secret"[^>]*>(whsec_[A-Za-z0-9+/=]+)</code>')


def _audited(ui: Ui) -> list[str]:
    a = t.audit_log.c
    with ui.api.ctx.store.begin() as conn:
        return [
            str(d)
            for d in conn.execute(
                select(a.detail).where(a.action == "channel.rotate_secret")
            ).scalars()
        ]


def test_only_an_admin_sees_and_may_post_the_form(ui: Ui, tmp_path: Path) -> None:
    enable_privacy(ui.api.ctx.store, kek=f"file:{tmp_path / 'kek'}")
    for role in ("viewer", "operator"):
        with login(ui.url, *ui.creds[role]) as http:
            page = http.get("/ui/deliveries").text
            assert "Rotate secret" not in page
            r = http.post(FORM, data={"csrf": csrf_of(page), "overlap": "24h"})
            assert r.status_code == 403, role
            assert r.headers["content-type"].startswith("text/html")
    assert list_secrets(ui.api.ctx.store) == []
    with login(ui.url, *ui.creds["admin"]) as http:
        page = http.get("/ui/deliveries").text
        assert page.count(">Rotate secret<") == 1  # the one webhook channel
    assert _audited(ui) == []


def test_an_admin_rotates_and_sees_the_secret_once(
    ui: Ui, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enable_privacy(ui.api.ctx.store, kek=f"file:{tmp_path / 'kek'}")
    with login(ui.url, *ui.creds["admin"]) as http:
        token = csrf_of(http.get("/ui/deliveries").text)
        r = http.post(FORM, data={"csrf": token, "overlap": "1h"})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        found = _SECRET.search(r.text)
        assert found, r.text
        secret = found.group(1)
        again = http.get("/ui/deliveries").text
        bad = http.post(FORM, data={"csrf": token, "overlap": "forever"})
        missing = http.post(
            "/ui/channels/nope/rotate-secret", data={"csrf": token, "overlap": "1h"}
        )
    assert secret not in again
    assert "secret rotated" in again
    assert "previous signs until" in again
    assert bad.status_code == 400
    assert missing.status_code == 404
    (current, _config) = load_secrets(ui.api.ctx.store)["webhook.sales"]
    assert current[1] == secret
    assert current[2] is None
    (detail,) = _audited(ui)
    assert current[0] in detail
    assert secret.removeprefix("whsec_") not in detail
    assert secret.removeprefix("whsec_") not in caplog.text


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


def test_rotate_a_secret_in_the_browser(ui: Ui, tmp_path: Path, browser: Browser) -> None:
    enable_privacy(ui.api.ctx.store, kek=f"file:{tmp_path / 'kek'}")
    csp_errors: list[str] = []
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.on(
        "console",
        lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    try:
        page = context.new_page()
        page.goto(f"{ui.url}/ui/")
        page.fill("input[name=client_id]", ui.creds["admin"][0])
        page.fill("input[name=secret]", ui.creds["admin"][1])
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/ui/$"))
        page.goto(f"{ui.url}/ui/deliveries")
        form = page.locator(f'form[action="{FORM}"]')
        form.locator("select[name=overlap]").select_option("72h")
        form.get_by_role("button", name="Rotate secret").click()
        page.wait_for_selector("#new-secret")
        secret = page.locator("#new-secret").inner_text()
        assert secret.startswith("whsec_")
        assert "shown on this page only" in page.content()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "secret-rotated.png"), full_page=True)
        page.goto(f"{ui.url}/ui/deliveries")
        assert secret not in page.content()
        assert "previous signs until" in page.content()
        page.screenshot(path=str(SHOTS / "deliveries-after-rotation.png"), full_page=True)
    finally:
        context.close()
    assert csp_errors == []
    stored = load_secrets(ui.api.ctx.store)["webhook.sales"]
    assert stored[0][1] == secret
    assert stored[1][2] is not None
