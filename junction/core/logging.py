"""Structured logging (structlog).  Log lines carry ids and counts, never record contents.

Personal data never reaches a log line in clear: every event passes ``pseudonymize`` first, which
replaces values under personal field names (``email``, ``phone``, ``first_name``, ``*_email``...)
and any email address or E.164 phone number inside other text (error messages, paths, ids) with
its keyed HMAC pseudonym (``junction.core.pseudonym``), and the rendered line is checked once more
(tracebacks are rendered after the processors).  The key is the hub's pseudonym key when the
process installed it (:func:`set_pseudonymizer`), else ``JUNCTION_PSEUDONYM_KEY``, else a random
key of this process: its pseudonyms still join within the process but reveal nothing.

``JUNCTION_LOG_TEE`` names a file every rendered line is also appended to (the test suite's
canary check reads it; an operator can use it to keep a local copy).  Processes without their own
``logging`` handlers (``junction serve``) route the standard library's records (uvicorn,
SQLAlchemy, SDKs) through the same pseudonymization, to stderr and the tee.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

from junction.core.errors import ConfigError
from junction.core.pii_text import EMAIL_IN_TEXT, PHONE_IN_TEXT

if TYPE_CHECKING:
    from junction.core.pseudonym import Pseudonymizer

TEE_ENV = "JUNCTION_LOG_TEE"

_configured = False
_pseudonymizer: Pseudonymizer | None = None
_tee_lock = threading.Lock()


def set_pseudonymizer(pseudonymizer: Pseudonymizer | None) -> None:
    """Use ``pseudonymizer`` (the hub's key) for log pseudonyms from now on (None: the default)."""
    global _pseudonymizer
    _pseudonymizer = pseudonymizer


def _current() -> Pseudonymizer:
    global _pseudonymizer
    if _pseudonymizer is None:
        # imported here: the pseudonym module reads key files, which log (a cycle at import)
        from junction.core.pseudonym import ENV_KEY, Pseudonymizer

        env = os.environ.get(ENV_KEY)
        try:
            _pseudonymizer = Pseudonymizer(env.encode("utf-8") if env else os.urandom(32))
        except ConfigError:  # a short env key: reported where the key is used; logs stay keyed
            _pseudonymizer = Pseudonymizer(os.urandom(32))
    return _pseudonymizer


def pseudonymize_text(text: str) -> str:
    """``text`` with every email address and E.164 phone number replaced by its pseudonym."""
    of = _current().of
    if "@" in text:
        text = EMAIL_IN_TEXT.sub(lambda m: of("email", m.group(0)), text)
    if "+" in text:
        text = PHONE_IN_TEXT.sub(lambda m: of("phone", m.group(0)), text)
    return text


def _replace(kind: str, value: object) -> str:
    return _current().of(kind, value)


def _deep_text(data: Any) -> Any:
    if isinstance(data, str):
        return pseudonymize_text(data)
    if isinstance(data, dict):
        return {k: _deep_text(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_deep_text(v) for v in data]
    return data


def pseudonymize(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """A structlog processor: personal values in the event replaced by keyed pseudonyms."""
    from junction.core.pseudonym import scrub

    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key == "exc_info" or isinstance(value, BaseException):
            out[key] = value  # rendered later; the sink pseudonymizes the rendered text
        elif isinstance(value, str | dict | list | tuple):
            out[key] = _deep_text(scrub({key: value}, _replace)[key])
        else:
            out[key] = scrub({key: value}, _replace)[key]
    return out


def _tee(line: str) -> None:
    path = os.environ.get(TEE_ENV)
    if not path:
        return
    data = (line if line.endswith("\n") else line + "\n").encode("utf-8", "backslashreplace")
    with _tee_lock:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def emit(line: str) -> None:
    """Write one rendered log line (pseudonymized once more) to stderr and the tee file."""
    line = pseudonymize_text(line)
    print(line, file=sys.stderr, flush=True)  # noqa: T201 - this is the log sink
    _tee(line)


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at the time (CLI runners and tests swap it)."""

    def __init__(self, *_args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        emit(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


class _StdlibBridge(logging.Handler):
    """Standard-library records, pseudonymized, to the same sink as structlog's lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            emit(self.format(record))
        except Exception:  # noqa: BLE001 - a broken log record must not break the caller
            self.handleError(record)


def _bridge_stdlib() -> None:
    """Route stdlib logging to the sink when nothing else handles it (no test or app handlers)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = _StdlibBridge(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root.addHandler(handler)


def configure(level: str = "INFO", *, json: bool = False) -> None:
    """Configure structlog once for the process (stderr, key=value or JSON)."""
    global _configured
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        # plain tracebacks: a rich one shows every frame's locals, records with personal data too
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            pseudonymize,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib()
    _configured = True


def get_logger(name: str) -> Any:
    """Return a bound structlog logger for ``name``."""
    if not _configured:
        configure()
    return structlog.get_logger(name)
