"""Secrets and MACs are compared in constant time (RELIABILITY.md C34).

A scan (AST) of the project's modules finds every ``==``, ``!=`` or ``in`` whose operands, read
as source, name a signature, MAC, digest, HMAC, secret, password or key hash, and fails unless
the comparison only measures a length or checks a kind against a module constant (an algorithm
name).  Such values must go through ``hmac.compare_digest`` (or ``secrets.compare_digest``):
``==`` stops at the first differing byte, and the time it takes tells an attacker how much of a
forged signature was right.  Every module that computes an HMAC of a request must also compare
with ``compare_digest`` somewhere, so a verifier cannot drop it silently.
"""

from __future__ import annotations

import ast
import re

from tests.security.source_scan import parsed, project_modules, source

# operand text that names something secret or a MAC (word parts, case-insensitive)
SECRETISH = re.compile(
    r"(signature|(^|_)sig(s|_|$)|(^|_)mac(s|_|$)|digest|hmac|secret|password|passwd|key_hash)",
    re.IGNORECASE,
)
COMPARES = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _harmless(node: ast.expr) -> bool:
    """An operand whose comparison leaks nothing: a literal, a length, a module constant, a
    boolean (``(a is None) != (b is None)``), or a SQLAlchemy column (``t.c.x == v`` builds a
    WHERE clause; the database compares)."""
    if isinstance(node, (ast.Constant, ast.Compare)):
        return True
    if isinstance(node, ast.Attribute) and ".c." in ast.unparse(node):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return True
    return isinstance(node, ast.Name) and node.id.isupper()


def _scan(text: str, tree: ast.Module) -> list[tuple[int, list[str]]]:
    """(line, operands as source) of each comparison of something secret with ``==``/``in``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or not any(isinstance(o, COMPARES) for o in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(_harmless(o) for o in operands):
            continue
        names = [ast.get_source_segment(text, o) or "" for o in operands]
        if any(SECRETISH.search(n) for n in names):
            found.append((node.lineno, names))
    return found


def _offences(rel: str) -> list[str]:
    return [f"{rel}:{line}: {' ? '.join(names)}" for line, names in _scan(source(rel), parsed(rel))]


def test_no_secret_or_mac_is_compared_with_eq() -> None:
    offences = [o for rel in project_modules() for o in _offences(rel)]
    assert offences == [], "compare these with hmac.compare_digest:\n" + "\n".join(offences)


def test_every_module_that_computes_a_request_hmac_compares_in_constant_time() -> None:
    computing = [
        rel
        for rel in project_modules(mentioning=("hmac.new(", "hmac.digest("))
        if "/verifiers/" in rel or rel.startswith("junction/store/clients")
    ]
    assert computing, "the scan found no verifier: its filter is wrong"
    missing = [rel for rel in computing if "compare_digest(" not in source(rel)]
    assert missing == []


def test_the_scan_catches_a_plain_comparison() -> None:
    # the scan's own positive control: the shapes it must refuse, and the ones it must allow
    text = (
        "ok = expected_sig == given\n"
        "ok = hmac.new(k, m, h).digest() != header\n"
        "ok = secret in allowed\n"
        "ok = len(given) != _MAC_BYTES\n"
        "ok = algorithm(header) != HMAC_SHA1\n"
        "ok = event.get('type') == 'digest'\n"
        "ok = (username is None) != (password is None)\n"
        "q = t.channel_secrets.c.channel == channel\n"
    )
    assert [line for line, _ in _scan(text, ast.parse(text))] == [1, 2, 3]
