"""``tools/dep_audit.py``: real pip-audit runs against a local OSV fake and an unreachable feed.

The fake answers OSV's ``/v1/query`` on 127.0.0.1 with one advisory for ``requests`` (installed
in every environment of this project) and nothing for the rest, so the whole path, pip-audit's
JSON included, is exercised without leaving the machine.  The unreachable case points pip-audit's
proxy at a closed loopback port.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools.dep_audit import AllowListError, evaluate, load_allow, main

VULN_ID = "GHSA-test-dep-0001"
ALIAS = "CVE-2099-0001"


class FakeOsv(BaseHTTPRequestHandler):
    queried: list[str] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = body["package"]["name"]
        FakeOsv.queried.append(name)
        answer: dict[str, object] = {}
        if name == "requests":
            answer = {
                "vulns": [
                    {
                        "id": VULN_ID,
                        "aliases": [ALIAS],
                        "summary": "a test advisory",
                        "affected": [
                            {
                                "package": {"name": "requests", "ecosystem": "PyPI"},
                                "ranges": [
                                    {
                                        "type": "ECOSYSTEM",
                                        "events": [{"introduced": "0"}, {"fixed": "99.0"}],
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def osv(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    FakeOsv.queried = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()


def _args(osv: str, tmp_path: Path, allow: Path) -> list[str]:
    return [
        "--allow",
        str(allow),
        "--",
        "--vulnerability-service",
        "osv",
        "--osv-url",
        osv,
        "--cache-dir",
        str(tmp_path / "cache"),
    ]


def test_a_vulnerability_fails_the_audit_until_it_is_allow_listed(
    osv: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("[allow]\n", encoding="utf-8")
    assert main(_args(osv, tmp_path, empty)) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "VULNERABLE  requests" in line)
    assert VULN_ID in line
    assert ALIAS in line
    assert line.endswith("fixed in 99.0")
    assert "FAILED, 1 vulnerability" in out
    assert "requests" in FakeOsv.queried
    assert len(FakeOsv.queried) > 20  # the whole environment was audited

    allow = tmp_path / "allow.toml"
    allow.write_text(f'[allow]\n"{ALIAS}" = "test advisory, not real"\n', encoding="utf-8")
    assert main(_args(osv, tmp_path, allow)) == 0
    out = capsys.readouterr().out
    assert "allowed     requests" in out
    assert "-- test advisory, not real" in out
    assert "dependency audit: OK (1 allow-listed finding(s))" in out


def test_an_unreachable_database_passes_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    allow = tmp_path / "empty.toml"
    allow.write_text("[allow]\n", encoding="utf-8")
    code = main(["--allow", str(allow), "--", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0
    assert "NOT AUDITED - the advisory database (PyPI/OSV) cannot be reached" in out


def test_allow_list_entries_need_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "allow.toml"
    path.write_text('[allow]\n"GHSA-x" = " "\n', encoding="utf-8")
    with pytest.raises(AllowListError):
        load_allow(path)
    path.write_text("allow = 3\n", encoding="utf-8")
    with pytest.raises(AllowListError):
        load_allow(path)
    assert main(["--allow", str(path)]) == 2


def test_the_committed_allow_list_is_valid() -> None:
    committed = Path(__file__).resolve().parents[2] / "tools" / "dep_audit_allow.toml"
    assert all(reason for reason in load_allow(committed).values())


def test_skipped_distributions_are_reported() -> None:
    report = {
        "dependencies": [
            {"name": "a", "version": "1", "vulns": []},
            {"name": "b", "skip_reason": "not on PyPI"},
        ]
    }
    code, lines = evaluate(report, {})
    assert code == 0
    assert "  skipped     b: not on PyPI" in lines
    assert lines[0] == "dependency audit: 1 distributions audited"
