"""The batch GC pause: off inside, back as it was after, even when the batch fails."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from junction.core.gc_pause import gc_paused


@pytest.fixture
def restore_gc() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.usefixtures("restore_gc")
def test_the_collector_is_off_inside_and_on_again_after() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
def test_a_collector_someone_else_disabled_stays_disabled() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


@pytest.mark.usefixtures("restore_gc")
def test_cycles_made_inside_are_collected_after() -> None:
    gc.enable()
    gc.collect()

    class Node:
        pass

    with gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert any(type(o) is Node for o in gc.get_objects())
    gc.collect()
    assert not any(type(o) is Node for o in gc.get_objects())
