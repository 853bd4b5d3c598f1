"""Helpers for the source scans of the security tests: project modules and call targets."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("junction", "connectors", "outbound", "scoring", "mappings", "schemas")


@functools.cache
def source(rel: str) -> str:
    """The text of one project module."""
    return (ROOT / rel).read_text(encoding="utf-8")


@functools.cache
def parsed(rel: str) -> ast.Module:
    """The AST of one project module (cached: several scans read the same files)."""
    return ast.parse(source(rel))


def project_modules(
    packages: tuple[str, ...] = PACKAGES, *, mentioning: tuple[str, ...] = ()
) -> Iterator[str]:
    """The repository-relative paths of the project's modules (tests and bench excluded).

    Args:
        packages: the top-level packages to walk.
        mentioning: when given, only modules whose text contains one of these strings (a cheap
            pre-filter: a module that never names a library cannot import it).
    """
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not mentioning or any(word in source(rel) for word in mentioning):
                yield rel


def import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted module or ``module.attr`` it stands for (any scope)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    root = a.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The fully qualified name an expression like ``aiohttp.ClientSession`` refers to."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base is not None else None
    return None


def enclosing(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node -> the qualified name of the class/function around it (``<module>`` at top)."""
    out: dict[ast.AST, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name if name == "<module>" else f"{name}.{child.name}"
            out[child] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return out
