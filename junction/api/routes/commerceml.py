"""The CommerceML HTTP exchange: 1C:Enterprise (its site exchange) pushes files to a pipeline.

``GET|POST /exchange/commerceml/{pipeline}?type=catalog|sale&mode=...`` speaks 1C's plain-text
protocol:

* ``checkauth``: HTTP Basic (UTF-8 credentials; cp1251 from old 1C builds) against the
  pipeline's ``source.exchange`` login → ``success\\n<cookie name>\\n<cookie value>``; later calls
  carry the cookie (or Basic again).
* ``init`` → ``zip=no\\nfile_limit=<bytes>`` (no larger than the API's body limit).
* ``file&filename=import.xml`` (POST, possibly several chunks): appended to a spool file under
  ``<watched folder>/.commerceml-spool/`` and fsynced before ``success``.  Files that are not XML
  (``import_files/...`` images) are acknowledged and dropped.
* ``import&filename=import.xml``: the spool file is fsynced, marked settled and renamed into the
  watched folder of the pipeline (of the same exchange login) whose ``document`` kind matches the
  file; that pipeline then runs (the ordinary file-drop path: scan, read, map, store, archive:
  under ``junction serve`` the scheduler runs it, else it runs here) and ``success`` is answered
  only when the store has the file as ``done``; ``progress`` while the run is still going (1C
  asks again); otherwise ``failure\\n<reason>``.  A repeated ``import`` answers from the store.
* ``type=sale&mode=query`` answers an empty orders document (the hub keeps no orders to hand to
  1C yet); ``mode=success`` answers ``success``.

The route is public for the API's RBAC: the exchange login of the pipeline authenticates it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from connectors.commerceml import CommerceMLConfig
from connectors.commerceml.client import detect_kind
from connectors.files import in_scope
from junction.api.context import SCHEDULER, ApiContext, SchedulerControl, ctx_of
from junction.api.policy import Principal, public
from junction.core.errors import JunctionError
from junction.core.logging import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["commerceml"])
EXCHANGE = public("authenticated by the pipeline's CommerceML exchange login (Basic, then cookie)")

COOKIE = "JUNCTION_CML"
SESSION_TTL_S = 3600.0
WAIT_S = 20.0  # longest wait for the scheduler's run before answering "progress"
SPOOL_DIR = ".commerceml-spool"
SPOOL_MAX_AGE_S = 86400.0  # spool files older than this are dropped at the next init
_SESSIONS = "commerceml_sessions"  # ctx.extras: token -> _Session
_FAILURES = "commerceml_failures"  # ctx.extras: pipeline -> monotonic times of failed logins
MAX_FAILURES = 10  # failed checkauths per pipeline and window before answering 429
FAILURE_WINDOW_S = 60.0
_LOCKS = "commerceml_locks"  # ctx.extras: pipeline -> threading.Lock
_TEXT = "text/plain; charset=utf-8"
_NAME = re.compile(r"^[^/\\\x00]{1,200}$")
_GLOB = frozenset("*?[")
_EMPTY_ORDERS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<КоммерческаяИнформация ВерсияСхемы="2.05" ДатаФормирования="{now}"/>\n'
)


@dataclass
class _Session:
    pipeline: str
    username: str
    expires: float
    spool_id: str = field(default_factory=lambda: secrets.token_hex(8))
    spool: Path | None = None
    handed: dict[str, tuple[str, str]] = field(default_factory=dict)  # filename -> pipeline, sha


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=_TEXT, headers=headers)


def _failure(reason: str, status: int = 200) -> Response:
    return _text(f"failure\n{reason}", status)


def _exchange_config(ctx: ApiContext, pipeline: str) -> CommerceMLConfig | None:
    pipe = ctx.cfg.pipelines.get(pipeline)
    if pipe is None or pipe.source.connector != "commerceml":
        return None
    try:
        cfg = CommerceMLConfig.model_validate(pipe.source.connector_options())
    except ValueError:
        return None
    return cfg if cfg.exchange is not None else None


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    for codec in ("utf-8", "cp1251"):
        try:
            user, sep, password = raw.decode(codec).partition(":")
        except UnicodeDecodeError:
            continue
        return (user, password) if sep else None
    return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _credentials_ok(cfg: CommerceMLConfig, creds: tuple[str, str] | None) -> bool:
    ex = cfg.exchange
    if ex is None or creds is None:
        return False
    user_ok = _same(creds[0], ex.username)
    return _same(creds[1], ex.password.get_secret_value()) and user_ok


def _failures(ctx: ApiContext, pipeline: str) -> list[float]:
    table: dict[str, list[float]] = ctx.extras.setdefault(_FAILURES, {})
    now = time.monotonic()
    recent = [t for t in table.get(pipeline, []) if now - t < FAILURE_WINDOW_S]
    table[pipeline] = recent
    return recent


def _throttled(ctx: ApiContext, pipeline: str) -> bool:
    """Whether the exchange login of ``pipeline`` failed too often lately (password guessing)."""
    return len(_failures(ctx, pipeline)) >= MAX_FAILURES


def _count_failure(ctx: ApiContext, pipeline: str) -> None:
    _failures(ctx, pipeline).append(time.monotonic())


def _sessions(ctx: ApiContext) -> dict[str, _Session]:
    sessions: dict[str, _Session] = ctx.extras.setdefault(_SESSIONS, {})
    now = time.time()
    for token in [t for t, s in sessions.items() if s.expires < now]:
        del sessions[token]
    return sessions


def _session(
    request: Request, ctx: ApiContext, pipeline: str, cfg: CommerceMLConfig
) -> _Session | None:
    sessions = _sessions(ctx)
    token = request.cookies.get(COOKIE)
    if token:
        found = sessions.get(token)
        if found is not None and found.pipeline == pipeline:
            found.expires = time.time() + SESSION_TTL_S
            return found
    if _credentials_ok(cfg, _basic(request)):
        return _new_session(ctx, pipeline, cfg)[1]
    return None


def _new_session(ctx: ApiContext, pipeline: str, cfg: CommerceMLConfig) -> tuple[str, _Session]:
    token = secrets.token_urlsafe(24)
    assert cfg.exchange is not None
    session = _Session(pipeline, cfg.exchange.username, time.time() + SESSION_TTL_S)
    _sessions(ctx)[token] = session
    return token, session


def watched_dir(spec: str) -> Path:
    """The folder a file-drop ``path`` watches (a directory, or a glob's fixed leading part)."""
    base = Path(os.path.abspath(os.path.expanduser(spec)))
    if any(c in _GLOB for c in spec):
        parts = base.parts
        stop = next((i for i, p in enumerate(parts) if any(c in _GLOB for c in p)), len(parts))
        return Path(*parts[:stop])
    return base if base.is_dir() or not base.suffix else base.parent


def _spool(session: _Session, cfg: CommerceMLConfig) -> Path:
    if session.spool is None:
        session.spool = watched_dir(cfg.path) / SPOOL_DIR / session.spool_id
    return session.spool


def _safe_name(filename: str | None) -> str | None:
    if not filename or not _NAME.match(filename):
        return None
    name = PurePath(filename).name
    if name in ("", ".", "..") or name.startswith("."):
        return None
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(part: Path, body: bytes, limit: int) -> int:
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "ab") as f:
        if f.tell() + len(body) > limit:
            raise ValueError("the file is larger than the pipeline's max_file_bytes")
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    _fsync_dir(part.parent)
    return size


def _clean_spool(spool: Path, max_age_s: float = SPOOL_MAX_AGE_S) -> None:
    """Drop spool files of sessions that never imported them (older than ``max_age_s``)."""
    cutoff = time.time() - max_age_s
    try:
        for part in spool.glob("*/*.part"):
            if part.stat().st_mtime < cutoff:
                part.unlink(missing_ok=True)
    except OSError:
        log.warning("commerceml spool cleanup failed")


def _lock(ctx: ApiContext, pipeline: str) -> threading.Lock:
    locks: dict[str, threading.Lock] = ctx.extras.setdefault(_LOCKS, {})
    return locks.setdefault(pipeline, threading.Lock())


def _target_pipeline(ctx: ApiContext, session: _Session, kind: str | None) -> str | None:
    """The pipeline of this exchange login that reads documents of ``kind``."""
    own = _exchange_config(ctx, session.pipeline)
    if own is not None and own.document in ("auto", kind):
        return session.pipeline
    for name in ctx.cfg.pipelines:
        cfg = _exchange_config(ctx, name)
        if (
            cfg is not None
            and cfg.exchange is not None
            and _same(cfg.exchange.username, session.username)
            and cfg.document in ("auto", kind)
        ):
            return name
    return None


def _hand_over(ctx: ApiContext, session: _Session, part: Path, name: str) -> tuple[str, str, str]:
    """Move a complete spool file into the right pipeline's folder and run it; (status, ...)."""
    with open(part, "rb") as f:
        digest = hashlib.sha256()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        f.seek(0)
        try:
            kind = detect_kind(f, None).kind
        except JunctionError as exc:
            return "failed", "", f"{name}: {exc.user_message}"
    sha = digest.hexdigest()
    target = _target_pipeline(ctx, session, kind)
    if target is None:
        return (
            "failed",
            sha,
            f"{name}: no pipeline of this exchange reads {kind or 'empty'} documents",
        )
    cfg = _exchange_config(ctx, target)
    assert cfg is not None
    folder = watched_dir(cfg.path)
    stem, dot, ext = name.rpartition(".")
    dest = folder / (f"{stem}.{time.time_ns()}{dot}{ext}" if dot else f"{name}.{time.time_ns()}")
    if not in_scope(cfg.path, str(dest)):
        return "failed", sha, f"{name}: the pipeline's path does not take this file name"
    # the file is complete and durable: mark it settled so the run does not wait for it
    old = time.time() - cfg.settle_seconds - 1
    os.utime(part, (old, old))
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    _fsync_dir(folder)
    session.handed[name] = (target, sha)
    return _run(ctx, target, sha, name)


def _run(ctx: ApiContext, pipeline: str, sha: str, name: str) -> tuple[str, str, str]:
    """Have ``pipeline`` read the handed-over file; ("done" | "failed" | "progress", sha, why).

    Under ``junction serve`` the scheduler runs the pipeline (no second runner on the same
    folder) and the answer waits up to ``WAIT_S`` for the file's verdict, else ``progress`` (1C
    calls ``import`` again).  Without it the pipeline runs here, once, under a lock.
    """
    scheduler: SchedulerControl | None = ctx.extras.get(SCHEDULER)
    status = ctx.store.file_status(pipeline, sha)
    if status is None and scheduler is not None:
        scheduler.request_run(pipeline)
        deadline = time.monotonic() + WAIT_S
        while status is None and time.monotonic() < deadline:
            time.sleep(0.2)
            status = ctx.store.file_status(pipeline, sha)
        if status is None:
            return "progress", sha, ""
    elif status is None:
        with _lock(ctx, pipeline):
            status = ctx.store.file_status(pipeline, sha)
            if status is None:
                summary = ctx.hub.runner(pipeline).run_once()
                status = ctx.store.file_status(pipeline, sha)
                log.info("commerceml import", **summary.as_dict())
                if status != "done":
                    reason = summary.errors[0] if summary.errors else "the file was not stored"
                    return "failed", sha, f"{name}: {reason}"
    if status != "done":
        return "failed", sha, f"{name}: the file was rejected (see the pipeline's quarantine)"
    return "done", sha, ""


async def exchange(
    pipeline: str,
    request: Request,
    _: Annotated[Principal, Depends(EXCHANGE)],
    type: str = "catalog",
    mode: str = "",
    filename: str | None = None,
) -> Response:
    """One step of 1C's exchange; plain-text answers as 1C expects them."""
    ctx = ctx_of(request)
    cfg = _exchange_config(ctx, pipeline)
    if cfg is None or cfg.exchange is None:
        return _failure("no CommerceML exchange is configured for this pipeline", 404)
    if type not in ("catalog", "sale"):
        return _failure(f"unknown type {type!r}", 400)
    if mode == "checkauth":
        if _throttled(ctx, pipeline):
            return _failure("too many failed logins; wait a minute", 429)
        if not _credentials_ok(cfg, _basic(request)):
            _count_failure(ctx, pipeline)
            log.warning("commerceml checkauth refused", pipeline=pipeline)
            return _text(
                "failure\nwrong login or password",
                401,
                {"WWW-Authenticate": 'Basic realm="commerceml", charset="UTF-8"'},
            )
        token, _new = _new_session(ctx, pipeline, cfg)
        return _text(f"success\n{COOKIE}\n{token}")
    session = _session(request, ctx, pipeline, cfg)
    if session is None:
        return _text(
            "failure\nnot authorized: call mode=checkauth first",
            401,
            {"WWW-Authenticate": 'Basic realm="commerceml", charset="UTF-8"'},
        )
    if mode == "init":
        await run_in_threadpool(_clean_spool, watched_dir(cfg.path) / SPOOL_DIR)
        limit = min(cfg.exchange.file_limit, ctx.cfg.api.max_body_bytes)
        return _text(f"zip=no\nfile_limit={limit}")
    if mode == "file":
        if request.method != "POST":
            return _failure("mode=file takes a POST body", 405)
        body = await request.body()
        if filename and not filename.lower().endswith(".xml"):
            return _text("success")  # images (import_files/...) are not read by the hub
        name = _safe_name(filename)
        if name is None:
            return _failure("a plain filename is required", 400)
        part = _spool(session, cfg) / (name + ".part")
        session.handed.pop(name, None)  # a new upload of a name replaces the handed-over one
        try:
            await run_in_threadpool(_append, part, body, cfg.max_file_bytes)
        except ValueError as exc:
            return _failure(str(exc), 413)
        except OSError:
            log.error("commerceml spool write failed", pipeline=pipeline)
            return _failure("the file could not be stored; retry", 503)
        return _text("success")
    if mode == "import":
        name = _safe_name(filename)
        if name is None:
            return _failure("a plain filename is required", 400)
        return await _import(ctx, session, cfg, name)
    if mode == "query" and type == "sale":
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        return Response(
            _EMPTY_ORDERS.format(now=now).encode("utf-8"),
            media_type="application/xml; charset=utf-8",
        )
    if mode == "success":
        return _text("success")
    return _failure(f"unknown mode {mode!r}", 400)


async def _import(ctx: ApiContext, session: _Session, cfg: CommerceMLConfig, name: str) -> Response:
    handed = session.handed.get(name)
    try:
        if handed is not None:  # 1C repeats mode=import until success: answer from the store
            status, _sha, reason = await run_in_threadpool(_run, ctx, *handed, name)
        else:
            part = _spool(session, cfg) / (name + ".part")
            if not part.is_file():
                return _failure(f"{name} was not uploaded (mode=file) in this session")
            status, _sha, reason = await run_in_threadpool(_hand_over, ctx, session, part, name)
    except JunctionError as exc:
        log.error("commerceml import failed", pipeline=session.pipeline, code=exc.code)
        return _failure(f"{name}: {exc.user_message}")
    except OSError:
        log.error("commerceml import could not move the file", pipeline=session.pipeline)
        return _failure(f"{name}: the file could not be handed to the pipeline; retry")
    if status == "done":
        return _text("success")
    if status == "progress":
        return _text("progress")
    return _failure(reason)


_ROUTE = "/exchange/commerceml/{pipeline}"
_DOC: dict[str, Any] = {
    "summary": "CommerceML exchange with 1C (checkauth, init, file, import, query, success)",
    "response_class": Response,
    "responses": {
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        401: {"description": "failure: wrong login, or no session (text/plain)"},
        404: {"description": "failure: no exchange configured for this pipeline (text/plain)"},
        429: {"description": "failure: too many failed logins lately (text/plain)"},
    },
}
router.get(_ROUTE, operation_id="commerceml_exchange_get", **_DOC)(exchange)
router.post(_ROUTE, operation_id="commerceml_exchange_post", **_DOC)(exchange)
