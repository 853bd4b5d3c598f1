"""Config checks shared by the channels that address people: fixed ``to`` and a ``to_path``.

A channel's recipients are the configured ``to`` list, the addresses its JMESPath ``to_path`` finds
in each event, or both; a config with neither could never reach anyone.
"""

from __future__ import annotations

from collections.abc import Sequence

import jmespath
from jmespath.exceptions import JMESPathError


def check_jmespath(expr: str | None) -> str | None:
    """``expr`` unchanged when it is None or compiles as JMESPath (for a pydantic validator).

    Raises:
        ValueError: It does not compile; the message does not repeat it.
    """
    if expr is None:
        return None
    try:
        jmespath.compile(expr)
    except JMESPathError:
        raise ValueError("not a valid JMESPath expression") from None
    return expr


def require_recipients(to: Sequence[str], to_path: str | None) -> None:
    """Check that a config names someone to send to (for a pydantic model validator).

    Raises:
        ValueError: ``to`` is empty and there is no ``to_path``.
    """
    if not to and to_path is None:
        raise ValueError("set 'to', 'to_path' or both")
