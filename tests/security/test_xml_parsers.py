"""Every XML parser in the code base refuses DTDs and entities (RELIABILITY.md C21, C22, C25).

Two halves:

* a scan of the source (AST) that finds every construction of an XML parser: lxml's parsers and
  parse functions may be built only in ``connectors/safe_xml.py`` and only with the hardened
  option set; zeep's ``Client``/``Settings`` only in ``connectors/soap/client.py`` and only with
  ``forbid_dtd``, ``forbid_entities``, ``forbid_external`` and no huge trees; the standard
  library's XML parsers (``xml.etree``, ``xml.dom``, ``xml.sax``, expat, xmlrpc) not at all.  A
  new parser anywhere else fails here until it goes through the hardened factory;
* hostile documents (XXE through a general and a parameter entity, a network entity, billion
  laughs, quadratic blowup, a bare DOCTYPE) against every entry point that reads XML: the file
  connectors (xml_file, commerceml, sap_idoc), the inbound Salesforce Outbound Message parser and
  its verifier, the hardened parse itself and a SOAP answer read by zeep.  Each must fail with a
  typed error, never read the canary file, never connect to the sinkhole, and never yield a
  record (the ``resolve_entities=False`` trap: an XXE must not "succeed" with empty text).
"""

from __future__ import annotations

import ast
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.commerceml import CommerceMLConfig, CommerceMLConnector
from connectors.safe_xml import ITERPARSE_OPTIONS, PARSER_OPTIONS, parse_untrusted_xml
from connectors.salesforce.outbound_message import parse_notifications
from connectors.sap_idoc import SapIdocConfig, SapIdocConnector
from connectors.soap.client import SoapClient
from connectors.soap.config import SoapConnection
from connectors.xml_file import XmlFileConfig, XmlFileConnector
from junction.api.verifiers.base import SignatureError, SignedRequest, VerifierSettings
from junction.api.verifiers.salesforce import SalesforceOutboundVerifier
from junction.core.errors import FatalError, JunctionError, UnsafeXMLError
from tests.contract.fixtures.sap_idoc import idoc, idoc_file
from tests.fakes.server import serve_app
from tests.fakes.soap_1c import ONEC_PATH, WSDL_DIR, OneCExchange, counterparty

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("junction", "connectors", "outbound", "scoring", "mappings", "schemas")
FACTORY = "connectors/safe_xml.py"
ZEEP_HOME = "connectors/soap/client.py"

# lxml entry points that build a parser or parse text (serializers like tostring are fine)
LXML_PARSING = frozenset(
    {
        "XMLParser",
        "HTMLParser",
        "XMLPullParser",
        "HTMLPullParser",
        "ETCompatXMLParser",
        "XMLTreeBuilder",
        "iterparse",
        "fromstring",
        "fromstringlist",
        "XML",
        "HTML",
        "XMLID",
        "XMLDTDID",
        "parse",
        "parseid",
        "DTD",
        "XMLSchema",
        "RelaxNG",
        "XSLT",
        "makeparser",
        "document_fromstring",
        "fragment_fromstring",
        "fragments_fromstring",
    }
)
LXML_MODULES = ("lxml",)
# the standard library's parsers resolve no external entities but expand internal ones (bombs)
STDLIB_XML = ("xml.etree", "xml.dom", "xml.sax", "xml.parsers", "xmlrpc", "pyexpat")
ZEEP_BUILDERS = frozenset({"Client", "AsyncClient", "CachingClient", "Settings"})
ZEEP_REQUIRED = {"forbid_dtd": True, "forbid_entities": True, "forbid_external": True}
REQUIRED_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
}


# --------------------------------------------------------------------------- the source scan


@dataclass(frozen=True)
class Site:
    path: str
    line: int
    what: str  # "lxml.XMLParser", "zeep.Settings", "import xml.dom"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _module_of(name: str, aliases: dict[str, str]) -> str | None:
    return aliases.get(name)


def scan_source(path: str, source: str) -> tuple[list[Site], list[str]]:
    """The XML parser constructions in one module, and the rule violations among them."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> dotted module or module.attr it stands for
    sites: list[Site] = []
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
                if a.name.startswith(STDLIB_XML):
                    problems.append(f"{path}:{node.lineno}: imports {a.name} (use safe_xml)")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            if node.module.startswith(STDLIB_XML) or (
                node.module == "xml" and any(a.name in ("etree", "dom", "sax") for a in node.names)
            ):
                problems.append(f"{path}:{node.lineno}: imports from {node.module} (use safe_xml)")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        target: str | None = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            base = _module_of(func.value.id, aliases)
            if base is not None:
                target = f"{base}.{func.attr}"
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute):
            target = ast.unparse(func)  # lxml.etree.XMLParser spelled out
        elif isinstance(func, ast.Name):
            target = _module_of(func.id, aliases)
        if target is None:
            continue
        head, _, name = target.rpartition(".")
        if head.startswith(LXML_MODULES) and name in LXML_PARSING:
            site = Site(path, node.lineno, f"lxml.{name}")
            sites.append(site)
            problems.extend(_check_lxml(site, node))
        elif head.startswith("zeep") and name in ZEEP_BUILDERS:
            site = Site(path, node.lineno, f"zeep.{name}")
            sites.append(site)
            problems.extend(_check_zeep(site, node))
    return sites, problems


def _splats(node: ast.Call) -> set[str]:
    return {ast.unparse(k.value) for k in node.keywords if k.arg is None}


def _check_lxml(site: Site, node: ast.Call) -> list[str]:
    if site.path != FACTORY:
        return [f"{site}: build XML parsers only through connectors.safe_xml"]
    name = site.what.removeprefix("lxml.")
    if name == "XMLParser" and "PARSER_OPTIONS" not in _splats(node):
        return [f"{site}: XMLParser without **PARSER_OPTIONS"]
    if name == "iterparse" and "ITERPARSE_OPTIONS" not in _splats(node):
        return [f"{site}: iterparse without **ITERPARSE_OPTIONS"]
    has_parser = len(node.args) >= 2 or any(k.arg == "parser" for k in node.keywords)
    if name in ("fromstring", "XML", "parse") and not has_parser:
        return [f"{site}: {name} with lxml's default parser (pass the hardened one)"]
    if name not in ("XMLParser", "iterparse", "fromstring", "XML", "parse"):
        return [f"{site}: {name} is not an allowed parser in the factory"]
    return []


def _check_zeep(site: Site, node: ast.Call) -> list[str]:
    if site.path != ZEEP_HOME:
        return [f"{site}: build zeep clients only in {ZEEP_HOME}"]
    kw = {k.arg: k.value for k in node.keywords if k.arg is not None}
    out: list[str] = []
    if site.what == "zeep.Settings":
        for key, want in {**ZEEP_REQUIRED, "xml_huge_tree": False}.items():
            value = kw.get(key)
            if not (isinstance(value, ast.Constant) and value.value is want):
                out.append(f"{site}: Settings needs {key}={want}")
    elif "settings" not in kw:
        out.append(f"{site}: {site.what} without the hardened settings=")
    return out


def project_modules() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def scan_project() -> tuple[list[Site], list[str]]:
    sites: list[Site] = []
    problems: list[str] = []
    for rel, source in project_modules():
        s, p = scan_source(rel, source)
        sites += s
        problems += p
    return sites, problems


def test_every_xml_parser_is_built_by_the_hardened_factory() -> None:
    sites, problems = scan_project()
    assert not problems, "unhardened XML parsing:\n" + "\n".join(problems)
    found = {(s.path, s.what) for s in sites}
    # the scan sees the real call sites (a scan that finds nothing proves nothing)
    assert {
        (FACTORY, "lxml.XMLParser"),
        (FACTORY, "lxml.iterparse"),
        (FACTORY, "lxml.fromstring"),
        (ZEEP_HOME, "zeep.Settings"),
        (ZEEP_HOME, "zeep.Client"),
    } <= found, sorted(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from lxml import etree\netree.XMLParser()\n", "XMLParser without"),
        ("from lxml import etree\netree.fromstring(b'<a/>')\n", "default parser"),
        ("from lxml import etree as ET\nET.iterparse(f)\n", "iterparse without"),
        ("import lxml.etree\nlxml.etree.XML(b'<a/>')\n", "default parser"),
        ("from lxml.etree import XMLParser\nXMLParser(resolve_entities=True)\n", "XMLParser"),
        ("from lxml import objectify\nobjectify.fromstring(b'<a/>')\n", "default parser"),
        ("import xml.etree.ElementTree as ET\n", "imports xml.etree"),
        ("from xml.dom import minidom\n", "imports from xml.dom"),
        ("from xml import sax\n", "imports from xml"),
        ("import zeep\nzeep.Settings(strict=True)\n", "forbid_dtd"),
        ("from zeep import Client\nClient('x.wsdl')\n", "without the hardened settings"),
    ],
)
def test_the_scan_catches_unhardened_parsers(source: str, expected: str) -> None:
    path = FACTORY if "zeep" not in source else ZEEP_HOME
    _, problems = scan_source(path, source)
    assert any(expected in p for p in problems), problems
    # and anywhere but the factory, any lxml or zeep parser is refused outright
    if "lxml" in source or "zeep" in source:
        _, elsewhere = scan_source("connectors/other.py", source)
        assert any("only" in p for p in elsewhere), elsewhere


def test_the_hardened_option_sets() -> None:
    for key, value in REQUIRED_OPTIONS.items():
        assert PARSER_OPTIONS[key] is value, key
        if key != "dtd_validation":
            assert ITERPARSE_OPTIONS[key] is value, key


# --------------------------------------------------------------------------- hostile documents


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.txt"
    path.write_text("CANARY-xxe-7f3a-never-read", encoding="utf-8")
    return path


@pytest.fixture
def sinkhole() -> Iterator[socket.socket]:
    """A listening socket that must never see a connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        s.setblocking(False)
        yield s


def assert_untouched(sinkhole: socket.socket) -> None:
    # the kernel completes a handshake into the backlog by itself, and the parse is over
    # by now, so a connection attempt would already be waiting here
    with pytest.raises(BlockingIOError):
        sinkhole.accept()


LAUGHS = "".join(
    f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 10)
)


def doctypes(root: str, canary: Path, port: int) -> dict[str, tuple[str, str]]:
    """name -> (DOCTYPE to put before the root, entity reference to put in a value)."""
    return {
        "xxe_file": (f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "file://{canary}">]>', "&x;"),
        "xxe_parameter": (f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "file://{canary}"> %p;]>', ""),
        "xxe_network": (
            f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/leak">]>',
            "&x;",
        ),
        "external_dtd": (f'<!DOCTYPE {root} SYSTEM "http://127.0.0.1:{port}/x.dtd">', ""),
        "billion_laughs": (f'<!DOCTYPE {root} [<!ENTITY l0 "lol">{LAUGHS}]>', "&l9;"),
        "quadratic": (
            f'<!DOCTYPE {root} [<!ENTITY a "{"x" * 50_000}">]>',
            "&a;" * 10_000,
        ),
        "bare_doctype": (f"<!DOCTYPE {root}>", ""),
    }


PAYLOADS = (
    "xxe_file",
    "xxe_parameter",
    "xxe_network",
    "external_dtd",
    "billion_laughs",
    "quadratic",
    "bare_doctype",
)

ONEC = "КоммерческаяИнформация"


def _drop(tmp_path: Path, name: str, text: str) -> str:
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def _read(connector: Any, stream: str) -> list[Any]:
    return [r for batch in connector.read(stream, None) for r in batch.records]


def xml_file_entry(tmp_path: Path, doctype: str, ref: str) -> Callable[[], Any]:
    text = f'<?xml version="1.0"?>{doctype}<root><r><v>{ref}</v></r></root>'
    path = _drop(tmp_path, "drop.xml", text)
    conn = XmlFileConnector(
        XmlFileConfig(path=str(tmp_path / "inbox"), settle_seconds=0, record_tag="r")
    )
    return lambda: _read(conn, path)


def commerceml_entry(tmp_path: Path, doctype: str, ref: str) -> Callable[[], Any]:
    text = (
        f'<?xml version="1.0"?>{doctype.replace("DOCTYPE root", "DOCTYPE " + ONEC)}'
        f"<{ONEC}><Каталог><Товары><Товар><Ид>1</Ид><Наименование>{ref}</Наименование>"
        f"</Товар></Товары></Каталог></{ONEC}>"
    )
    path = _drop(tmp_path, "import.xml", text)
    conn = CommerceMLConnector(CommerceMLConfig(path=str(tmp_path / "inbox"), settle_seconds=0))
    return lambda: _read(conn, path)


def sap_idoc_entry(tmp_path: Path, doctype: str, ref: str) -> Callable[[], Any]:
    body = idoc_file([idoc(1, body=f'<E1KNA1M SEGMENT="1"><NAME1>{ref}</NAME1></E1KNA1M>')])
    head, sep, rest = body.partition("?>")
    text = head + sep + doctype.replace("DOCTYPE root", "DOCTYPE " + _first_tag(rest)) + rest
    path = _drop(tmp_path, "idoc.xml", text)
    conn = SapIdocConnector(
        SapIdocConfig.model_validate({"path": str(tmp_path / "inbox"), "settle_seconds": 0})
    )
    return lambda: _read(conn, path)


def _first_tag(text: str) -> str:
    start = text.index("<") + 1
    end = min(i for i in (text.find(c, start) for c in " >/") if i != -1)
    return text[start:end]


def _om_envelope(doctype: str, ref: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        + doctype.replace("DOCTYPE root", "DOCTYPE soapenv:Envelope")
        + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        "<OrganizationId>00D000000000001AAA</OrganizationId>"
        "<ActionId>04k000000000001AAA</ActionId>"
        "<Notification><Id>04l000000000001AAA</Id>"
        '<sObject xmlns:sf="urn:sobject.enterprise.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="sf:Lead">'
        f"<sf:Id>00Q000000000001AAA</sf:Id><sf:LastName>{ref}</sf:LastName>"
        "</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def om_parser_entry(tmp_path: Path, doctype: str, ref: str) -> Callable[[], Any]:
    body = _om_envelope(doctype, ref)
    return lambda: parse_notifications(body)


def hardened_parse_entry(tmp_path: Path, doctype: str, ref: str) -> Callable[[], Any]:
    body = f"<?xml version='1.0'?>{doctype}<root><v>{ref}</v></root>".encode()
    return lambda: parse_untrusted_xml(body)


ENTRIES = {
    "xml_file": xml_file_entry,
    "commerceml": commerceml_entry,
    "sap_idoc": sap_idoc_entry,
    "salesforce_om": om_parser_entry,
    "parse_untrusted_xml": hardened_parse_entry,
}


def test_the_plain_documents_are_read(tmp_path: Path) -> None:
    """Without a DOCTYPE every entry point reads its document (so the refusals below are real)."""
    for name, make in ENTRIES.items():
        result = make(tmp_path / name, "", "plain-value")()
        assert result is not None, name
        assert not isinstance(result, list) or result, name


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_hostile_xml_is_refused_at_every_entry_point(
    tmp_path: Path, canary: Path, sinkhole: socket.socket, entry: str, payload: str
) -> None:
    doctype, ref = doctypes("root", canary, sinkhole.getsockname()[1])[payload]
    run = ENTRIES[entry](tmp_path, doctype, ref)
    with pytest.raises(UnsafeXMLError) as info:
        run()
    err = info.value
    text = f"{err.user_message} {err.details} {err.context}"
    assert "CANARY" not in text
    assert_untouched(sinkhole)


@pytest.mark.parametrize("payload", ["xxe_file", "billion_laughs", "bare_doctype"])
def test_the_salesforce_verifier_refuses_hostile_bodies(
    tmp_path: Path, canary: Path, sinkhole: socket.socket, payload: str
) -> None:
    doctype, ref = doctypes("root", canary, sinkhole.getsockname()[1])[payload]
    verifier = SalesforceOutboundVerifier(
        VerifierSettings(
            source="sf", secret=None, options={"organization_id": "00D000000000001AAA"}
        )
    )
    plain = SignedRequest("POST", "http://127.0.0.1/hooks/sf", {}, _om_envelope("", "x"))
    verifier.verify(plain, now=0.0)  # the same message without the DOCTYPE passes
    hostile = SignedRequest("POST", "http://127.0.0.1/hooks/sf", {}, _om_envelope(doctype, ref))
    with pytest.raises(SignatureError) as info:
        verifier.verify(hostile, now=0.0)
    assert info.value.reason == "unreadable_body"
    assert_untouched(sinkhole)


# --------------------------------------------------------------------------- SOAP answers (zeep)


@pytest.fixture
def onec() -> Iterator[tuple[str, OneCExchange]]:
    fake = OneCExchange()
    fake.counterparties = [counterparty(1, datetime(2026, 3, 1, 10, 0))]
    with serve_app(fake.app()) as base:
        yield base, fake


@pytest.mark.parametrize("payload", ["xxe_file", "xxe_network", "billion_laughs", "bare_doctype"])
def test_a_hostile_soap_answer_is_refused(
    onec: tuple[str, OneCExchange], canary: Path, sinkhole: socket.socket, payload: str
) -> None:
    base, fake = onec
    doctype, _ = doctypes("soap:Envelope", canary, sinkhole.getsockname()[1])[payload]
    conn = SoapConnection.model_validate(
        {
            "path": str(WSDL_DIR / "hub_exchange_1c.wsdl"),
            "address": base + ONEC_PATH,
            "username": fake.username,
            "password": fake.password,
            "timeout_s": 5,
        }
    )
    client = SoapClient(conn)
    client.call("Ping", {})  # the same call without the DOCTYPE works
    fake.inject = doctype
    with pytest.raises(FatalError) as info:
        client.call("Ping", {})
    assert info.value.code in ("dtd_forbidden", "entities_forbidden")
    assert "CANARY" not in f"{info.value.user_message} {info.value.details}"
    assert_untouched(sinkhole)
    assert isinstance(info.value, JunctionError)
