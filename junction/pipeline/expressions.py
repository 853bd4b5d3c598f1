"""CEL expressions for rules and routes, compiled once.

The CEL runtime converts every value in the activation to CEL values on each call, so the cost is
proportional to what we pass in.  Expressions are analysed once: when a variable is only used as
``var.field`` we pass just those fields; anything else gets the whole object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from junction.core.errors import ConfigError, RuleError
from junction.pipeline import cel_runtime
from junction.pipeline.cel_fast import Defer, compile_checker, compile_fast

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


class Expression:
    """A compiled CEL expression returning a boolean."""

    __slots__ = ("_fast", "_getters", "check", "name", "params", "program", "source")

    def __init__(
        self,
        source: str,
        *,
        name: str,
        variables: Mapping[str, str],
        fields: Mapping[str, set[str]] | None = None,
    ) -> None:
        """Compile ``source``; ``variables`` maps each allowed variable name to its kind.

        ``fields`` optionally lists the fields each variable has, so a misspelled field is a
        configuration error rather than a null at run time.
        """
        self.source = source
        self.name = name
        try:
            self.program = cel_runtime.compile(source)
        except ValueError as exc:
            raise ConfigError(
                f"expression {name!r} does not compile", details=str(exc).splitlines()[0]
            ) from exc
        used = self.program.variables()
        unknown = sorted(set(used) - set(variables) - _comprehension_vars(source))
        if unknown:
            raise ConfigError(
                f"expression {name!r} uses unknown variable(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(variables))}"
            )
        self._getters: list[tuple[str, Callable[[Any], Any]]] = []
        for var in used:
            if var not in variables:
                continue
            used_fields = _field_only_uses(source, var)
            known = (fields or {}).get(var)
            if known is not None and used_fields is not None:
                bad = sorted(set(used_fields) - known)
                if bad:
                    raise ConfigError(
                        f"expression {name!r}: {var} has no field(s) {', '.join(bad)}"
                    )
            self._getters.append((var, _projector(used_fields)))
        self._fast = compile_fast(source, set(variables))
        # the hot path: one positional argument per kind, in the order the kinds first appear
        # in ``variables`` (e.g. record, score); generated code when the subset allows it
        self.params: tuple[str, ...] = tuple(dict.fromkeys(variables.values()))
        by_kind = [[v for v in variables if variables[v] == k] for k in self.params]

        def runtime(*args: Any) -> bool:
            return self._run({v: a for vs, a in zip(by_kind, args, strict=True) for v in vs})

        self.check: Callable[..., bool] = (
            compile_checker(source, variables, self.params, runtime) or runtime
        )

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        """Evaluate against ``values`` (variable name → model, dict or scalar)."""
        if self._fast is not None:
            # the fast path reads fields straight off the models; it defers on any value it
            # cannot type exactly (Decimal, nested models), and the runtime then decides
            try:
                fast = self._fast(values)
            except Defer:
                fast = None
            if isinstance(fast, bool):
                return fast
        return self._run(values)

    def _run(self, values: Mapping[str, Any]) -> bool:
        """Evaluate with the CEL runtime (the authority); errors become ``RuleError``."""
        activation = {var: get(values.get(var)) for var, get in self._getters}
        try:
            result = self.program.execute(activation)
        except Exception as exc:
            raise RuleError(
                f"rule {self.name!r} could not be evaluated ({type(exc).__name__})",
                context={"rule": self.name},
            ) from exc
        if not isinstance(result, bool):
            raise RuleError(
                f"rule {self.name!r} returned {type(result).__name__}, not a boolean",
                context={"rule": self.name},
            )
        return result


def _comprehension_vars(source: str) -> set[str]:
    return set(re.findall(rf"\.(?:all|exists|exists_one|map|filter)\(\s*({_IDENT})\s*,", source))


def _field_only_uses(source: str, var: str) -> list[str] | None:
    """Return the fields of ``var`` used, or None if ``var`` is used other than as ``var.f``."""
    fields: list[str] = []
    for m in re.finditer(rf"(?<![\w.]){var}\b", source):
        rest = source[m.end() :]
        f = re.match(rf"\s*\.\s*({_IDENT})", rest)
        if f is None:
            return None
        if f.group(1) not in fields:
            fields.append(f.group(1))
    return fields


def _projector(fields: list[str] | None) -> Callable[[Any], Any]:
    def whole(obj: Any) -> Any:
        return _plain(obj)

    if fields is None:
        return whole

    def project(obj: Any) -> Any:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            return {f: _plain(obj.get(f)) for f in fields}
        return {f: _plain(getattr(obj, f, None)) for f in fields}

    return project


def _plain(value: Any) -> Any:
    """Convert values CEL cannot take (Decimal, datetime, models) into ones it can."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return _plain(dump())
    if isinstance(value, Decimal):
        return float(value)
    return value
