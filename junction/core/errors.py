"""Junction's error taxonomy: the type says how to recover.

```
JunctionError                 code, user_message, details (internal), context
├── ConfigError               fatal until a human fixes the configuration
│   ├── AuthError             credentials rejected
│   ├── InvalidUrlError       a user-configured URL has a refused scheme, userinfo or port
│   └── KeyUnavailableError   the key-encryption key is missing or not the store's
├── RetryableError            transient; retry_after: float | None
│   ├── RateLimitedError      the remote asked us to slow down (429)
│   ├── UnavailableError      the remote or the store is down (5xx, connection refused)
│   ├── RemoteTimeoutError    no answer in time
│   └── DeferredError         not now by policy (quiet hours): not a failed attempt
├── FatalError                the remote rejected the request for good (4xx, SOAP client fault)
│   ├── EndpointGoneError     410: the receiver is gone, disable the endpoint
│   ├── RecipientRejectedError  the provider refuses this recipient for good: suppress it
│   └── BlockedAddressError   egress policy: the address is private, loopback, ... (SSRF)
├── RecordError               skippable: this record goes to quarantine, the batch goes on
│   ├── MappingError          a mapped field could not be produced
│   ├── SchemaValidationError the canonical model rejected the mapped values
│   ├── RuleError             a validation rule (CEL) failed
│   ├── ScoringInputError     the record cannot be scored
│   ├── ParseError            the source bytes are malformed (row or element level)
│   │   ├── EncodingError     bytes do not decode strictly in the chosen encoding
│   │   ├── FieldTooLargeError
│   │   ├── FileTooLargeError
│   │   └── TooManyRowsError
│   └── UnsafeXMLError        DTD, entity, bomb or depth limit in XML
│       └── DTDForbiddenError
└── InternalError             an invariant broke; page someone
    └── DecryptionError       a sealed value failed its integrity check (tampered, moved)
        └── SubjectErasedError  its subject was erased: the data key is destroyed
```

Every error keeps a short ``user_message`` (safe to show, no secrets, no personal data) apart from
``details`` (internal, for logs with redaction).  Errors are picklable: their constructor arguments
are kept as attributes.
"""

from __future__ import annotations

from typing import Any


class JunctionError(Exception):
    """Base of every error Junction raises on purpose."""

    code: str = "junction_error"
    retryable: bool = False

    def __init__(
        self,
        user_message: str,
        *,
        details: str | None = None,
        context: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.details = details
        self.context: dict[str, Any] = dict(context or {})
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))

    def __str__(self) -> str:
        if not self.context:
            return self.user_message
        ctx = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.user_message} [{ctx}]"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description (for quarantine rows and API problem bodies)."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.user_message,
            "context": {k: _jsonable(v) for k, v in self.context.items()},
        }


def _rebuild(cls: type[JunctionError], state: dict[str, Any]) -> JunctionError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("user_message", ""))
    err.__dict__.update(state)
    return err


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class ConfigError(JunctionError):
    """The configuration is wrong; nothing will work until a human fixes it."""

    code = "config_error"


class AuthError(ConfigError):
    """Credentials were rejected by the remote system."""

    code = "auth_error"


class InvalidUrlError(ConfigError):
    """A user-configured URL is refused: a scheme other than http/https, userinfo, a port."""

    code = "invalid_url"


class RetryableError(JunctionError):
    """A transient failure: try again later, after ``retry_after`` seconds when given."""

    code = "retryable"
    retryable = True

    def __init__(
        self,
        user_message: str,
        *,
        retry_after: float | None = None,
        details: str | None = None,
        context: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(user_message, details=details, context=context, code=code)
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    """The remote asked us to slow down (HTTP 429 or a vendor quota)."""

    code = "rate_limited"


class UnavailableError(RetryableError):
    """The remote system or the store is unavailable (5xx, connection refused, reset)."""

    code = "unavailable"


class RemoteTimeoutError(RetryableError):
    """The remote did not answer in time."""

    code = "timeout"


class DeferredError(RetryableError):
    """Not now, by policy (quiet hours, a throttle): send again at ``retry_after`` seconds.

    The delivery worker reschedules without counting a failed attempt, so a deferral can never
    exhaust the retry schedule.
    """

    code = "deferred"


class FatalError(JunctionError):
    """The remote rejected the request for good; retrying will not help."""

    code = "fatal"


class EndpointGoneError(FatalError):
    """The receiver answered 410 Gone: the endpoint must be disabled."""

    code = "endpoint_gone"


class RecipientRejectedError(FatalError):
    """The provider refuses this recipient for good (opted out, unreachable number, ...).

    The delivery worker puts ``address`` (of ``kind``: email, phone, ...) on the suppression list
    with ``reason``.  The address is an attribute, never part of the message or context, because
    messages and context reach logs.
    """

    code = "recipient_rejected"

    def __init__(
        self,
        user_message: str,
        *,
        kind: str,
        address: str,
        reason: str,
        details: str | None = None,
        context: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(user_message, details=details, context=context, code=code)
        self.kind = kind
        self.address = address
        self.reason = reason


class BlockedAddressError(FatalError):
    """The egress policy refuses the address a URL names or resolves to (SSRF protection).

    Loopback, private, link-local, multicast and other non-public addresses (also when embedded in
    an IPv6 form) are refused unless their network is allow-listed (``egress.allow_networks``).
    """

    code = "blocked_address"


class RecordError(JunctionError):
    """One record cannot go on; it goes to quarantine and the rest of the batch continues."""

    code = "record_error"

    def __init__(
        self,
        user_message: str,
        *,
        field: str | None = None,
        details: str | None = None,
        context: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        ctx = dict(context or {})
        if field is not None:
            ctx.setdefault("field", field)
        super().__init__(user_message, details=details, context=ctx, code=code)
        self.field = field


class MappingError(RecordError):
    """A mapped field could not be produced from the source record."""

    code = "mapping_error"


class SchemaValidationError(RecordError):
    """The canonical model rejected the mapped values."""

    code = "schema_invalid"


class RuleError(RecordError):
    """A validation rule failed; ``context['rule']`` names it."""

    code = "rule_failed"


class ScoringInputError(RecordError):
    """The record cannot be scored (missing or invalid features)."""

    code = "scoring_input"


class ParseError(RecordError):
    """Source bytes are malformed."""

    code = "parse_error"


class EncodingError(ParseError):
    """Bytes do not decode strictly in the chosen encoding (no silent U+FFFD)."""

    code = "encoding_error"


class FieldTooLargeError(ParseError):
    """A field is larger than the configured limit."""

    code = "field_too_large"


class FileTooLargeError(ParseError):
    """A file is larger than the configured limit."""

    code = "file_too_large"


class TooManyRowsError(ParseError):
    """A file holds more records than the configured limit (refused before any is read)."""

    code = "too_many_rows"


class UnsafeXMLError(ParseError):
    """The XML uses a DTD, entities, or exceeds a parser safety limit."""

    code = "unsafe_xml"


class DTDForbiddenError(UnsafeXMLError):
    """The XML declares a DTD; Junction never loads or resolves DTDs."""

    code = "dtd_forbidden"


class ModelLoadError(ConfigError):
    """A scoring model is missing, corrupt or incompatible; the hub refuses to score."""

    code = "model_load_error"


class InternalError(JunctionError):
    """An invariant broke inside Junction; this is a bug."""

    code = "internal_error"


class KeyUnavailableError(ConfigError):
    """The key-encryption key is missing, disabled, or not the one the store's keys are under."""

    code = "key_unavailable"


class DecryptionError(InternalError):
    """A sealed value failed its integrity check: tampered, moved to another row, or corrupt.

    Nothing of the value is returned.  Restore the row from a backup, or erase the subject.
    """

    code = "decryption_failed"


class SubjectErasedError(DecryptionError):
    """The value belongs to an erased subject: its data key is destroyed (crypto-shredded)."""

    code = "subject_erased"
