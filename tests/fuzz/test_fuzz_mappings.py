"""Fuzz the mapping engine: random records through every built-in mapping spec.

Each example starts from an input of the spec's own cases file (so most fields are present and
realistic) and replaces, nests, drops or adds values at random (None, numbers, NaN, huge
integers, odd strings, lists, dicts).  ``apply_batch`` must never raise and must report every
failure as a ``RecordError``; ``apply`` must raise only Junction errors.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from junction.core.errors import JunctionError, RecordError
from mappings import CompiledMapping, builtin_spec_ids, compile_mapping
from mappings.engine import spec_path
from tests.fuzz.support import JSON_VALUES, fuzz_settings

pytestmark = pytest.mark.fuzz

SPECS = builtin_spec_ids()


@functools.cache
def mapping(spec_id: str) -> CompiledMapping:
    return compile_mapping(spec_id)


@functools.cache
def seeds(spec_id: str) -> list[dict[str, Any]]:
    path = spec_path(spec_id)
    cases = yaml.safe_load(path.with_name(f"{path.stem}.cases.yaml").read_text(encoding="utf-8"))
    return [case["input"] for case in cases["cases"]]


def _keys(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a nested record (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _keys(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _keys(v, (*prefix, i))
    return out


def _set(record: Any, path: tuple[Any, ...], value: Any, drop: bool) -> None:
    for step in path[:-1]:
        record = record[step]
    if drop and isinstance(record, dict):
        record.pop(path[-1], None)
    else:
        record[path[-1]] = value


@st.composite
def records(draw: st.DrawFn) -> tuple[str, Any]:
    spec_id = draw(st.sampled_from(SPECS))
    if draw(st.integers(0, 15)) == 0:  # now and then not a record at all
        return spec_id, draw(st.one_of(JSON_VALUES, st.dictionaries(st.text(), JSON_VALUES)))
    base = draw(st.sampled_from(seeds(spec_id)))
    record = copy.deepcopy(base)
    paths = _keys(record)
    for _ in range(draw(st.integers(1, 6))):
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        try:
            _set(record, path, draw(JSON_VALUES), drop=draw(st.integers(0, 4)) == 0)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced the parent
        paths = _keys(record)
    if draw(st.booleans()):
        record[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return spec_id, record


@fuzz_settings(max_examples=150)
@given(case=records())
def test_mappings_raise_only_record_errors(case: tuple[str, Any]) -> None:
    spec_id, record = case
    compiled = mapping(spec_id)
    good, bad = compiled.apply_batch([record])
    assert len(good) + len(bad) == 1
    for _index, error in bad:
        assert isinstance(error, RecordError), error
    with contextlib.suppress(JunctionError):  # anything else propagates and fails the test
        compiled.apply(record)
    if isinstance(record, dict):
        compiled.keys_of([record])
