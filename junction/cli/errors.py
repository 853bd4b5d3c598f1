"""Errors for people: one line with what went wrong and how to fix it, and a non-zero exit.

Every command's failure ends here, either through :func:`fail` or, for an error a command did
not catch, through :class:`JunctionGroup`, the root command group, which turns it into the same
one line instead of a traceback.  ``junction --debug ...`` (or ``JUNCTION_DEBUG=1``) lets the
traceback through.

The fix comes from the error itself when it says (``context["fix"]``, or a message that already
ends in ``— fix: ...`` like a mapping error located in its spec), else from :data:`FIXES`, the
common failures recognized by their message.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import orjson
import typer
from rich.console import Console
from typer.core import TyperGroup

from junction.core.errors import ConfigError, InternalError, JunctionError

if TYPE_CHECKING:
    from junction.store.repo import Store

EXIT_ERROR = 2
"""The exit code of a typed error (usage errors are click's 2 as well)."""
EXIT_UNEXPECTED = 1
"""The exit code of an error nobody planned for (a bug: please report it)."""

FIX_MARK = " — fix: "

debug = os.environ.get("JUNCTION_DEBUG", "") not in ("", "0")
"""Let tracebacks through (``--debug`` or ``JUNCTION_DEBUG=1``)."""


def _console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _did_you_mean(m: re.Match[str]) -> str:
    kind, name, close = m.group("kind"), m.group("name"), m.group("close")
    if close:
        return f"write {close!r} instead of {name!r} in the configuration"
    return f"use a {kind} that is installed (`junction connectors list` shows them)"


FIXES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"cannot read config file (?P<path>.+)$"),
        lambda m: f"check the path {m.group('path')}, or start from deploy/pipelines/leads.yaml",
    ),
    (
        re.compile(r"^(?P<src>.+?): line (?P<line>\d+): invalid YAML"),
        lambda m: (
            f"correct the YAML near line {m.group('line')} of {m.group('src')} "
            "(indentation, a missing ':', an unclosed quote or bracket)"
        ),
    ),
    (
        re.compile(r"^invalid configuration$"),
        lambda _m: (
            "correct the lines listed below; `junction check CONFIG` checks the file "
            "again without running anything"
        ),
    ),
    (
        re.compile(r"environment variable (?P<var>\S+) is not set"),
        lambda m: (
            f"export {m.group('var')}=... before running the command "
            "(or refer to a file with ${file:...})"
        ),
    ),
    (
        re.compile(r"secret file (?P<path>\S+) cannot be read"),
        lambda m: f"create {m.group('path')} next to the configuration, readable by this user",
    ),
    (
        re.compile(
            r"unknown (?P<kind>connector|channel|scorer) '(?P<name>[^']*)'"
            r"(?:; did you mean '(?P<close>[^']*)'\?)?"
        ),
        _did_you_mean,
    ),
    (
        re.compile(r"the store could not be (?:migrated|reached|opened)"),
        lambda _m: (
            "check that the database named by `store:` in the configuration is running "
            "and reachable, and that its URL, user and password are right"
        ),
    ),
    (
        re.compile(r"unknown mapping spec '(?P<id>[^']*)'"),
        lambda _m: "use a built-in spec id from the list, or a path to a .yaml spec",
    ),
    (
        re.compile(r"^no such file: (?P<path>.+)$"),
        lambda m: f"check the path {m.group('path')} (relative to the working folder)",
    ),
    (
        re.compile(r"mapping spec file not found: (?P<path>.+)$"),
        lambda m: f"check the path {m.group('path')} (relative to the working folder)",
    ),
]
"""Common failures recognized by their message, and what fixes them."""


def fix_for(exc: JunctionError) -> str | None:
    """How to fix ``exc``, when the error says or the failure is a common one."""
    given = exc.context.get("fix")
    if given:
        return str(given)
    for pattern, make in FIXES:
        found = pattern.search(exc.user_message)
        if found is not None:
            return make(found)
    return None


def error_line(exc: JunctionError) -> str:
    """The one line that tells a person what failed and how to fix it."""
    text = exc.user_message
    if FIX_MARK not in text:  # a located mapping error already says where and how
        ctx = {k: v for k, v in exc.context.items() if k != "fix"}
        if ctx:
            text += " [" + ", ".join(f"{k}={v}" for k, v in ctx.items()) + "]"
        fix = fix_for(exc)
        if fix:
            text += FIX_MARK + fix
    return f"{type(exc).__name__}: {text}"


def print_error(exc: JunctionError, console: Console | None = None) -> None:
    """Print :func:`error_line`, plus the line-numbered details of a configuration error."""
    out = console or _console()
    if debug and exc.__traceback__ is not None:
        out.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    out.print(error_line(exc), markup=False, highlight=False, style="red")
    if isinstance(exc, ConfigError) and exc.details:
        out.print(exc.details, markup=False, highlight=False)


def fail(exc: JunctionError, console: Console | None = None) -> NoReturn:
    """Print a typed error for a person and exit 2."""
    print_error(exc, console)
    raise typer.Exit(EXIT_ERROR)


class JunctionGroup(TyperGroup):
    """The root command group: an error no command caught is still one line, not a traceback."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; print typed and unexpected errors for a person."""
        try:
            return super().invoke(ctx)
        except JunctionError as exc:
            if debug:
                raise
            fail(exc)
        except OSError as exc:
            if debug:
                raise
            where = f" {exc.filename}" if exc.filename else ""
            print_error(
                ConfigError(
                    f"{exc.strerror or type(exc).__name__}:{where}",
                    context={"fix": "check the path and its permissions"},
                )
            )
            raise typer.Exit(EXIT_ERROR) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug or _is_click_control(exc):
                raise
            print_error(
                InternalError(
                    f"unexpected {type(exc).__name__} (a bug)",
                    context={
                        "fix": "run again with --debug for the traceback, and report it",
                    },
                )
            )
            raise typer.Exit(EXIT_UNEXPECTED) from None


def _is_click_control(exc: Exception) -> bool:
    """Whether ``exc`` is a usage error or the like, which the command line prints itself.

    Typer up to 0.2x raised click's own exceptions; later releases carry a copy of click
    (``typer._click``) whose ``UsageError`` and friends derive from ``TyperException``
    instead, so both families are recognized.
    """
    import click

    controls: tuple[type[BaseException], ...] = (
        click.exceptions.ClickException,
        click.exceptions.Exit,
    )
    typer_base = getattr(getattr(typer, "exceptions", None), "TyperException", None)
    if typer_base is not None:
        controls += (typer_base,)
    return isinstance(exc, controls)


def set_debug(value: bool) -> None:
    """Let tracebacks through from now on (the ``--debug`` option)."""
    global debug  # one process, one command line
    debug = value or debug


def quarantine_examples(store: Store, pipeline: str, run_id: int, *, kinds: int = 3) -> list[str]:
    """One example message per kind of error a run quarantined (by code and field), with counts.

    The messages are the stored ones: personal values in them are masked already.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    for q in store.list_quarantine(pipeline=pipeline, limit=500):
        if q.get("run_id") != run_id:
            continue
        try:
            field = str(orjson.loads(q.get("context") or "{}").get("field", ""))
        except (orjson.JSONDecodeError, AttributeError):
            field = ""
        group = groups.setdefault((str(q["error_code"]), field), [q["message"], 0])
        group[1] += 1
    lines = [
        f"quarantined {n}x: {message}" if n > 1 else f"quarantined: {message}"
        for message, n in list(groups.values())[:kinds]
    ]
    if lines:
        lines.append("(all of them: `junction quarantine list CONFIG`)")
    return lines
