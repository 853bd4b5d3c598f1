"""A fast path for the common subset of CEL, with the real CEL runtime as the authority.

The CEL runtime (``cel``) converts its whole activation to CEL values on every call, which costs
3 to 5 µs per evaluation, more than scoring a lead.  Rules and routes are mostly field comparisons
joined by ``&&``/``||``, so this module compiles that subset into Python closures once.

Exactness: a closure only answers when the operands have types whose CEL meaning is identical in
Python (both strings, both numbers, both timestamps, null equality, …).  Anything else raises
``Defer`` and the caller evaluates the same expression with the CEL runtime, so the result is
always the runtime's.  Expressions outside the subset are never compiled (``compile_fast`` returns
None).  ``tests/unit/pipeline/test_cel_fast.py`` checks agreement with the runtime on generated
inputs.  ADR-0005 records the decision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

Env = Mapping[str, Any]
Fn = Callable[[Env], Any]


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


def _order(op: str) -> Callable[[Any, Any], bool]:
    import operator

    f = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]

    def cmp(a: Any, b: Any) -> bool:
        if a is None or b is None or isinstance(a, bool) or not _same_kind(a, b):
            raise Defer
        return bool(f(a, b))

    return cmp


class _Parser:
    def __init__(self, src: str, variables: set[str]) -> None:
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

    def parse(self) -> Fn:
        fn = self.expr()
        if self.peek()[0] != "end":
            raise _Unsupported("trailing input")
        return fn

    def expr(self) -> Fn:
        cond = self.or_()
        if self.peek()[1] != "?":
            return cond
        self.take("?")
        a = self.expr()
        self.take(":")
        b = self.expr()

        def ternary(env: Env) -> Any:
            c = cond(env)
            if not isinstance(c, bool):
                raise Defer
            return a(env) if c else b(env)

        return ternary

    def _logic(self, sub: Callable[[], Fn], op: str, short: bool) -> Fn:
        parts = [sub()]
        while self.peek()[1] == op:
            self.take(op)
            parts.append(sub())
        if len(parts) == 1:
            return parts[0]

        def logic(env: Env) -> bool:
            # any operand the fast path cannot type leaves the whole answer to the runtime
            decided = False
            for p in parts:
                v = p(env)
                if not isinstance(v, bool):
                    raise Defer
                if v is short:
                    decided = True
            return short if decided else not short

        return logic

    def or_(self) -> Fn:
        return self._logic(self.and_, "||", True)

    def and_(self) -> Fn:
        return self._logic(self.rel, "&&", False)

    def rel(self) -> Fn:
        left = self.add()
        op = self.peek()[1]
        if op in ("==", "!=", "<", "<=", ">", ">=") or (self.peek() == ("id", "in")):
            self.take()
            right = self.add()
            if op == "==":
                return lambda env: _eq(left(env), right(env))
            if op == "!=":
                return lambda env: not _eq(left(env), right(env))
            if op == "in":

                def member(env: Env) -> bool:
                    v, seq = left(env), right(env)
                    if not isinstance(seq, list):
                        raise Defer
                    return any(_eq(v, x) for x in seq)

                return member
            cmp = _order(op)
            return lambda env: cmp(left(env), right(env))
        return left

    def add(self) -> Fn:
        left = self.unary()
        if self.peek()[1] in ("+", "-", "*"):
            raise _Unsupported("arithmetic")
        return left

    def unary(self) -> Fn:
        if self.peek()[1] == "!":
            self.take("!")
            inner = self.unary()

            def neg(env: Env) -> bool:
                v = inner(env)
                if not isinstance(v, bool):
                    raise Defer
                return not v

            return neg
        if self.peek()[1] == "-":
            self.take("-")
            kind, text = self.take()
            if kind != "num":
                raise _Unsupported("unary minus")
            value = -_number(text)
            return lambda env: value
        return self.member()

    def member(self) -> Fn:
        fn = self.primary()
        while self.peek()[1] == ".":
            self.take(".")
            kind, name = self.take()
            if kind != "id":
                raise _Unsupported("member")
            fn = self.method(fn, name) if self.peek()[1] == "(" else _field(fn, name)
        return fn

    def method(self, target: Fn, name: str) -> Fn:
        ops = {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}
        if name not in ops:
            raise _Unsupported(name)
        self.take("(")
        arg = self.expr()
        self.take(")")
        op = ops[name]

        def call(env: Env) -> bool:
            s, a = target(env), arg(env)
            if not (isinstance(s, str) and isinstance(a, str)):
                raise Defer
            return bool(op(s, a))

        return call

    def primary(self) -> Fn:
        kind, text = self.take()
        if kind == "num":
            value = _number(text)
            return lambda env: value
        if kind == "str":
            if "\\" in text:
                raise _Unsupported("escapes")
            s = text[1:-1]
            return lambda env: s
        if kind == "op" and text == "(":
            fn = self.expr()
            self.take(")")
            return fn
        if kind == "op" and text == "[":
            items: list[Fn] = []
            while self.peek()[1] != "]":
                items.append(self.expr())
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return lambda env: [f(env) for f in items]
        if kind == "id":
            if text in _RESERVED:
                constant = _RESERVED[text]
                return lambda env: constant
            if text == "size" and self.peek()[1] == "(":
                self.take("(")
                arg = self.expr()
                self.take(")")

                def size(env: Env) -> int:
                    v = arg(env)
                    if not isinstance(v, str | list):
                        raise Defer
                    return len(v)

                return size
            if text in self.variables and self.peek()[1] != "(":
                return lambda env: env.get(text)
        raise _Unsupported(text)


def _number(text: str) -> int | float:
    return float(text) if ("." in text or "e" in text.lower()) else int(text)


_ABSENT = object()


def _field(target: Fn, name: str) -> Fn:
    def get(env: Env) -> Any:
        obj = target(env)
        if isinstance(obj, dict):
            value = obj.get(name, _ABSENT)
        elif obj is None or isinstance(obj, str | int | float | list):
            raise Defer
        else:  # a canonical model: its fields are attributes
            value = getattr(obj, name, _ABSENT)
        if value is _ABSENT:
            raise Defer
        return value

    return get


def compile_fast(source: str, variables: set[str]) -> Fn | None:
    """Compile ``source`` if it lies in the fast subset; None means "use the runtime only"."""
    try:
        return _Parser(source, variables).parse()
    except (_Unsupported, AssertionError):
        return None
