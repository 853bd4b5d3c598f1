"""Bounded fuzzing (Hypothesis): the folder runs in well under a minute.

Every test here is marked ``fuzz`` and bounded by ``max_examples`` and a per-example deadline
(``FUZZ``); the example database is off, so nothing is written next to the sources.  The
``fuzz`` marker is registered in pyproject.toml.
"""
