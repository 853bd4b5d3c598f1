"""A fast path for the common subset of CEL, with the real CEL runtime as the authority.

The CEL runtime (``cel``) converts its whole activation to CEL values on every call, which costs
3 to 5 µs per evaluation, more than scoring a lead.  Rules and routes are mostly field comparisons
joined by ``&&``/``||``, so this module compiles that subset once into the source of one plain
Python function (``compile`` + ``exec``): no activation dict, no closure per node, comparisons
with constants specialised on the operand's exact type.

Exactness: the generated code only answers when the operands have types whose CEL meaning is
identical in Python (both strings, both numbers, both timestamps, null equality, …).  Anything
else raises ``Defer`` and the caller evaluates the same expression with the CEL runtime, so the
result is always the runtime's.  Every specialised branch (an exact ``str`` compared with a string
constant, an exact ``int``/``float`` with a number) answers exactly what the generic helpers
(``_eq``, ``_order``, ``_get``) would; any other type goes through those helpers.  Expressions
outside the subset are never compiled (``compile_fast`` returns None).
``tests/unit/pipeline/test_cel_fast.py`` checks agreement with the runtime on generated
expressions and inputs.  ADR-0005 records the decision.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

Env = Mapping[str, Any]
Fn = Callable[[Env], Any]
Node = tuple[Any, ...]


class Defer(Exception):
    """The fast path cannot answer with certainty; ask the CEL runtime."""


class _Unsupported(Exception):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+(?![\w.]))
  | (?P<str>"(?:[^"\\\n]|\\["\\])*"|'(?:[^'\\\n]|\\['\\])*')
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.+\-*?:])
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  )""",
    re.VERBOSE,
)
_RESERVED = {"true": True, "false": False, "null": None}


def _tokens(src: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            raise _Unsupported(src[pos:])
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    out.append(("end", ""))
    return out


# --- the generic helpers: the reference semantics of every operation ---------------------------


def _is_num(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, float)


def _same_kind(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) and isinstance(b, str):
        return True
    return (
        isinstance(a, datetime)
        and isinstance(b, datetime)
        and a.tzinfo is not None
        and b.tzinfo is not None
    )


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _same_kind(a, b):
        return bool(a == b)
    raise Defer


_ORDER_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _order(op: str) -> Callable[[Any, Any], bool]:
    f = _ORDER_OPS[op]

    def cmp(a: Any, b: Any) -> bool:
        if a is None or b is None or isinstance(a, bool) or not _same_kind(a, b):
            raise Defer
        return bool(f(a, b))

    return cmp


def _member(v: Any, seq: Any) -> bool:
    if not isinstance(seq, list):
        raise Defer
    return any(_eq(v, x) for x in seq)


_ABSENT = object()
# types whose field access is ``getattr`` (not a dict, not a scalar, not a list): memoized by
# ``_get`` so the generated code can test ``type(o) in _OBJECT_TYPES`` instead of four
# isinstance calls; the classification depends on the type alone
_OBJECT_TYPES: set[type] = set()


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        value = obj.get(name, _ABSENT)
    elif obj is None or isinstance(obj, str | int | float | list):
        raise Defer
    else:  # a canonical model: its fields are attributes
        _OBJECT_TYPES.add(type(obj))
        value = getattr(obj, name, _ABSENT)
    if value is _ABSENT:
        raise Defer
    return value


def _size(v: Any) -> int:
    if not isinstance(v, str | list):
        raise Defer
    return len(v)


_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}


def _method(name: str) -> Callable[[Any, Any], bool]:
    op = _METHODS[name]

    def call(s: Any, a: Any) -> bool:
        if not (isinstance(s, str) and isinstance(a, str)):
            raise Defer
        return bool(op(s, a))

    return call


# --- parsing into a small tree ------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str, variables: Mapping[str, str]) -> None:
        self.toks = _tokens(src)
        self.i = 0
        self.variables = variables

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            raise _Unsupported(value)
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.peek()[0] != "end":
            raise _Unsupported("trailing input")
        return node

    def expr(self) -> Node:
        cond = self.or_()
        if self.peek()[1] != "?":
            return cond
        self.take("?")
        a = self.expr()
        self.take(":")
        b = self.expr()
        return ("ternary", cond, a, b)

    def _logic(self, sub: Callable[[], Node], op: str) -> Node:
        parts = [sub()]
        while self.peek()[1] == op:
            self.take(op)
            parts.append(sub())
        return parts[0] if len(parts) == 1 else ("logic", op, parts)

    def or_(self) -> Node:
        return self._logic(self.and_, "||")

    def and_(self) -> Node:
        return self._logic(self.rel, "&&")

    def rel(self) -> Node:
        left = self.add()
        op = self.peek()[1]
        if op in ("==", "!=", "<", "<=", ">", ">=") or (self.peek() == ("id", "in")):
            self.take()
            right = self.add()
            return ("cmp", op, left, right)
        return left

    def add(self) -> Node:
        left = self.unary()
        if self.peek()[1] in ("+", "-", "*"):
            raise _Unsupported("arithmetic")
        return left

    def unary(self) -> Node:
        if self.peek()[1] == "!":
            self.take("!")
            return ("not", self.unary())
        if self.peek()[1] == "-":
            self.take("-")
            kind, text = self.take()
            if kind != "num":
                raise _Unsupported("unary minus")
            return ("const", -_number(text))
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek()[1] == ".":
            self.take(".")
            kind, name = self.take()
            if kind != "id":
                raise _Unsupported("member")
            if self.peek()[1] == "(":
                if name not in _METHODS:
                    raise _Unsupported(name)
                self.take("(")
                arg = self.expr()
                self.take(")")
                node = ("method", name, node, arg)
            else:
                node = ("field", node, name)
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "num":
            return ("const", _number(text))
        if kind == "str":
            if "\\" in text:
                raise _Unsupported("escapes")
            return ("const", text[1:-1])
        if kind == "op" and text == "(":
            node = self.expr()
            self.take(")")
            return node
        if kind == "op" and text == "[":
            items: list[Node] = []
            while self.peek()[1] != "]":
                items.append(self.expr())
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return ("list", items)
        if kind == "id":
            if text in _RESERVED:
                return ("const", _RESERVED[text])
            if text == "size" and self.peek()[1] == "(":
                self.take("(")
                arg = self.expr()
                self.take(")")
                return ("size", arg)
            if text in self.variables and self.peek()[1] != "(":
                return ("var", text)
        raise _Unsupported(text)


def _number(text: str) -> int | float:
    return float(text) if ("." in text or "e" in text.lower()) else int(text)


# --- code generation ----------------------------------------------------------------------------


def _num_const(v: Any) -> bool:
    return type(v) is int or type(v) is float


class _Gen:
    """Emits the statements of one function; each node's value ends up in a local name."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = params  # CEL variable -> Python parameter
        self.lines: list[str] = []
        self.indent = 1
        self.ns: dict[str, Any] = {
            "_Defer": Defer,
            "_ABSENT": _ABSENT,
            "_OBJ": _OBJECT_TYPES,
            "_get": _get,
            "_eq": _eq,
            "_member": _member,
            "_size": _size,
        }
        self.n = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def tmp(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def const(self, value: Any) -> str:
        if value is None or value is True or value is False:
            return repr(value)
        name = f"_k{len(self.ns)}"
        self.ns[name] = value
        return name

    def helper(self, value: Any) -> str:
        name = f"_h{len(self.ns)}"
        self.ns[name] = value
        return name

    def emit(self, node: Node) -> str:
        """Emit the statements computing ``node``; return a name (or literal) holding it."""
        kind = node[0]
        if kind == "const":
            return self.const(node[1])
        if kind == "var":
            return self.params[node[1]]
        if kind == "list":
            items = [self.emit(n) for n in node[1]]
            t = self.tmp()
            self.line(f"{t} = [{', '.join(items)}]")
            return t
        if kind == "field":
            o = self.emit(node[1])
            t = self.tmp()
            name = self.const(node[2])
            self.line(f"if type({o}) in _OBJ:")
            self.line(f"    {t} = getattr({o}, {name}, _ABSENT)")
            self.line(f"    if {t} is _ABSENT: raise _Defer")
            self.line(f"elif type({o}) is dict:")
            self.line(f"    {t} = {o}.get({name}, _ABSENT)")
            self.line(f"    if {t} is _ABSENT: raise _Defer")
            self.line("else:")
            self.line(f"    {t} = _get({o}, {name})")
            return t
        if kind == "method":
            s, a = self.emit(node[2]), self.emit(node[3])
            t = self.tmp()
            self.line(f"{t} = {self.helper(_method(node[1]))}({s}, {a})")
            return t
        if kind == "size":
            v = self.emit(node[1])
            t = self.tmp()
            self.line(f"{t} = _size({v})")
            return t
        if kind == "not":
            v = self.emit(node[1])
            t = self.tmp()
            self.line(f"if {v} is True: {t} = False")
            self.line(f"elif {v} is False: {t} = True")
            self.line("else: raise _Defer")
            return t
        if kind == "logic":
            # every operand is evaluated and must be a bool, else the runtime decides: CEL's
            # && and || absorb errors in either order, which is the runtime's business
            parts = []
            for p in node[2]:
                v = self.emit(p)
                self.line(f"if type({v}) is not bool: raise _Defer")
                parts.append(v)
            t = self.tmp()
            py = " or " if node[1] == "||" else " and "
            self.line(f"{t} = {py.join(parts)}")
            return t
        if kind == "ternary":
            c = self.emit(node[1])
            t = self.tmp()
            self.line(f"if {c} is True:")
            self.indent += 1
            self.line(f"{t} = {self.emit(node[2])}")
            self.indent -= 1
            self.line(f"elif {c} is False:")
            self.indent += 1
            self.line(f"{t} = {self.emit(node[3])}")
            self.indent -= 1
            self.line("else: raise _Defer")
            return t
        assert kind == "cmp"
        return self.compare(node[1], node[2], node[3])

    def compare(self, op: str, left: Node, right: Node) -> str:
        a, b = self.emit(left), self.emit(right)
        t = self.tmp()
        if op == "in":
            if right[0] == "list" and all(n[0] == "const" for n in right[1]):
                consts = [n[1] for n in right[1]]
                # for an exact str (number) and only string (number) constants, _member is
                # plain membership: no element can defer
                if consts and all(type(c) is str for c in consts):
                    kset = self.const(frozenset(consts))
                    self.line(f"if type({a}) is str: {t} = {a} in {kset}")
                    self.line(f"else: {t} = _member({a}, {b})")
                    return t
                if consts and all(_num_const(c) for c in consts):
                    kset = self.const(frozenset(consts))
                    self.line(f"if type({a}) is int or type({a}) is float: {t} = {a} in {kset}")
                    self.line(f"else: {t} = _member({a}, {b})")
                    return t
            self.line(f"{t} = _member({a}, {b})")
            return t
        if op in ("==", "!="):
            neg = "not " if op == "!=" else ""
            x, k = (a, right) if right[0] == "const" else (b, left)
            if k[0] == "const":
                c = k[1]
                if c is None:
                    self.line(f"{t} = {x} is {neg}None")
                    return t
                guard = None
                if type(c) is str:
                    guard = f"type({x}) is str"
                elif _num_const(c):
                    guard = f"type({x}) is int or type({x}) is float"
                elif type(c) is bool:
                    guard = f"type({x}) is bool"
                if guard is not None:
                    pyop = "!=" if neg else "=="
                    self.line(f"if {guard}: {t} = {a} {pyop} {b}")
                    self.line(f"else: {t} = {neg}_eq({a}, {b})")
                    return t
            self.line(f"{t} = {neg}_eq({a}, {b})")
            return t
        cmp = self.helper(_order(op))
        x, k = (a, right) if right[0] == "const" else (b, left)
        if k[0] == "const" and (_num_const(k[1]) or type(k[1]) is str):
            guard = (
                f"type({x}) is str"
                if type(k[1]) is str
                else f"type({x}) is int or type({x}) is float"
            )
            self.line(f"if {guard}: {t} = {a} {op} {b}")
            self.line(f"else: {t} = {cmp}({a}, {b})")
            return t
        self.line(f"{t} = {cmp}({a}, {b})")
        return t


def _parse(source: str, variables: Mapping[str, str]) -> Node | None:
    try:
        return _Parser(source, variables).parse()
    except (_Unsupported, AssertionError):
        return None


def _build(
    tree: Node, variables: Mapping[str, str], params: Sequence[str], fallback: Any
) -> Callable[..., Any]:
    """Compile ``tree`` into ``f(*params)``; with ``fallback``, Defer/non-bool call it instead."""
    # parameters are named by position: no name from the configuration reaches the source
    slot = {p: f"p{i}" for i, p in enumerate(params)}
    gen = _Gen({v: slot[variables[v]] for v in variables})
    result = gen.emit(tree)
    sig = ", ".join(slot.values())
    if fallback is None:
        head = [f"def _fast({sig}):"]
        tail = [f"    return {result}"]
    else:
        gen.ns["_fallback"] = fallback
        head = [f"def _fast({sig}):", "  try:"]
        gen.lines = ["  " + ln for ln in gen.lines]
        tail = [
            f"      if type({result}) is bool: return {result}",
            "  except _Defer:",
            "      pass",
            f"  return _fallback({sig})",
        ]
    src = "\n".join(head + gen.lines + tail) + "\n"
    code = compile(src, "<cel-fast>", "exec")
    exec(code, gen.ns)  # noqa: S102 - source generated above from a parsed tree, constants bound by name
    fn: Callable[..., Any] = gen.ns["_fast"]
    fn.__cel_source__ = src  # type: ignore[attr-defined]
    return fn


def compile_fast(source: str, variables: set[str]) -> Fn | None:
    """Compile ``source`` if it lies in the fast subset; None means "use the runtime only".

    The function takes the activation (variable name → value) and returns the value, or raises
    ``Defer`` when only the runtime can answer.
    """
    named = {v: f"v{i}" for i, v in enumerate(sorted(variables))}
    tree = _parse(source, named)
    if tree is None:
        return None
    fn = _build(tree, named, list(named.values()), None)
    names = tuple(sorted(variables))

    def run(env: Env) -> Any:
        return fn(*[env.get(v) for v in names])

    return run


def compile_checker(
    source: str,
    variables: Mapping[str, str],
    params: Sequence[str],
    fallback: Callable[..., bool],
) -> Callable[..., bool] | None:
    """Compile ``source`` into ``check(*params) -> bool`` (the hot path of rules and routes).

    ``variables`` maps each CEL variable to the parameter that carries its value (several
    variables may share one, e.g. ``lead`` and ``record``).  When the fast subset answers a
    boolean, that is the result; otherwise ``fallback(*params)`` decides (the runtime).  Returns
    None when ``source`` lies outside the subset.
    """
    tree = _parse(source, variables)
    if tree is None:
        return None
    return _build(tree, variables, params, fallback)
