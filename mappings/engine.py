"""Load mapping specs and compile them into fast record -> canonical model functions.

```python
mapping = compile_mapping(load_spec("csv.lead"))
lead = mapping.apply({"lead_id": "L-1", "email": " Jane@Example.COM ", ...})
good, bad = mapping.apply_batch(rows)   # [(index, model)], [(index, RecordError)]
```

A record either becomes a fully validated model or raises a :class:`RecordError`
(:class:`MappingError` naming the field and transform, or :class:`SchemaValidationError`
naming the field the model rejected); there is no half-filled record.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from junction.core.errors import ConfigError, MappingError, RecordError, SchemaValidationError
from junction.core.gc_pause import gc_paused
from junction.core.masking import field_class, mask_text, mask_value
from junction.core.pseudonym import pii_kind
from junction.core.rows import HeaderRows
from mappings.plan import FieldPlan, Mapper, Step, generate_mapper, run_field
from mappings.registry import TRANSFORMS, FieldContext, RecordTransform, memoize, preview
from mappings.selectors import CompiledSelector, compile_selector, literal_key
from mappings.spec import MappingSpec, parse_spec, spec_error
from schemas import ENTITY_MODELS, CanonicalModel

SPECS_DIR = Path(__file__).resolve().parent / "specs"

# exceptions a transform may raise on a value of an unexpected type; anything else is a bug
_VALUE_FAILURES = (TypeError, ValueError, AttributeError, ArithmeticError, KeyError, IndexError)


def builtin_spec_ids() -> list[str]:
    """Return the ids of the specs shipped in ``mappings/specs`` (``csv.lead``...)."""
    return sorted(
        f"{path.parent.name}.{path.stem}"
        for path in SPECS_DIR.glob("*/*.yaml")
        if not path.name.endswith(".cases.yaml")
    )


def spec_path(id_or_path: str | Path) -> Path:
    """Resolve a built-in id (``csv.lead``) or a path to the spec's YAML file.

    Raises:
        ConfigError: No such built-in spec or file.
    """
    text = str(id_or_path)
    if isinstance(id_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(id_or_path)
        if not path.is_file():
            raise ConfigError(f"mapping spec file not found: {text}")
        return path
    source, _, entity = text.partition(".")
    path = SPECS_DIR / source / f"{entity}.yaml"
    if not entity or not path.is_file():
        known = ", ".join(builtin_spec_ids()) or "none"
        raise ConfigError(f"unknown mapping spec {text!r} (built-in: {known})")
    return path


def load_spec(id_or_path: str | Path) -> MappingSpec:
    """Load and validate a spec by built-in id or by path.

    Raises:
        ConfigError: Missing file or invalid spec (with file and line).
    """
    path = spec_path(id_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read mapping spec {path}: {type(exc).__name__}") from None
    spec = parse_spec(text, source=str(path))
    builtin = path.resolve().parent.parent == SPECS_DIR
    if builtin and spec.id != f"{path.parent.name}.{path.stem}":
        raise spec_error(
            spec,
            ("id",),
            f"a built-in spec in {path.name} must have id {path.parent.name}.{path.stem}",
        )
    return spec


def compile_mapping(spec: MappingSpec | str | Path) -> CompiledMapping:
    """Compile a spec (or a built-in id / path, loaded first) into a :class:`CompiledMapping`.

    Raises:
        ConfigError: The spec does not fit its entity or a transform cannot be built.
    """
    if not isinstance(spec, MappingSpec):
        spec = load_spec(spec)
    problems = spec.target_problems()
    if problems:
        raise spec_error(spec, *problems[0])
    model = ENTITY_MODELS[spec.entity]
    pii = model.pii_fields()
    plans = [_plan(spec, target, pii) for target in spec.fields]
    return CompiledMapping(spec, model, plans)


def _plan(spec: MappingSpec, target: str, pii: Mapping[str, str]) -> FieldPlan:
    fs = spec.fields[target]
    selected: list[CompiledSelector] = []  # what the transforms built so far read the record by

    def selector(expr: str) -> Callable[[Mapping[str, Any]], Any]:
        sel = compile_selector(expr)
        selected.append(sel)
        return sel.read

    ctx = FieldContext(target, target in pii, selector, pii.get(target))
    if fs.const is not None:
        return FieldPlan(target, (), False, (), False, fs.required, fs.default, fs.const, True)
    if fs.key is not None:
        keys = [fs.key] if isinstance(fs.key, str) else fs.key
        sources = tuple(literal_key(k) for k in keys)
    else:
        exprs = [fs.from_] if isinstance(fs.from_, str) else list(fs.from_ or [])
        sources = tuple(compile_selector(e) for e in exprs)
    steps = []
    for i, call in enumerate(fs.transforms):
        tdef = TRANSFORMS[call.name]
        selected.clear()
        try:
            built = tdef.build(call.params, ctx)
        except ConfigError as exc:
            raise spec_error(spec, ("fields", target, "transforms", i), exc.user_message) from None
        if isinstance(built, RecordTransform):
            by_get = all(sel.by_get for sel in selected)
            steps.append(Step(call.name, built.fn, True, record_by_get=by_get))
        else:
            memo = memoize(built, tdef.cache, tdef.cache_max_len) if tdef.cache else None
            steps.append(Step(call.name, built, False, tdef.inline, memo))
    on_missing = any(TRANSFORMS[c.name].accepts_none for c in fs.transforms)
    many = len(sources) > 1 or isinstance(fs.from_ or fs.key, list)
    return FieldPlan(
        target, sources, many, tuple(steps), on_missing, fs.required, fs.default, None, False
    )


class CompiledMapping:
    """A spec compiled for one entity: apply it to raw records to get canonical models.

    Attributes:
        spec: The source spec.
        spec_id: The spec's id (``csv.lead``).
        entity: The canonical entity name (``lead``).
        model: The canonical pydantic class.
        fields: Target field names, in spec order.
    """

    def __init__(
        self, spec: MappingSpec, model: type[CanonicalModel], plans: list[FieldPlan]
    ) -> None:
        self.spec = spec
        self.spec_id = spec.id
        self.entity = spec.entity
        self.model = model
        self.fields = tuple(p.target for p in plans)
        self._plans = plans
        self._nulls = frozenset(spec.null_values)
        self._map: Mapper = generate_mapper(plans, self._nulls)
        self._validate = mapped_validator(model, self.fields)
        key = compile_selector(spec.source_key) if spec.source_key else None
        self._key = key.read if key is not None else None
        self._key_name = key.key if key is not None else None
        self._row_mappers: dict[tuple[str, ...], Mapper] = {}  # by header
        # where each field is written in the spec, worked out now: errors only look it up
        self._where = spec_locations(spec)
        self._pii_classes = model.pii_fields()

    def __reduce__(self) -> tuple[Any, ...]:
        # generated code does not pickle; worker processes recompile from the spec
        return (compile_mapping, (self.spec,))

    def __repr__(self) -> str:
        return f"CompiledMapping({self.spec_id!r} -> {self.entity}, {len(self.fields)} fields)"

    def key_of(self, record: Mapping[str, Any]) -> str | None:
        """Return the record's key in its source (``source_key``), or None when absent."""
        if self._key is None:
            return None
        value = self._key(record)
        if value is None or (value.__class__ is str and (value in self._nulls or not value)):
            return None
        return value.strip() if value.__class__ is str else str(value)

    def keys_of(self, records: Sequence[Mapping[str, Any]]) -> list[str | None]:
        """:meth:`key_of` of every record, in one pass (the pipeline's per-batch call)."""
        read = self._key
        if read is None:
            return [None] * len(records)
        nulls = self._nulls
        return [
            None
            if value is None or (value.__class__ is str and (value in nulls or not value))
            else value.strip()
            if value.__class__ is str
            else str(value)
            for value in map(read, records)
        ]

    def keys_at(self, records: Sequence[Mapping[str, Any]], at: Sequence[int]) -> list[str | None]:
        """:meth:`key_of` of ``records[i]`` for each ``i`` in ``at``; rows are read by column."""
        if records.__class__ is not HeaderRows or self._key_name is None:
            return self.keys_of([records[i] for i in at])
        rows: HeaderRows = records
        column = rows.columns().get(self._key_name)
        if column is None:
            return [None] * len(at)
        nulls, table = self._nulls, rows.rows
        return [
            None if value in nulls or not value else value.strip()
            for value in (table[i][column] for i in at)
        ]

    def map_values(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Return the mapped values before model validation (fields left missing are absent).

        Raises:
            MappingError: A field could not be produced.
        """
        try:
            return self._map(record)
        except _VALUE_FAILURES as exc:
            raise self._attribute(record, exc) from None

    def apply(self, record: Mapping[str, Any]) -> CanonicalModel:
        """Map and validate one record.

        Raises:
            MappingError: A field could not be produced (names the field and transform).
            SchemaValidationError: The model rejected a mapped value (names the field).
        """
        try:
            out: CanonicalModel = self._validate(self._map(record))
        except RecordError as exc:
            raise self.locate(exc) from None
        except ValidationError as exc:
            raise self.locate(schema_error(exc, self._pii_classes)) from None
        except _VALUE_FAILURES as exc:
            raise self.locate(self._attribute(record, exc)) from None
        return out

    def apply_batch(
        self, records: Sequence[Mapping[str, Any]], *, pause_gc: bool = True
    ) -> tuple[list[tuple[int, CanonicalModel]], list[tuple[int, RecordError]]]:
        """Map and validate many records; a bad record never stops the others.

        Args:
            records: Raw source records.
            pause_gc: Pause the cyclic garbage collector during the batch.  Building thousands
                of models triggers collections that rescan every live object (measured: 25 %
                of the batch time); the models form no cycles, so nothing is lost by waiting.
                The collector is re-enabled afterwards if it was enabled before.

        Returns:
            ``(good, bad)``: ``(index into records, model)`` and ``(index, RecordError)``.
        """
        if pause_gc:
            with gc_paused():
                return self._apply_all(records)
        return self._apply_all(records)

    def _apply_all(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[tuple[int, CanonicalModel]], list[tuple[int, RecordError]]]:
        good: list[tuple[int, CanonicalModel]] = []
        bad: list[tuple[int, RecordError]] = []
        mapper, validate = self._map, self._validate
        items: Sequence[Any] = records
        if records.__class__ is HeaderRows:
            # the rows themselves, read by column index: no dict per record
            rows: HeaderRows = records
            mapper, items = self._row_mapper(rows.header), rows.rows
        for i, item in enumerate(items):
            try:
                good.append((i, validate(mapper(item))))
            except RecordError as exc:
                bad.append((i, self.locate(_detached(exc))))
            except ValidationError as exc:
                bad.append((i, self.locate(schema_error(exc, self._pii_classes))))
            except _VALUE_FAILURES as exc:
                bad.append((i, self.locate(self._attribute(records[i], exc))))
        return good, bad

    def _row_mapper(self, header: tuple[str, ...]) -> Mapper:
        """The generated mapper of rows under ``header`` (one per header, kept)."""
        mapper = self._row_mappers.get(header)
        if mapper is None:
            if len(self._row_mappers) >= 16:
                self._row_mappers.clear()
            mapper = self._row_mappers[header] = generate_mapper(self._plans, self._nulls, header)
        return mapper

    def locate(self, exc: RecordError) -> RecordError:
        """The error with the spec's file and line of its field, and how to fix it.

        ``mappings/specs/csv/lead.yaml:14: field `email`: email rejected the value
        'j***@example.com' (not a valid email address) — fix: ...``.  Runs on failures only;
        the lines were looked up when the mapping was compiled.
        """
        if "spec" in exc.context or exc.field is None:  # located already, or about no field
            return exc
        return located(exc, self.spec_id, self._where)

    def _attribute(self, record: Any, exc: BaseException) -> MappingError:
        """Find the field and transform behind an unexpected exception (rare, so interpreted)."""
        if not isinstance(record, Mapping):
            return MappingError(f"the record is a {type(record).__name__}, not a mapping")
        for plan in self._plans:
            try:
                run_field(plan, record, self._nulls)
            except MappingError as err:
                return err
            except _VALUE_FAILURES as err:
                return self._field_failure(plan, record, err)
        return MappingError(
            f"mapping failed ({type(exc).__name__})", context={"spec": self.spec_id}
        )

    def _field_failure(
        self, plan: FieldPlan, record: Mapping[str, Any], err: Exception
    ) -> MappingError:
        step, value = _diagnose(plan, record, self._nulls)
        if step is None:
            exprs = ", ".join(s.expr for s in plan.sources)
            return MappingError(
                f"{plan.target}: the selector {exprs} failed on this record ({type(err).__name__})",
                field=plan.target,
                context={"transform": "selector"},
            )
        cls = self._pii_classes.get(plan.target)
        if cls is None:
            shown = f"{preview(mask_text(value))} ({type(err).__name__})"
        else:
            masked = mask_value(cls, value, kind=pii_kind(plan.target))
            shown = f"{preview(masked)} (personal data, masked; {type(err).__name__})"
        return MappingError(
            f"{plan.target}: {step} failed on a {type(value).__name__} value {shown}",
            field=plan.target,
            context={"transform": step},
        )


def mapped_validator(
    model: type[CanonicalModel], targets: Sequence[str]
) -> Callable[[Mapping[str, Any]], Any]:
    """The model's validator for what the generated mapper returns, without the extra-key pass.

    The mapper's dict only ever holds the spec's targets, and :func:`compile_mapping` refuses a
    target the model does not have, so ``extra="forbid"`` can never fire on it; checking every
    key against the fields anyway costs ~5,600 instructions of pydantic's ~33,000 per lead.  The
    same validator with ``extra="ignore"`` per call validates every value and raises every error
    exactly as before.  A target outside the model (which compile_mapping refuses anyway)
    keeps the plain validator.
    """
    validate = model.__pydantic_validator__.validate_python
    if model.model_config.get("extra") != "forbid" or not set(targets) <= set(model.model_fields):
        return validate
    return functools.partial(validate, extra="ignore")


def _diagnose(
    plan: FieldPlan, record: Mapping[str, Any], nulls: frozenset[str]
) -> tuple[str | None, Any]:
    """Replay a field step by step: the failing step's name (None: a selector) and its input."""
    try:
        values = [s.read(record) for s in plan.sources]
    except _VALUE_FAILURES:
        return None, None
    values = [None if v.__class__ is str and v in nulls else v for v in values]
    value: Any = tuple(values) if plan.many else values[0]
    for step in plan.steps:
        try:
            value = step.fn(value, record) if step.takes_record else step.fn(value)
        except _VALUE_FAILURES:
            return step.name, value
    return None, value


def _detached(exc: RecordError) -> RecordError:
    """Drop the traceback of an error kept for quarantine.

    The traceback references this frame, whose locals hold the batch and the error list: a
    reference cycle that would keep the whole batch (raw records with personal data included)
    alive until the next full collection.  The suppressed context (the library exception behind
    a MappingError, whose frames hold the raw value) goes too.
    """
    exc.__traceback__ = None
    if exc.__suppress_context__:
        exc.__context__ = None
    return exc


def schema_error(
    exc: ValidationError, pii: Mapping[str, str] | None = None
) -> SchemaValidationError:
    """Turn pydantic's ValidationError into a SchemaValidationError naming the first field.

    Without ``pii`` the message is pydantic's, which states the rule ("should be greater than or
    equal to 0") but not the input.  With ``pii`` (the model's ``{field: class}``) the input is
    shown too, masked by its class when the field is personal data (``a***@example.com``), so
    that the person fixing the data sees what was rejected.  The exception itself is dropped
    (``from None`` at the call sites) as it holds the input in clear.
    """
    err = exc.errors(include_url=False, include_input=pii is not None, include_context=False)[0]
    loc = err["loc"]
    field = str(loc[0]) if loc else None
    where = ".".join(str(p) for p in loc) or "record"
    msg = f"{where}: {err['msg']}"
    if pii is not None and field is not None and "input" in err:
        value = err["input"]
        cls = field_class(field, pii)
        # a field not classified may still carry an address or a phone number in its text
        if cls is None:
            shown, why = preview(mask_text(value)), err["msg"]
        else:
            masked = mask_value(cls, value, kind=pii_kind(field))
            shown, why = preview(masked), f"personal data, masked; {err['msg']}"
        msg = f"{where}: the {entity_of(exc)} schema rejected the value {shown} ({why})"
    return SchemaValidationError(
        msg,
        field=field,
        context={"error_type": err["type"], "errors": exc.error_count()},
    )


def entity_of(exc: ValidationError) -> str:
    """The canonical entity a ValidationError is about (its model's title, lower case)."""
    return exc.title.lower()


FIXES: dict[str, str] = {
    "email": "correct the address in the source, or drop the `email` transform to keep it as text",
    "phone_e164": "correct the number in the source, or give `region` / `region_from` so that "
    "national numbers can be read",
    "int": "correct the number in the source, or set `thousands_sep` to the source's separators",
    "decimal": "correct the number in the source, or set `decimal_sep` / `thousands_sep` to the "
    "source's locale",
    "datetime": "correct the date in the source, or add its format to `formats`",
    "date": "correct the date in the source, or add its format to `formats`",
    "country": "correct the country in the source, or map the name with a `lookup` transform",
    "lookup": "add the value to the `lookup` table, or give the lookup a `default`",
    "bool": "correct the value in the source, or list it in the transform's `true` / `false`",
}
"""How to fix a value a transform rejected, by transform; others get the generic advice."""


def spec_locations(spec: MappingSpec) -> dict[str | None, str]:
    """``{field: "path:line"}`` of a spec's fields (``None``: the spec itself), for errors.

    The path is relative to the working folder when the spec is under it, as people type it;
    a built-in spec's is ``mappings/specs/...``.
    """
    path = spec.source
    if path != "<spec>":
        full = Path(path).resolve()
        # built-in specs as the repository names them (mappings/specs/csv/lead.yaml)
        for base in (Path.cwd(), SPECS_DIR.parent.parent):
            if full.is_relative_to(base):
                path = str(full.relative_to(base))
                break
    out: dict[str | None, str] = {None: path if path != "<spec>" else f"mapping {spec.id}"}
    for target in spec.fields:
        line = spec.line_of(("fields", target))
        out[target] = f"{path}:{line}" if line and path != "<spec>" else out[None]
    return out


def located(exc: RecordError, spec_id: str, where: Mapping[str | None, str]) -> RecordError:
    """A copy of ``exc`` saying where its field is in the spec and how to fix it."""
    field = exc.field
    at = where.get(field) or where[None]
    body = exc.user_message
    if field is not None:
        body = body.removeprefix(f"{field}: ")
        body = f"field `{field}`: {body}"
    fix = _fix(exc, field)
    out = copy.copy(exc)
    out.user_message = f"{at}: {body} — fix: {fix}"
    out.args = (out.user_message,)
    path, _, line = at.rpartition(":")
    ctx = {**exc.context, "spec": spec_id}
    if line.isdigit():
        ctx.update(spec_file=path, spec_line=int(line))
    out.context = ctx
    return out


def _fix(exc: RecordError, field: str | None) -> str:
    if isinstance(exc, SchemaValidationError):
        return (
            f"correct `{field}` in the source, or add a transform that turns it into what the "
            "schema expects"
        )
    transform = exc.context.get("transform")
    if transform in FIXES:
        return FIXES[str(transform)]
    if "required value is missing" in exc.user_message:
        return (
            f"fill `{field}` in the source, or drop `required: true` or give a `default` for it "
            "in the spec"
        )
    if field is None:
        return "check that the source sends the records this spec expects"
    return f"correct `{field}` in the source, or change its transforms in the spec"
