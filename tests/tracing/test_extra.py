"""Without the ``tracing`` extra the other tests here are not collected: say so in the summary."""

from __future__ import annotations

import pytest


def test_the_tracing_extra_is_installed() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        pytest.skip("the tracing extra is not installed: pip install -e '.[tracing]'")
    from junction.core import tracing

    assert not tracing.enabled()
