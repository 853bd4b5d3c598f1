"""The channel contract suite, generated from the registry (no hand-kept list).

Every channel kind registered under ``junction.channels`` must have a fixture module
``tests/contract/channels/<kind>.py`` (see ``channel_support.py``) and pass every check here,
unless the fixture waives a check with a reason and an issue id.  Each check runs the channel in
one event loop (``asyncio.run``) against the fixture's live fake:

* ``idempotency``: the delivery id comes back in the Receipt and reaches the fake; the same
  delivery sent twice shows the same id twice, so a receiver can dedupe;
* ``receipt``: a 2xx gives a Receipt;
* ``client_error``: a 4xx gives a FatalError (never retryable), and the next send succeeds;
* ``server_error``: a 5xx gives a RetryableError;
* ``timeout``: no answer within ``timeout_options``' timeout gives a RemoteTimeoutError or an
  UnavailableError (the test's own timeout bounds how long that may take);
* ``redaction``: no secret in the channel's or config's repr, in any error raised above (text,
  ``to_dict()``, details), in captured logs, or in a config validation error;
* ``aclose``: ``aclose()`` twice is safe, and a send after it works again or raises a typed error;
* ``unknown_keys``: the config model refuses options it does not know.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from junction.core.errors import (
    FatalError,
    JunctionError,
    RemoteTimeoutError,
    RetryableError,
    UnavailableError,
)
from junction.core.registry import default_registry
from outbound.base import OutboundChannel, Receipt
from tests.contract.channel_support import ChannelContract
from tests.contract.suite_support import build_plugin, open_contract, skip_if_waived

REGISTRY = default_registry
KINDS = REGISTRY.names("channels")
# how long a check against a hanging fake may take in all (timeout_options allow at most 2 s)
HANG_BOUND_S = 30
Outcome = Receipt | JunctionError


@pytest.fixture(params=KINDS)
def contract(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, ChannelContract]]:
    with open_contract("channel", "channels", request.param, tmp_path) as c:
        yield request.param, c


def _model(kind: str) -> type[BaseModel]:
    model: type[BaseModel] = REGISTRY.get("channels", kind).config_model
    return model


def _build(kind: str, options: dict[str, Any]) -> OutboundChannel:
    channel: OutboundChannel = build_plugin(REGISTRY, "channels", kind, options)
    return channel


def _waived(c: ChannelContract, check: str) -> None:
    skip_if_waived(c.waivers, check)


def _faults(c: ChannelContract, check: str) -> Callable[[str, int], None]:
    _waived(c, check)
    assert c.fail_next is not None, (
        f"the fixture has no fail_next: waive {check!r} with a reason and an issue id"
    )
    return c.fail_next


def _new_id(check: str) -> str:
    # no '.': a webhook-id may not hold one (it is part of the signed string)
    return f"contract-{check}-{uuid.uuid4().hex[:16]}"


async def _send(channel: OutboundChannel, c: ChannelContract, delivery_id: str) -> Outcome:
    """One send; a typed error is an outcome, anything else fails the test."""
    try:
        return await channel.send(c.delivery(delivery_id))
    except JunctionError as exc:
        return exc


def _run(
    kind: str,
    options: dict[str, Any],
    scenario: Callable[[OutboundChannel], Awaitable[list[Outcome]]],
) -> list[Outcome]:
    """Build the channel, run ``scenario`` in a fresh event loop, close the channel."""

    async def go() -> list[Outcome]:
        channel = _build(kind, options)
        try:
            return await scenario(channel)
        finally:
            await channel.aclose()

    return asyncio.run(go())


def _receipt(outcome: Outcome, delivery_id: str) -> Receipt:
    assert isinstance(outcome, Receipt), f"expected a Receipt, got {outcome!r}"
    assert outcome.delivery_id == delivery_id
    return outcome


def test_registry_has_channels():
    assert {"webhook", "crm"} <= set(KINDS)


def test_channel_declares_its_kind_and_config(contract):
    kind, _c = contract
    cls = REGISTRY.get("channels", kind)
    assert cls.name == kind, f"{cls.__qualname__}.name is {cls.name!r}, registered as {kind!r}"
    assert issubclass(cls.config_model, BaseModel)
    for field_name, info in cls.config_model.model_fields.items():
        assert info.description, f"{kind}.{field_name} has no description"


def test_idempotency_key_reaches_the_fake(contract):
    kind, c = contract
    _waived(c, "idempotency")
    first, second = _new_id("idem"), _new_id("idem")

    async def scenario(channel: OutboundChannel) -> list[Outcome]:
        return [
            await _send(channel, c, first),
            await _send(channel, c, second),
            await _send(channel, c, first),  # a retry of the first: same key again
        ]

    outcomes = _run(kind, c.options, scenario)
    for outcome, did in zip(outcomes, (first, second, first), strict=True):
        _receipt(outcome, did)
    seen = c.seen_ids()
    assert seen.count(first) == 2, f"the same delivery twice must carry the same key: {seen}"
    assert seen.count(second) == 1, f"the second delivery's key did not reach the fake: {seen}"


def test_success_gives_a_receipt(contract):
    kind, c = contract
    _waived(c, "receipt")
    did = _new_id("ok")

    async def scenario(channel: OutboundChannel) -> list[Outcome]:
        return [await _send(channel, c, did)]

    receipt = _receipt(_run(kind, c.options, scenario)[0], did)
    if receipt.status_code is not None:
        assert 200 <= receipt.status_code < 300
    assert receipt.duration_ms >= 0


def test_client_error_is_fatal_and_the_next_send_succeeds(contract):
    kind, c = contract
    fail_next = _faults(c, "client_error")
    bad, good = _new_id("4xx"), _new_id("after4xx")

    async def scenario(channel: OutboundChannel) -> list[Outcome]:
        fail_next("client_error", 1)
        try:
            failed = await _send(channel, c, bad)
        finally:
            fail_next("client_error", 0)
        return [failed, await _send(channel, c, good)]

    failed, after = _run(kind, c.options, scenario)
    assert isinstance(failed, FatalError), f"a 4xx must be a FatalError, got {failed!r}"
    assert not isinstance(failed, RetryableError)
    assert not failed.retryable
    _receipt(after, good)


def _send_failing(
    kind: str,
    c: ChannelContract,
    options: dict[str, Any],
    fail_next: Callable[[str, int], None],
    fault: str,
    did: str,
) -> Outcome:
    """Send once while the fake fails with ``fault``; what the send gave."""

    async def scenario(channel: OutboundChannel) -> list[Outcome]:
        fail_next(fault, 1)
        try:
            return [await _send(channel, c, did)]
        finally:
            fail_next(fault, 0)

    (failed,) = _run(kind, options, scenario)
    return failed


def test_server_error_is_retryable(contract):
    kind, c = contract
    fail_next = _faults(c, "server_error")
    failed = _send_failing(kind, c, c.options, fail_next, "server_error", _new_id("5xx"))
    assert isinstance(failed, RetryableError), f"a 5xx must be retryable, got {failed!r}"
    assert failed.retryable


@pytest.mark.timeout(HANG_BOUND_S)
def test_no_answer_in_time_is_retryable(contract):
    kind, c = contract
    fail_next = _faults(c, "timeout")
    assert c.timeout_options is not None, "the fixture gives no timeout_options for the hang"
    failed = _send_failing(kind, c, c.timeout_options, fail_next, "hang", _new_id("hang"))
    assert isinstance(failed, RemoteTimeoutError | UnavailableError), (
        f"a receiver that never answers must give a timeout, got {failed!r}"
    )


def test_aclose_twice_then_send(contract):
    kind, c = contract
    _waived(c, "aclose")
    before, after = _new_id("open"), _new_id("reopen")

    async def scenario(channel: OutboundChannel) -> list[Outcome]:
        first = await _send(channel, c, before)
        await channel.aclose()
        await channel.aclose()
        try:
            again: Outcome = await channel.send(c.delivery(after))
        except JunctionError as exc:
            again = exc
        # anything else (AttributeError on a closed session, ...) fails the test here
        await channel.aclose()
        return [first, again]

    first, again = _run(kind, c.options, scenario)
    _receipt(first, before)
    if isinstance(again, Receipt):
        assert again.delivery_id == after
    else:
        assert isinstance(again, JunctionError)
        assert not again.retryable, "a closed channel is not a transient failure"
        assert again.user_message


def test_config_refuses_unknown_keys(contract):
    kind, c = contract
    _waived(c, "unknown_keys")
    model = _model(kind)
    model.model_validate(c.options)
    with pytest.raises(ValidationError):
        model.model_validate({**c.options, "no_such_option": "x"})


def _shown(outcome: object) -> str:
    """Everything about an error that a log line, an API answer or a quarantine row can show."""
    if not isinstance(outcome, JunctionError):
        return repr(outcome)
    parts = [str(outcome), repr(outcome), orjson.dumps(outcome.to_dict()).decode()]
    parts.append(str(outcome.details or ""))
    return "\n".join(parts)


def _bad_options(c: ChannelContract, model: type[BaseModel]) -> list[dict[str, Any]]:
    bad = [{**c.options, "no_such_option": "x"}]
    for name, info in model.model_fields.items():
        if info.is_required() and name in c.options:
            bad.append({k: v for k, v in c.options.items() if k != name})
    return bad + list(c.bad_options)


def _refusal(kind: str, options: dict[str, Any]) -> str:
    """What refusing ``options`` shows: a validation error's text, or a typed error's."""
    try:
        channel = _build(kind, options)
    except ValidationError as exc:
        # the rendered text is what reaches logs (build_channels wraps it into a ConfigError)
        return str(exc)
    except (JunctionError, ValueError) as exc:
        return _shown(exc)
    asyncio.run(channel.aclose())
    pytest.fail(f"{kind} accepted bad options {sorted(options)}")


def test_secrets_are_redacted(contract, caplog, capsys):
    kind, c = contract
    _waived(c, "redaction")
    assert c.secrets, "the fixture names no secrets to look for"
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    faults = [] if c.fail_next is None else ["client_error", "server_error"]

    async def scenario(channel: OutboundChannel) -> list[Outcome]:
        shown.append(repr(channel))
        config = getattr(channel, "config", None)
        if config is not None:
            shown.extend([repr(config), str(config)])
        out = [await _send(channel, c, _new_id("redact"))]
        for kind_ in faults:
            assert c.fail_next is not None
            c.fail_next(kind_, 1)
            try:
                out.append(await _send(channel, c, _new_id("redact")))
            finally:
                c.fail_next(kind_, 0)
        return out

    outcomes = _run(kind, c.options, scenario)
    if c.fail_next is not None and c.timeout_options is not None and "timeout" not in c.waivers:

        async def hang(channel: OutboundChannel) -> list[Outcome]:
            assert c.fail_next is not None
            c.fail_next("hang", 1)
            try:
                return [await _send(channel, c, _new_id("redact"))]
            finally:
                c.fail_next("hang", 0)

        outcomes += _run(kind, c.timeout_options, hang)
    shown.extend(_shown(o) for o in outcomes)
    model = _model(kind)
    config = model.model_validate(c.options)
    shown.extend([repr(config), str(config)])
    shown.extend(_refusal(kind, bad) for bad in _bad_options(c, model))
    captured = capsys.readouterr()
    shown.extend([caplog.text, captured.out, captured.err])
    text = "\n".join(shown)
    for secret in c.secrets:
        assert secret not in text, f"a secret of {kind} appeared in a repr, error or log line"
