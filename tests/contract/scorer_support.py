"""What a scorer hands the scorer contract suite: a built scorer and records to score.

Each registered scorer ``<name>`` (entry point group ``junction.scorers``) has
``tests/contract/scorers/<name>.py`` with a function
``contract(tmp_path_factory) -> ScorerContract``.  The suite in ``test_scorers.py`` is generated
from the registry: a scorer registered without a fixture fails the suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ScorerContract:
    """One scorer's contract inputs.

    Attributes:
        scorer: the scorer, built the way the pipeline builds it (from local files only); the
            ``protocol`` check asserts it is a :class:`scoring.base.Scorer`.
        records: at least 50 valid canonical records of the scorer's entity, varied enough to
            reach more than one grade.
        bad_record: a record the scorer must refuse with a ScoringInputError (a value that
            cannot be a feature), or None with the ``bad_record`` check waived.
        sparse_record: a record with too little data: its score must say
            ``data_sufficient=False``; None with the ``sufficiency`` check waived.
        waivers: check name -> reason with an issue id (``#N``).  Check names: ``protocol``,
            ``columns``, ``one_by_one``, ``score_objects``, ``bad_record``, ``empty``,
            ``reasons``, ``sufficiency``.
    """

    scorer: Any
    records: Sequence[Mapping[str, Any]]
    bad_record: Mapping[str, Any] | None = None
    sparse_record: Mapping[str, Any] | None = None
    waivers: dict[str, str] = field(default_factory=dict)
