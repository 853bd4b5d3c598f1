"""The CEL runtime (the ``common-expression-language`` package), without its interactive shell.

``import cel`` runs the package's ``__init__``, which also imports ``cel.cli``: a REPL built on
prompt_toolkit, rich, typer and pygments that Junction never uses, ~13 MB of RSS in every
process that compiles a rule (the hub and each of its workers).  This module imports the package
with a placeholder standing in for that one submodule and takes the placeholder away again, so a
later ``import cel.cli`` (someone's own use of the shell) still loads the real one.
"""

from __future__ import annotations

import sys
import types

if "cel" in sys.modules:
    import cel
else:
    _placeholder = types.ModuleType(
        "cel.cli", "not loaded by Junction (see junction.pipeline.cel_runtime)"
    )
    sys.modules["cel.cli"] = _placeholder
    try:
        import cel
    finally:
        if sys.modules.get("cel.cli") is _placeholder:
            del sys.modules["cel.cli"]

compile = cel.compile

__all__ = ["cel", "compile"]
