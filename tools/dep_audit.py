"""Dependency audit: pip-audit over the installed environment, offline-safe, with an allow-list.

Usage (CI runs it from the repository root with the project's virtualenv)::

    .venv/bin/python tools/dep_audit.py [--allow tools/dep_audit_allow.toml] [--strict]
        [--timeout 15] [-- <extra pip-audit arguments>]

It runs ``pip-audit`` (a dependency of the dev extras) against the environment of the Python that
runs it, editable installs (Junction itself) skipped, prints the report, and exits:

* ``0`` when nothing is vulnerable, or every finding is allow-listed (each printed with its
  reason);
* ``0`` when the advisory database (PyPI or OSV) cannot be reached; it says so loudly
  ("NOT AUDITED") so the log shows the audit did not happen;
* ``1`` when a vulnerability is found whose id (or one of its aliases) has no allow-list entry;
* ``0`` when pip-audit itself fails for another reason (said as loudly), unless ``--strict``,
  which makes that ``2``.

The allow-list is TOML: one table ``[allow]`` mapping a vulnerability id (``GHSA-…``,
``PYSEC-…``, ``CVE-…``) to the reason it is accepted; an entry without a reason is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ALLOW = Path(__file__).with_name("dep_audit_allow.toml")
# what a failed lookup of the advisory database looks like in pip-audit's output
UNREACHABLE = re.compile(
    r"ConnectionError|ConnectTimeout|ReadTimeout|ProxyError|SSLError|NameResolution|"
    r"Max retries exceeded|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Could not connect to|Network is unreachable|Connection refused|timed out",
    re.I,
)


@dataclass(frozen=True)
class Finding:
    """One vulnerability of one installed distribution."""

    package: str
    version: str
    vuln_id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def ids(self) -> tuple[str, ...]:
        return (self.vuln_id, *self.aliases)

    def line(self) -> str:
        fix = ", ".join(self.fix_versions) or "no fix yet"
        aka = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.package} {self.version}: {self.vuln_id}{aka}; fixed in {fix}"


class AllowListError(ValueError):
    """The allow-list file is malformed or has an entry without a reason."""


def load_allow(path: Path | None) -> dict[str, str]:
    """Read the allow-list (vulnerability id -> reason); a missing file is an empty list."""
    if path is None or not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AllowListError(f"{path}: not TOML ({exc})") from None
    table = data.get("allow", {})
    if not isinstance(table, dict):
        raise AllowListError(f"{path}: [allow] must be a table of id = reason")
    out: dict[str, str] = {}
    for vuln_id, reason in table.items():
        if not isinstance(reason, str) or not reason.strip():
            raise AllowListError(f"{path}: {vuln_id} needs a reason (a non-empty string)")
        out[vuln_id.upper()] = reason.strip()
    return out


def findings(report: dict[str, Any]) -> tuple[list[Finding], list[str]]:
    """The findings and the skipped distributions (with why) of a pip-audit JSON report."""
    found: list[Finding] = []
    skipped: list[str] = []
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            skipped.append(f"{dep.get('name')}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            found.append(
                Finding(
                    package=str(dep.get("name")),
                    version=str(dep.get("version")),
                    vuln_id=str(vuln.get("id")),
                    aliases=tuple(str(a) for a in vuln.get("aliases", [])),
                    fix_versions=tuple(str(v) for v in vuln.get("fix_versions", [])),
                )
            )
    return found, skipped


def evaluate(report: dict[str, Any], allow: dict[str, str]) -> tuple[int, list[str]]:
    """Exit code and report lines for a pip-audit JSON report under ``allow``."""
    found, skipped = findings(report)
    audited = len(report.get("dependencies", [])) - len(skipped)
    lines = [f"dependency audit: {audited} distributions audited"]
    blocking: list[Finding] = []
    for f in found:
        reason = next((allow[i.upper()] for i in f.ids() if i.upper() in allow), None)
        if reason is None:
            blocking.append(f)
            lines.append(f"  VULNERABLE  {f.line()}")
        else:
            lines.append(f"  allowed     {f.line()}  -- {reason}")
    lines += [f"  skipped     {s}" for s in skipped]
    if blocking:
        lines.append(
            f"dependency audit: FAILED, {len(blocking)} vulnerabilit"
            f"{'y' if len(blocking) == 1 else 'ies'} without an allow-list reason "
            "(upgrade, or add the id and a reason to the allow-list)"
        )
        return 1, lines
    if audited <= 0 and skipped:
        # the index answered for none of them (e.g. a mirror without PyPI's JSON API)
        lines.append(
            f"dependency audit: NOT AUDITED - none of the {len(skipped)} distributions could be "
            "looked up in the advisory database"
        )
        return 0, lines
    lines.append(
        "dependency audit: OK"
        + (f" ({len(found)} allow-listed finding(s))" if found else ", no known vulnerabilities")
        + (f"; {len(skipped)} not audited" if skipped else "")
    )
    return 0, lines


def run_pip_audit(timeout_s: float, extra: list[str]) -> subprocess.CompletedProcess[str]:
    """pip-audit over this interpreter's environment, as JSON on stdout."""
    cmd = [
        sys.executable,
        "-m",
        "pip_audit",
        "--format",
        "json",
        "--skip-editable",
        "--progress-spinner",
        "off",
        "--timeout",
        str(int(timeout_s)),
        *extra,
    ]
    # a bound on the whole run: a stalled network must not hang CI
    return subprocess.run(  # noqa: S603 - a fixed command line: this Python's pip-audit
        cmd, capture_output=True, text=True, timeout=timeout_s * 20 + 60, check=False
    )


def main(argv: list[str] | None = None) -> int:
    """Run the audit and print its report; see the module docstring for the exit codes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allow", type=Path, default=DEFAULT_ALLOW, help="allow-list (TOML)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when pip-audit fails")
    parser.add_argument("--timeout", type=float, default=15.0, help="per request, seconds")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    try:
        allow = load_allow(args.allow)
    except AllowListError as exc:
        print(f"dependency audit: bad allow-list: {exc}")  # noqa: T201 - a CLI report
        return 2
    try:
        done = run_pip_audit(args.timeout, extra)
    except subprocess.TimeoutExpired:
        print(  # noqa: T201 - a CLI report
            "dependency audit: NOT AUDITED - the advisory database did not answer in time"
        )
        return 0
    except OSError as exc:
        print(f"dependency audit: NOT AUDITED - pip-audit cannot run: {exc}")  # noqa: T201
        return 2 if args.strict else 0
    try:
        report = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    if isinstance(report, dict) and "dependencies" in report:
        code, lines = evaluate(report, allow)
        print("\n".join(lines))  # noqa: T201 - a CLI report
        return code
    tail = [line for line in (done.stderr or "").strip().splitlines() if line.strip()][-1:]
    why = tail[0][:300] if tail else f"exit status {done.returncode}, no report"
    if UNREACHABLE.search(done.stderr or ""):
        print(  # noqa: T201 - a CLI report
            "dependency audit: NOT AUDITED - the advisory database (PyPI/OSV) cannot be "
            f"reached: {why}"
        )
        return 0
    print(f"dependency audit: NOT AUDITED - pip-audit failed: {why}")  # noqa: T201
    return 2 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
