"""How a named transform is declared, compiled once into a closure, and how it fails.

A transform is registered with :func:`transform`: a builder that receives its validated
parameters (a pydantic model, ``extra="forbid"``) and a :class:`FieldContext`, and returns a
closure ``(value) -> value``, or a :class:`RecordTransform` when it needs to read other source
fields of the same record (``phone_e164`` with ``region_from``).

Every closure is None-safe: ``None`` (a missing value) goes through unchanged, except for the
transforms declared ``accepts_none`` (``default``), which exist to replace it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from junction.core.errors import ConfigError, MappingError
from junction.core.masking import SENSITIVE, mask_text, mask_value
from junction.core.pseudonym import pii_kind

Selector = Callable[[Mapping[str, Any]], Any]
"""Reads one value out of a source record."""

ValueFn = Callable[[Any], Any]
RecordFn = Callable[[Any, Mapping[str, Any]], Any]

# values longer than this are cut in error messages: enough to recognise, not a payload dump
_PREVIEW_CHARS = 60


class Params(BaseModel):
    """Base of every transform's parameters: unknown parameters are configuration errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """For transforms that take no parameters."""


class RecordTransform(NamedTuple):
    """A compiled transform that also reads the whole source record: ``fn(value, record)``."""

    fn: RecordFn


@dataclass(frozen=True, slots=True)
class FieldContext:
    """What a transform knows, at compile time, about the target field it produces.

    Attributes:
        field: The canonical field the value is mapped into (named in errors).
        pii: True when the field holds personal data: its values appear in messages masked.
        selector: Compiles a source selector (same syntax as ``from``) for transforms that read
            another field of the record; None when no record access is possible.
        pii_class: The field's personal-data class (``x-pii``), which picks the mask; None
            masks the value completely.
    """

    field: str
    pii: bool = False
    selector: Callable[[str], Selector] | None = None
    pii_class: str | None = None

    def fail(self, transform: str, reason: str, value: Any = None) -> MappingError:
        """Build the error for a value this transform cannot convert.

        Args:
            transform: The transform's name.
            reason: Why, in words that never contain the value itself.
            value: The offending value: shown shortened, or masked by its personal-data class
                (``a***@example.com``, ``+44*******123``, initials) when the field is personal.

        Returns:
            The MappingError to raise (``raise ctx.fail(...) from None`` so that library
            exceptions, which may quote the value, are not chained into logs).
        """
        if self.pii:
            shown = preview(masked_value(self, value))
            msg = f"{self.field}: {transform} rejected the value {shown}"
            msg += f" (personal data, masked; {reason})"
        elif value is not None:
            shown = preview(mask_text(value))  # an address or a phone in any text is masked
            msg = f"{self.field}: {transform} rejected the value {shown} ({reason})"
        else:
            msg = f"{self.field}: {transform} rejected the value ({reason})"
        return MappingError(msg, field=self.field, context={"transform": transform})


def masked_value(ctx: FieldContext, value: Any) -> Any:
    """``value`` of a personal field masked by its class (``junction.core.masking``)."""
    return mask_value(ctx.pii_class or SENSITIVE, value, kind=pii_kind(ctx.field))


def preview(value: Any) -> str:
    """Return a short ``repr`` of a (non-personal) value for an error message."""
    text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        return text[: _PREVIEW_CHARS - 3] + "..."
    return text


@dataclass(frozen=True, slots=True)
class TransformDef:
    """A registered transform.

    Attributes:
        name: Name used in specs.
        params: Pydantic model of its parameters.
        build: ``build(params, ctx)`` returns the closure (or a RecordTransform).
        shorthand: Parameter filled when the spec gives a bare value (``{default: new}``).
        accepts_none: Called on missing values too (it exists to replace them).
        takes_list: Consumes the list of values a list ``from`` selects (concat, coalesce).
        summary: One line for docs and ``junction mappings transforms``.
        inline: The generated mapper may replace the closure by the same text operation written
            in place (``trim``, ``lower``, ``upper``, ``title``; see ``mappings.plan``).
        cache: Memoize results per distinct input string, keeping at most this many (0: off);
            only for pure, deterministic transforms whose inputs repeat.
        cache_max_len: Cache only strings up to this length (dates: "01.03.2026" repeats,
            full time stamps rarely do); None for any length.
    """

    name: str
    params: type[Params]
    build: Callable[[Any, FieldContext], ValueFn | RecordTransform]
    shorthand: str | None = None
    accepts_none: bool = False
    takes_list: bool = False
    summary: str = ""
    inline: bool = False
    cache: int = 0
    cache_max_len: int | None = None


TRANSFORMS: dict[str, TransformDef] = {}


def transform(
    name: str,
    params: type[Params] = NoParams,
    *,
    shorthand: str | None = None,
    accepts_none: bool = False,
    takes_list: bool = False,
    inline: bool = False,
    cache: int = 0,
    cache_max_len: int | None = None,
) -> Callable[[Callable[[Any, FieldContext], Any]], Callable[[Any, FieldContext], Any]]:
    """Register a transform builder under ``name`` (a decorator).

    ``cache`` declares the built closure pure over strings: :func:`compile_transform` and the
    engine memoize it per distinct input (:func:`memoize`), so builders never wrap themselves.
    """

    def register(build: Callable[[Any, FieldContext], Any]) -> Callable[[Any, FieldContext], Any]:
        doc = (build.__doc__ or "").strip().splitlines()
        TRANSFORMS[name] = TransformDef(
            name,
            params,
            build,
            shorthand,
            accepts_none,
            takes_list,
            doc[0] if doc else "",
            inline,
            cache,
            cache_max_len,
        )
        return build

    return register


def parse_params(tdef: TransformDef, raw: Any) -> Params:
    """Validate the parameters a spec gives a transform.

    Args:
        tdef: The transform.
        raw: None (no parameters), a mapping of parameters, or a bare value for the shorthand.

    Returns:
        The validated parameter model.

    Raises:
        ValueError: The parameters are wrong (the spec loader adds the YAML line).
    """
    if raw is None:
        data: dict[str, Any] = {}
    elif isinstance(raw, dict) and not _is_shorthand_value(tdef, raw):
        data = raw
    elif tdef.shorthand is not None:
        data = {tdef.shorthand: raw}
    else:
        raise ValueError(f"transform {tdef.name!r} takes a mapping of parameters")
    try:
        return tdef.params.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False)[:3]:
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"parameter {where!r}: {msg}" if where else msg)
        raise ValueError(f"transform {tdef.name!r}: {'; '.join(problems)}") from None


def _is_shorthand_value(tdef: TransformDef, raw: dict[Any, Any]) -> bool:
    # a mapping is a transform's parameters, unless the shorthand parameter itself takes any
    # value and the keys are not parameter names: `{default: {a: 1}}` defaults to {a: 1}
    if tdef.shorthand is None or tdef.params.model_fields[tdef.shorthand].annotation is not Any:
        return False
    return not all(isinstance(k, str) and k in tdef.params.model_fields for k in raw)


def compile_transform(
    name: str, params: Any = None, ctx: FieldContext | None = None
) -> ValueFn | RecordTransform:
    """Compile one transform into its closure.

    Args:
        name: A registered transform name.
        params: Validated parameters, a mapping of parameters, a shorthand value, or None.
        ctx: The target field's context (defaults to a non-personal field named ``value``).

    Returns:
        ``fn(value) -> value``, or a RecordTransform for record-aware transforms.

    Raises:
        ConfigError: Unknown transform or invalid parameters.
    """
    tdef = TRANSFORMS.get(name)
    if tdef is None:
        raise ConfigError(f"unknown transform {name!r} (known: {', '.join(sorted(TRANSFORMS))})")
    if not isinstance(params, Params):
        try:
            params = parse_params(tdef, dict(params) if isinstance(params, Mapping) else params)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    built = tdef.build(params, ctx or FieldContext("value"))
    if tdef.cache and not isinstance(built, RecordTransform):
        return memoize(built, tdef.cache, tdef.cache_max_len).cached
    return built


class Memo(NamedTuple):
    """A memoized ``str -> value`` function, with its parts open to the generated mapper.

    Attributes:
        cache: ``{input string: result}``; the generated mapper reads it in place
            (``h = C.get(v, MISS)``) instead of calling a closure per value.
        cached: ``value -> result``, looking in ``cache`` first.
        store: ``value -> result``, computed and remembered: the mapper's path on a miss.
        max_len: Only strings up to this length are cached (None: any length).
    """

    cache: dict[str, Any]
    cached: ValueFn
    store: ValueFn
    max_len: int | None


def memoize(fn: ValueFn, maxsize: int, max_len: int | None = None) -> Memo:
    """Memoize a pure ``str -> value`` function, keeping at most ``maxsize`` entries.

    Real exports repeat countries, industries, small counts and dates endlessly; a dict hit
    costs tens of nanoseconds against microseconds for the library call.  The cache is cleared
    when full rather than kept in LRU order, which would cost more per hit than it saves.  Only
    exact ``str`` inputs (of at most ``max_len`` characters) are cached; errors are not (they
    are rare, and they carry the field context).
    """
    cache: dict[str, Any] = {}
    limit = max_len if max_len is not None else -1
    miss = object()

    def store(value: Any) -> Any:
        result = fn(value)
        if value.__class__ is str and (limit < 0 or len(value) <= limit):
            if len(cache) >= maxsize:
                cache.clear()
            cache[value] = result
        return result

    def cached(value: Any) -> Any:
        if value.__class__ is not str:
            return fn(value)
        hit = cache.get(value, miss)
        return store(value) if hit is miss else hit

    def cached_short(value: Any) -> Any:
        # long text (full time stamps) skips the lookup: hashing it would be wasted
        if value.__class__ is not str or len(value) > limit:
            return fn(value)
        hit = cache.get(value, miss)
        return store(value) if hit is miss else hit

    return Memo(cache, cached if limit < 0 else cached_short, store, max_len)


def bounded_cache(fn: ValueFn, maxsize: int) -> ValueFn:
    """Memoize a pure ``str -> value`` function (:func:`memoize`'s caching function)."""
    return memoize(fn, maxsize).cached
