"""The mapping engine: YAML specs that turn raw source records into canonical models.

```python
from mappings import compile_mapping

mapping = compile_mapping("csv.lead")          # built-in id, or a path to a YAML spec
good, bad = mapping.apply_batch(rows)          # [(index, Lead)], [(index, RecordError)]
```

See ``mappings/README.md`` for the spec format and the transforms.
"""

from mappings.cases import CaseResult, run_builtin_cases, run_cases
from mappings.engine import (
    CompiledMapping,
    builtin_spec_ids,
    compile_mapping,
    load_spec,
    schema_error,
)
from mappings.spec import FieldSpec, MappingSpec, TransformCall, parse_spec
from mappings.transforms import FieldContext, compile_transform, transform_names

__all__ = [
    "CaseResult",
    "CompiledMapping",
    "FieldContext",
    "FieldSpec",
    "MappingSpec",
    "TransformCall",
    "builtin_spec_ids",
    "compile_mapping",
    "compile_transform",
    "load_spec",
    "parse_spec",
    "run_builtin_cases",
    "run_cases",
    "schema_error",
    "transform_names",
]
