"""API routers; each module exposes ``router`` and every route declares a ``Policy``."""
