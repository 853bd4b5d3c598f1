"""The optional native accelerator for sealing (ADR-0025); everything else is in pyproject.toml.

``junction.store._sealer`` links OpenSSL's libcrypto (Debian: ``libssl-dev``).  It is
optional: where it cannot be built, the install goes on and Junction seals the same values
through ``cryptography`` (``junction.store.batch_seal``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "junction.store._sealer",
            sources=["junction/store/_sealer.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,
        )
    ]
)
