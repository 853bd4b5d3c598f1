"""The named template sets of the channels that render messages: routes pick one by name.

Every set needs a ``default`` entry, the template of a route that names none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

DEFAULT_TEMPLATE = "default"

TemplatesT = TypeVar("TemplatesT", bound=Mapping[str, object])


def require_default(templates: TemplatesT) -> TemplatesT:
    """``templates`` unchanged when it has a ``default`` entry (for a pydantic validator).

    Raises:
        ValueError: It has none.
    """
    if DEFAULT_TEMPLATE not in templates:
        raise ValueError(f"templates need a {DEFAULT_TEMPLATE!r} entry")
    return templates
