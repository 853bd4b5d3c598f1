"""The Twilio SMS channel: one templated text per recipient, sent with the twilio SDK.

Per delivery: find the recipients (static ``to`` plus ``to_path`` over the event, each normalized
to E.164), leave out the ones the worker found suppressed (``Delivery.exclude``), render the
route's template, refuse bodies longer than ``max_segments``, hold back recipients inside their
quiet hours, and send to the rest.  The SDK is blocking, so sends run in worker threads, at most
``max_concurrency`` at once.

Twilio has no idempotency key.  The delivery id travels in the StatusCallback URL
(``?delivery_id=``) so callbacks map to it.  While a delivery is unfinished (a 5xx for a later
recipient, a deferral for quiet hours) the channel remembers, per process, which of its
recipients Twilio already accepted, so the retry never texts them twice; a finished delivery is
forgotten.  A crash (or a store failure) after Twilio's 201 and before the hub records the
delivery can still send one duplicate SMS per recipient (RELIABILITY.md case 59).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import jmespath

from junction.core.errors import (
    ConfigError,
    DeferredError,
    RecipientRejectedError,
    RecordError,
)
from outbound.base import Delivery, Receipt, Recipient
from outbound.config_errors import validate_config
from outbound.lifecycle import ClosesOnExit
from outbound.masking import template_context
from outbound.sms_twilio.client import SentMessage, TwilioSender
from outbound.sms_twilio.config import TwilioSmsConfig
from outbound.sms_twilio.phones import to_e164, zone_of_number
from outbound.sms_twilio.quiet_hours import zone_of
from outbound.sms_twilio.segments import count_segments
from outbound.template_sets import DEFAULT_TEMPLATE
from outbound.templates import event_context, render

SENT_MEMORY = 10_000  # (delivery, recipient) pairs remembered as accepted by Twilio
MAX_RECIPIENTS = 100


@dataclass(frozen=True, slots=True)
class Target:
    """One recipient of a delivery and the zone its quiet hours are read in."""

    phone: str  # E.164
    zone: str  # IANA name


class TwilioSmsChannel(ClosesOnExit):
    """Send SMS through one Twilio account.

    Args:
        config: The channel config, or a mapping validated into one.
        clock: Returns the Unix time used for quiet hours (tests inject one).

    Raises:
        ConfigError: ``config`` is a mapping that does not validate.
    """

    name: ClassVar[str] = "sms_twilio"
    config_model: ClassVar[type[TwilioSmsConfig]] = TwilioSmsConfig

    def __init__(
        self,
        config: TwilioSmsConfig | Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config = validate_config(TwilioSmsConfig, config, kind="sms_twilio")
        self._clock = clock
        self._to_path = jmespath.compile(config.to_path) if config.to_path else None
        quiet = config.quiet_hours
        self._zone_path = (
            jmespath.compile(quiet.timezone_path) if quiet and quiet.timezone_path else None
        )
        self._sender: TwilioSender | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __repr__(self) -> str:
        return f"TwilioSmsChannel(account_sid={self.config.account_sid!r})"

    def recipients(self, delivery: Delivery) -> list[Recipient]:
        """Who ``delivery`` reaches: ``Recipient("phone", e164)`` for each number.

        Raises:
            RecordError: ``to_path`` names a value that is not a valid number, or nobody at all.
        """
        return [Recipient("phone", t.phone) for t in self._targets(event_context(delivery.payload))]

    def _targets(self, event: Mapping[str, Any]) -> list[Target]:
        default_zone = (
            self.config.quiet_hours.default_timezone if self.config.quiet_hours else "UTC"
        )
        found: dict[str, Target] = {}
        for phone in self.config.static_recipients:
            found.setdefault(phone, Target(phone, self._number_zone(phone, default_zone)))
        if self._to_path is not None:
            event_zone = self._event_zone(event)
            for phone in self._path_numbers(event):
                zone = event_zone or self._number_zone(phone, default_zone)
                found.setdefault(phone, Target(phone, zone))
        if not found:
            raise RecordError("the event names no SMS recipient", field=self.config.to_path)
        if len(found) > MAX_RECIPIENTS:
            raise RecordError(f"more than {MAX_RECIPIENTS} SMS recipients in one event")
        return list(found.values())

    def _path_numbers(self, event: Mapping[str, Any]) -> list[str]:
        assert self._to_path is not None
        value = self._to_path.search(event)
        raws = [] if value is None else value if isinstance(value, list) else [value]
        numbers = []
        for raw in raws:
            if raw is None or raw == "":
                continue
            e164 = to_e164(raw, self.config.default_region)
            if e164 is None:
                # the number itself stays out of the message: it is personal data
                raise RecordError(
                    "the recipient's phone number is not valid",
                    field=self.config.to_path,
                    code="invalid_phone",
                )
            numbers.append(e164)
        return numbers

    def _event_zone(self, event: Mapping[str, Any]) -> str | None:
        if self._zone_path is None:
            return None
        value = self._zone_path.search(event)
        if isinstance(value, str) and zone_of(value) is not None:
            return value
        return None

    def _number_zone(self, phone: str, default_zone: str) -> str:
        if self.config.zone_from_number:
            return zone_of_number(phone) or default_zone
        return default_zone

    def _body(self, delivery: Delivery, event: Mapping[str, Any]) -> str:
        name = delivery.template or DEFAULT_TEMPLATE
        template = self.config.templates.get(name)
        if template is None:
            raise ConfigError(
                f"the sms_twilio channel has no template {name!r}",
                context={"channel": delivery.channel},
            )
        # masked phone/email/name unless the route reveals them (outbound.masking)
        body = render(template.body, template_context(delivery, event)).strip()
        if not body:
            raise RecordError("the SMS template rendered an empty message")
        return body

    def callback_url(self, delivery: Delivery) -> str | None:
        """The StatusCallback URL for ``delivery``: the configured one plus ``delivery_id``."""
        if self.config.status_callback is not None:
            base = str(self.config.status_callback)
        elif self.config.public_base is not None:
            channel = quote(delivery.channel, safe="")
            base = f"{self.config.public_base}/callbacks/twilio/{channel}/status"
        else:
            return None
        parts = urlsplit(base)
        query = [
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "delivery_id"
        ]
        query.append(("delivery_id", delivery.delivery_id))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _quiet_wait(self, target: Target, now: datetime) -> float | None:
        quiet = self.config.quiet_hours
        if quiet is None:
            return None
        zone = zone_of(target.zone) or zone_of(quiet.default_timezone)
        assert zone is not None
        return quiet.window.seconds_left(zone, now)

    def _open(self) -> tuple[TwilioSender, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._sender is None:
            self._sender = TwilioSender(self.config)
        if self._slots is None or self._loop is not loop:
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
            self._loop = loop
        return self._sender, self._slots

    def _sent_key(self, delivery: Delivery, phone: str) -> tuple[str, str]:
        return delivery.delivery_id, hashlib.sha256(phone.encode()).hexdigest()

    def _remember(self, key: tuple[str, str], sid: str) -> None:
        self._sent[key] = sid
        self._sent.move_to_end(key)
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)

    def _forget(self, delivery: Delivery, targets: list[Target]) -> None:
        for target in targets:
            self._sent.pop(self._sent_key(delivery, target.phone), None)

    async def send(self, delivery: Delivery) -> Receipt:
        """Text every recipient of ``delivery`` who is not excluded and not in quiet hours.

        Returns:
            A Receipt: ``remote_id`` is the first message's sid; ``detail`` has the encoding,
            characters, units and segments of the body, the sids, and how many were excluded.

        Raises:
            RecordError: No valid recipient, an empty body, or more than ``max_segments``.
            ConfigError: The route names a template the channel does not have.
            DeferredError: Some recipients are in quiet hours (``retry_after`` is the shortest
                wait); the others were sent, and are not sent again on the retry.
            RecipientRejectedError: Twilio refused a recipient (21610 STOP, 21614 landline),
                raised after the other recipients were tried.
            AuthError, RateLimitedError, UnavailableError, RemoteTimeoutError, FatalError: see
                ``outbound.sms_twilio.client``.
        """
        started = time.perf_counter()
        event = event_context(delivery.payload)
        everyone = self._targets(event)
        targets = [t for t in everyone if t.phone not in delivery.exclude]
        excluded = len(everyone) - len(targets)
        if not targets:
            return Receipt(
                delivery_id=delivery.delivery_id,
                detail={"messages": 0, "excluded": excluded},
            )
        body = self._body(delivery, event)
        info = count_segments(body)
        if info.segments > self.config.max_segments:
            raise RecordError(
                f"the SMS is {info.segments} segments long; the channel allows "
                f"{self.config.max_segments}",
                code="sms_too_long",
                context={"encoding": info.encoding, "segments": info.segments},
            )
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        waits: list[float] = []
        due: list[Target] = []
        for target in targets:
            # one Twilio already accepted on an earlier attempt is done, whatever its hour now
            done = self._sent_key(delivery, target.phone) in self._sent
            wait = None if done else self._quiet_wait(target, now)
            if wait is None:
                due.append(target)
            else:
                waits.append(wait)
        callback = self.callback_url(delivery)
        sids, rejected = await self._send_each(delivery, due, body, callback)
        if waits:
            raise DeferredError(
                f"{len(waits)} recipient(s) are in quiet hours",
                retry_after=min(waits),
                code="quiet_hours",
                context={"channel": delivery.channel, "sent": len(sids)},
            )
        if rejected is not None:
            raise rejected
        self._forget(delivery, targets)
        return Receipt(
            delivery_id=delivery.delivery_id,
            status_code=201,
            remote_id=sids[0] if sids else None,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            detail={**info.as_detail(), "messages": len(sids), "sids": sids, "excluded": excluded},
        )

    async def _send_each(
        self, delivery: Delivery, due: list[Target], body: str, callback: str | None
    ) -> tuple[list[str], RecipientRejectedError | None]:
        if not due:
            return [], None
        sender, slots = self._open()

        async def one(target: Target) -> str | RecipientRejectedError:
            key = self._sent_key(delivery, target.phone)
            known = self._sent.get(key)
            if known is not None:
                return known
            async with slots:
                try:
                    sent: SentMessage = await asyncio.to_thread(
                        sender.send, to=target.phone, body=body, status_callback=callback
                    )
                except RecipientRejectedError as exc:
                    return exc
            self._remember(key, sent.sid)
            return sent.sid

        results = await asyncio.gather(*(one(t) for t in due), return_exceptions=True)
        sids: list[str] = []
        rejected: RecipientRejectedError | None = None
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, str):
                sids.append(result)
            elif isinstance(result, RecipientRejectedError):
                rejected = rejected or result
            elif failure is None:
                failure = result
        if failure is not None:
            # the accepted ones are remembered: the retry texts only the others
            raise failure
        return sids, rejected

    async def aclose(self) -> None:
        """Close the SDK's connection pool; safe to call twice (a later send opens a new one)."""
        sender, self._sender = self._sender, None
        if sender is not None:
            await asyncio.to_thread(sender.close)
