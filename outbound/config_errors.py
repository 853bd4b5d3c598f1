"""Validate a channel's config into its model, reporting problems without echoing the input.

pydantic's own error text repeats the input values, which may be secrets (API keys, tokens, signed
URLs): the ``ConfigError`` built here keeps only each problem's location and reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from junction.core.errors import ConfigError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def config_error(kind: str, exc: ValidationError) -> ConfigError:
    """A ConfigError naming each problem of ``exc`` by location and reason, never by value.

    Args:
        kind: The channel kind, named in the message (``"invalid <kind> channel config: ..."``).
        exc: The validation error of the channel's config model.

    Returns:
        The error to raise (``from None``, so the pydantic text is not chained either).
    """
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
    )
    return ConfigError(f"invalid {kind} channel config: {problems}")


def validate_config(
    model: type[ConfigT], config: ConfigT | Mapping[str, Any], *, kind: str
) -> ConfigT:
    """``config`` itself when it is already a ``model``, else the mapping validated into one.

    Args:
        model: The channel's config model.
        config: A validated config, or a mapping (from the hub's config file) to validate.
        kind: The channel kind, named in the error.

    Returns:
        The validated config.

    Raises:
        ConfigError: The mapping does not validate (the message never repeats its values).
    """
    if isinstance(config, model):
        return config
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        raise config_error(kind, exc) from None
