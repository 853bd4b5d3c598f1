"""The YAML mapping spec: pydantic models (``extra="forbid"``) plus line-numbered loading.

See ``mappings/README.md`` for the format.  :func:`parse_spec` composes the YAML into nodes
first, so every error (YAML syntax, duplicate keys, pydantic validation, unknown target fields)
becomes a :class:`ConfigError` naming the file and line.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from junction.core.errors import ConfigError
from mappings.registry import Params, parse_params
from mappings.selectors import compile_selector
from mappings.transforms import TRANSFORMS
from schemas import ENTITY_MODELS, Entity

Loc = tuple[str | int, ...]


class TransformCall(BaseModel):
    """One step of a field's chain: written ``trim`` or ``{decimal: {decimal_sep: ","}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: Params

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            name, arg = raw, None
        elif isinstance(raw, dict) and set(raw) == {"name", "params"}:
            name, arg = raw["name"], raw["params"]
        elif isinstance(raw, dict) and len(raw) == 1:
            name, arg = next(iter(raw.items()))
        else:
            raise ValueError("a transform is a name or a one-key mapping {name: parameters}")
        tdef = TRANSFORMS.get(str(name))
        if tdef is None:
            known = ", ".join(sorted(TRANSFORMS))
            raise ValueError(f"unknown transform {name!r} (known: {known})")
        params = arg if isinstance(arg, tdef.params) else parse_params(tdef, arg)
        return {"name": name, "params": params}


class FieldSpec(BaseModel):
    """How one canonical field is produced: exactly one of ``from``, ``key`` or ``const``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str | list[str] | None = Field(
        None, alias="from", description="JMESPath selector(s); a list feeds concat/coalesce."
    )
    key: str | list[str] | None = Field(None, description="Literal source key(s), any text.")
    const: Any = Field(None, description="A constant value instead of a source.")
    transforms: list[TransformCall] = Field([], description="Applied in order.")
    required: bool = Field(False, description="Missing after the transforms is an error.")
    default: Any = Field(None, description="Value when missing after the transforms.")

    @field_validator("transforms")
    @classmethod
    def _list_steps_first(cls, v: list[TransformCall], info: ValidationInfo) -> list[TransformCall]:
        many = isinstance(info.data.get("from_") or info.data.get("key"), list)
        for i, call in enumerate(v):
            if TRANSFORMS[call.name].takes_list and not (many and i == 0):
                raise ValueError(f"[{i}] {call.name!r} needs a list source and must come first")
        return v

    @model_validator(mode="after")
    def _check_source(self) -> FieldSpec:
        # None means "not given" for all three, so a dumped spec validates again
        given = [n for n in ("from_", "key", "const") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'from', 'key' or 'const'")
        if self.from_ is not None:
            for expr in [self.from_] if isinstance(self.from_, str) else self.from_:
                compile_selector(expr)
        if "const" in given and self.transforms:
            raise ValueError("a 'const' field takes no transforms")
        many = isinstance(self.from_ if self.from_ is not None else self.key, list)
        if many and not (self.transforms and TRANSFORMS[self.transforms[0].name].takes_list):
            raise ValueError("a list source must start with a list transform (concat, coalesce)")
        return self


class MappingSpec(BaseModel):
    """A mapping from one source's raw records to one canonical entity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", description="csv.lead")
    entity: Entity = Field(..., description="Canonical entity produced.")
    description: str = Field("", description="What source this spec reads.")
    source_key: str | None = Field(None, description="Selector of the record's key in its source.")
    null_values: tuple[str, ...] = Field(("",), description="Text meaning 'no value', any field.")
    fields: dict[str, FieldSpec] = Field(..., min_length=1, description="target -> how.")
    reader: dict[str, Any] | None = Field(
        None,
        description="How `junction ingest` reads a file for this spec: a connector id and its "
        "options, e.g. {connector: commerceml, document: import}; default: by file type.",
    )

    _source: str = PrivateAttr("<spec>")
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)

    @field_validator("source_key")
    @classmethod
    def _check_selector(cls, v: str | None) -> str | None:
        if v is not None:
            compile_selector(v)
        return v

    @property
    def source(self) -> str:
        """Where the spec was read from (a path, or ``<spec>`` when built in code)."""
        return self._source

    def line_of(self, loc: Loc) -> int | None:
        """Return the YAML line of the deepest known node on ``loc`` (None if not from YAML)."""
        for end in range(len(loc), -1, -1):
            line = self._lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def target_problems(self) -> list[tuple[Loc, str]]:
        """Check the targets against the entity's model; return ``(loc, message)`` problems."""
        model = ENTITY_MODELS[self.entity]
        known = [n for n in model.model_fields if n != "schema_version"]
        return [
            (("fields", name), f"{self.entity} has no field {name!r} (fields: {', '.join(known)})")
            for name in self.fields
            if name not in known
        ]


def parse_spec(text: str, source: str = "<spec>") -> MappingSpec:
    """Parse and validate a YAML mapping spec.

    Args:
        text: The YAML document.
        source: Its path or name, for error messages.

    Returns:
        The validated spec.

    Raises:
        ConfigError: Anything wrong, with ``context["line"]`` and the line in the message.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _error(source, 1, "", "the spec is empty")
        lines: dict[Loc, int] = {}
        _index_lines(node, (), lines, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        msg = f"YAML syntax: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            msg += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise _error(source, line, "", msg) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise _error(source, lines.get((), 1), "", "the spec must be a mapping")
    try:
        spec = MappingSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        loc = _yaml_loc(err["loc"], data)
        where = loc
        if err["type"] == "missing" and err["loc"]:
            where = (*loc, err["loc"][-1])  # the missing key is not in the YAML, but name it
        raise _error(source, _lookup(lines, loc), _where(where), _message(err["msg"])) from None
    spec._source = source
    spec._lines = lines
    problems = spec.target_problems()
    if problems:
        loc, msg = problems[0]
        raise _error(source, _lookup(lines, loc), _where(loc), msg)
    return spec


def spec_error(spec: MappingSpec, loc: Loc, msg: str) -> ConfigError:
    """Build a ConfigError about ``loc`` in ``spec``, with its line when the spec came from YAML."""
    return _error(spec.source, spec.line_of(loc) or 0, _where(loc), msg)


def _error(source: str, line: int, where: str, msg: str) -> ConfigError:
    at = f"{source}:{line}" if line else source
    return ConfigError(
        f"{at}: {where + ': ' if where else ''}{msg}", context={"source": source, "line": line}
    )


def _message(msg: str) -> str:
    # pydantic prefixes messages from our validators with "Value error, "
    return msg.removeprefix("Value error, ")


def _where(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _yaml_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """Keep the parts of a pydantic error location that exist in the YAML data.

    Pydantic adds union branch names ("str", "list[str]") and validator tags to locations.
    """
    out: list[str | int] = []
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        if in_dict or (isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)):
            cur = cur[part]
            out.append(part)
        # anything else is a pydantic tag ("str", "function-after[...]"): skip it
    return tuple(out)


def _lookup(lines: dict[Loc, int], loc: Loc) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], source: str) -> None:
    """Record the line of every node by its location; reject duplicate keys (YAML allows them)."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise _error(
                    source, key_node.start_mark.line + 1, _where(loc), f"duplicate key {key!r}"
                )
            seen.add(key)
            _index_lines(value_node, (*loc, key), lines, source)
            # errors about a mapping entry point at its key, which is where people look
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*loc, i), lines, source)
