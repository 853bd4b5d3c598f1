"""Progress bars for the CLI's long work, on a terminal only.

```python
with progress("erasing", total=len(tables)) as advance:
    for table in tables:
        ...
        advance(1)
```

The bar goes to stderr, so a command's output on stdout (an export, ``--json``) stays clean.
When stderr is not a terminal (a pipe, a log file, CI), or the command prints machine-readable
output, :func:`progress` hands out a callback that does nothing: no bar, no final frame, no
escape codes.  Library code reports progress through a plain ``progress: Callable[[int], None]
| None`` argument and never imports Rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")
Advance = Callable[[int], None]
"""Report ``n`` more units of work done."""


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


console_factory: Callable[[], Console] = _stderr
"""Makes the console bars draw on (tests swap in ``Console(force_terminal=True)``)."""


def progress_bar(total: int | None = None, *, transient: bool = False) -> Progress:
    """A Rich progress bar for long work, on the progress console (drawn on a terminal only).

    Prefer :func:`progress`, which draws nothing at all when stderr is not a terminal.
    """
    console = console_factory()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def _nothing(_n: int = 1) -> None:
    return None


@contextmanager
def progress(
    description: str,
    total: int | None = None,
    *,
    quiet: bool = False,
    transient: bool = False,
) -> Iterator[Advance]:
    """Show a progress bar while the block runs; yield the callback that advances it.

    Args:
        description: What is being done ("replaying", a file name).
        total: Units of work, when known (None: a spinner and a count).
        quiet: Draw nothing (``--json`` output, and such).
        transient: Remove the bar when done (for work repeated in a loop).
    """
    console = console_factory()
    if quiet or not console.is_terminal:
        yield _nothing
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def tracked(items: Sequence[T], description: str, *, quiet: bool = False) -> Iterator[T]:
    """Iterate ``items`` with a progress bar over them."""
    with progress(description, total=len(items), quiet=quiet) as advance:
        for item in items:
            yield item
            advance(1)
