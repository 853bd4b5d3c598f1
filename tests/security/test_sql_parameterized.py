"""SQL is always parameterized: no statement text is built from values (RELIABILITY.md C30).

A scan (AST) of ``junction/``, ``connectors/``, ``outbound/`` and ``scoring/`` finds every call
of ``text()``, ``execute()``, ``executemany()``, ``executescript()`` and ``exec_driver_sql()``
whose statement is an f-string with placeholders, ``%`` formatting, ``.format()``, a ``join`` or
a concatenation with a non-literal part, either in the call itself or in a local variable the
call passes (assigned in the same function).  Values must travel as bound parameters; a
statement that cannot take parameters (a PRAGMA) is allowed only through ``ALLOWED`` below, each
entry with its reason.  Identifiers that really must be spliced in (the ODBC connector's table
and column names) are quoted by the driver's quote character after validation against the
introspected schema, and reach ``execute`` through the client's ``fetch``/``query`` methods,
whose statement the connector composes; that path is covered by the ODBC injection tests.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator

import pytest

from tests.security.source_scan import project_modules, source

PACKAGES = ("junction", "connectors", "outbound", "scoring")
SINKS = frozenset({"text", "execute", "executemany", "executescript", "exec_driver_sql"})

# (module, enclosing function) -> why the statement text may be composed there
ALLOWED: dict[tuple[str, str], str] = {
    (
        "junction/pipeline/workers.py",
        "_small_page_cache",
    ): "PRAGMA cache_size takes no bound parameter; the value is a module int constant "
    "formatted with :d",
    (
        "junction/pipeline/workers.py",
        "_rare_autocheckpoint",
    ): "PRAGMA wal_autocheckpoint takes no bound parameter; the value is a module int "
    "constant formatted with :d",
    (
        "connectors/odbc/client.py",
        "_set_query_timeout",
    ): "PRAGMA busy_timeout takes no bound parameter; the value is int() of the configured "
    "float timeout",
}


def _literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return not any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left) and _literal(node.right)
    return False


def built_from_values(node: ast.AST) -> str | None:
    """Why ``node`` (a statement expression) is composed from non-literal parts, or None."""
    if isinstance(node, ast.JoinedStr) and not _literal(node):
        return "f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return "% formatting"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and not _literal(node):
        return "concatenation"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "format":
            return ".format()"
        if node.func.attr == "join":
            return "join"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "text":
        return built_from_values(node.args[0]) if node.args else None
    return None


def _sink(call: ast.Call) -> str | None:
    func = call.func
    name = (
        func.attr
        if isinstance(func, ast.Attribute)
        else func.id
        if isinstance(func, ast.Name)
        else None
    )
    return name if name in SINKS else None


def _statement(call: ast.Call) -> ast.AST | None:
    if call.args:
        return call.args[0]
    for kw in call.keywords:
        if kw.arg in ("statement", "sql", "query", "text", "operation"):
            return kw.value
    return None


def scan_source(path: str, source: str) -> Iterator[tuple[str, str, int, str]]:
    """(path, enclosing function, line, why) for each string-built statement in ``source``."""
    tree = ast.parse(source)
    functions: list[ast.AST] = [tree]
    functions += [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    seen: set[int] = set()
    for scope in reversed(functions):  # innermost functions first: each call reported once
        scope_name = getattr(scope, "name", "<module>")
        assigned: dict[str, list[ast.AST]] = {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
            elif (
                isinstance(node, ast.AnnAssign | ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                value = node.value
                if isinstance(node, ast.AugAssign) and not _literal(value):
                    value = ast.BinOp(ast.Name(node.target.id), ast.Add(), value)
                assigned.setdefault(node.target.id, []).append(value)
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or id(node) in seen or _sink(node) is None:
                continue
            seen.add(id(node))
            stmt = _statement(node)
            if stmt is None:
                continue
            why = built_from_values(stmt)
            if why is None and isinstance(stmt, ast.Name):
                for value in assigned.get(stmt.id, []):
                    inner = built_from_values(value)
                    if inner is not None:
                        why = f"{inner} via {stmt.id}"
                        break
            if why is not None:
                yield path, scope_name, node.lineno, f"{_sink(node)}() given {why}"


@functools.cache
def scan_project() -> list[tuple[str, str, int, str]]:
    found: list[tuple[str, str, int, str]] = []
    # a module that never names a sink cannot call one
    for rel in project_modules(PACKAGES, mentioning=tuple(SINKS)):
        found += scan_source(rel, source(rel))
    return found


def test_no_sql_is_built_from_values() -> None:
    found = scan_project()
    bad = [f"{p}:{line} in {fn}(): {why}" for p, fn, line, why in found if (p, fn) not in ALLOWED]
    assert not bad, "string-built SQL (bind the values as parameters):\n" + "\n".join(bad)


def test_every_allow_list_entry_is_still_needed() -> None:
    """A stale entry would silently allow a future string-built statement in that function."""
    used = {(p, fn) for p, fn, _line, _why in scan_project()}
    assert set(ALLOWED) <= used, set(ALLOWED) - used


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("def f(c, x):\n    c.execute(f'SELECT * FROM t WHERE a = {x}')\n", "f-string"),
        ("def f(c, x):\n    c.execute('SELECT * FROM t WHERE a = %s' % x)\n", "% formatting"),
        ("def f(c, x):\n    c.execute('SELECT * FROM t WHERE a = ' + x)\n", "concatenation"),
        ("def f(c, x):\n    c.execute('SELECT {}'.format(x))\n", ".format()"),
        ("def f(c, x):\n    c.exec_driver_sql(' '.join(['SELECT', x]))\n", "join"),
        ("def f(c, x):\n    c.execute(sa.text(f'DELETE FROM t WHERE a = {x}'))\n", "f-string"),
        ("def f(c, x):\n    c.execute(text('SELECT ' + x))\n", "concatenation"),
        ("def f(c, x):\n    sql = f'SELECT {x}'\n    c.execute(sql)\n", "f-string via sql"),
        ("def f(c, x):\n    q = 'SELECT 1'\n    q += x\n    c.execute(q)\n", "via q"),
        ("def f(c, x):\n    c.execute(statement=f'SELECT {x}')\n", "f-string"),
    ],
)
def test_the_scan_catches_string_built_sql(source: str, why: str) -> None:
    found = list(scan_source("m.py", source))
    assert found
    assert any(why in f[3] for f in found), found


@pytest.mark.parametrize(
    "source",
    [
        "def f(c, x):\n    c.execute('SELECT * FROM t WHERE a = ?', (x,))\n",
        "def f(c, x):\n    c.execute(sa.text('SELECT * FROM t WHERE a = :a'), {'a': x})\n",
        "def f(c):\n    c.execute('SELECT 1 ' 'FROM t')\n",
        "def f(c):\n    c.execute('SELECT 1 ' + 'FROM t')\n",
        "def f(c, stmt):\n    c.execute(stmt.where(t.c.a == 1))\n",
        "def f(c, x):\n    c.execute(f'SELECT 1')\n",
    ],
)
def test_the_scan_accepts_bound_parameters(source: str) -> None:
    assert list(scan_source("m.py", source)) == []
