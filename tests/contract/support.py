"""What a connector hands the contract suite: a live fake, good and bad options, fault knobs.

Each registered connector ``<name>`` has ``tests/contract/fixtures/<name>.py`` with a function
``contract(tmp_path) -> ContextManager[ConnectorContract]``.  The suite in ``test_connectors.py``
is generated from the registry: a connector registered without a fixture fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConnectorContract:
    """One connector's contract inputs.

    Attributes:
        options: valid connector options (``config_model.model_validate(options)``), pointing
            at the running fake.
        bad_credentials: options the fake rejects as unauthenticated.
        stream: a stream holding at least 5 records that a read returns in at least 2 batches.
        secrets: values that must never appear in a log line (tokens, passwords, keys).
        fail_next: ``fail_next(kind, n)`` makes the fake fail its next ``n`` requests with
            ``rate_limit`` (429 + Retry-After: ``retry_after_s``) or ``server_error`` (5xx);
            ``n = 0`` clears.  None for connectors with no remote (then the fault checks are
            waived with the reason in ``waivers``).
        retry_after_s: the Retry-After the fake's 429 carries.
        waivers: check name → reason and issue id, for checks that cannot apply.
    """

    options: dict[str, Any]
    bad_credentials: dict[str, Any] | None
    stream: str
    secrets: list[str] = field(default_factory=list)
    fail_next: Callable[[str, int], None] | None = None
    retry_after_s: float = 7.0
    waivers: dict[str, str] = field(default_factory=dict)
